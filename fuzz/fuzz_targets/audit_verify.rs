#![no_main]
//! The strict verifier of signed records on arbitrary bytes: a log, optionally a witness after
//! a `--witness--` line, and a first byte of options (bit 0: open tail allowed, bit 1: service
//! `orders` required, bit 2: a starting generation from the high nibble). Never a panic; when
//! it accepts, the log is whole, signed and (unless allowed open) closed.

use libfuzzer_sys::fuzz_target;
use secmesh_audit::chain::parse_public_key;
use secmesh_audit::verify::Verifier;

/// The public key the seed corpus (`corpus/audit_verify/seed-*`) was signed with.
const KEY: &str = "FPnGWinrXBQpla_qi7XIpzY5nc87B3qayrMLCgNWOu0";
const SEPARATOR: &[u8] = b"\n--witness--\n";

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let (log, witness) = match rest.windows(SEPARATOR.len()).position(|w| w == SEPARATOR) {
        Some(i) => (&rest[..=i], Some(&rest[i + SEPARATOR.len()..])),
        None => (rest, None),
    };
    let Ok(key) = parse_public_key(KEY) else {
        return;
    };
    let open = flags & 1 != 0;
    let mut v = Verifier::new(Some(&key)).allow_open_tail(open);
    if flags & 2 != 0 {
        v = v.service("orders");
    }
    if flags & 4 != 0 {
        v = v.from_generation(u64::from(flags >> 4));
    }
    if let Some(w) = witness {
        v = v.witness_bytes(w.to_vec());
    }
    if let Ok(report) = v.verify_bytes(log) {
        let lines = log.split(|b| *b == b'\n').filter(|l| !l.is_empty()).count() as u64;
        assert_eq!(report.events + report.checkpoints, lines);
        assert!(report.checkpoints > 0, "a log accepted with a key is signed");
        assert!(open || (report.closed && report.after_last_checkpoint == 0));
        if flags & 2 != 0 {
            assert_eq!(report.service.as_deref(), Some("orders"));
        }
    }
    // Without a key, the same bytes never panic either.
    let _ = Verifier::new(None).allow_open_tail(open).verify_bytes(log);
});
