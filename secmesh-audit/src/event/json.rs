//! The event's JSON, written by hand into a reused buffer: byte for byte what `serde_json`
//! writes for [`AuditEvent`] (same field order, same escaping, absent fields left out), without
//! its per-field dispatch. A record is hashed as the bytes of its line, so the two must never
//! differ; the tests below compare them on random events.

use super::{AuditEvent, Decision, Direction, Shadow};
use crate::chain::hex_into;

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Append `s` as a JSON string, escaped exactly as `serde_json` does: `"` and `\`, the control
/// characters below 0x20 (`\b \t \n \f \r` short, the others as `\u00XX`), nothing else.
///
/// Clean runs are found eight bytes at a time and copied with one `extend` each.
pub(crate) fn string(out: &mut Vec<u8>, s: &str) {
    let bytes = s.as_bytes();
    out.reserve(bytes.len() + 2);
    out.push(b'"');
    let mut start = 0;
    loop {
        let i = find_escape(bytes, start);
        let Some(&b) = bytes.get(i) else {
            break;
        };
        out.extend_from_slice(&bytes[start..i]);
        escape(out, b);
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

/// Whether `b` needs an escape in a JSON string.
#[inline]
fn needs_escape(b: u8) -> bool {
    b < 0x20 || b == b'"' || b == b'\\'
}

const LO: u64 = 0x0101_0101_0101_0101;
const HI: u64 = 0x8080_8080_8080_8080;

/// The high bit of each byte of `w` (little-endian) that may need an escape. The lowest set
/// bit is always exact (a borrow only ever marks bytes above a true match), which is all
/// [`find_escape`] uses.
#[inline]
fn escape_mask(w: u64) -> u64 {
    let ctl = w.wrapping_sub(LO * 0x20) & !w;
    let q = w ^ (LO * u64::from(b'"'));
    let quote = q.wrapping_sub(LO) & !q;
    let bs = w ^ (LO * u64::from(b'\\'));
    let backslash = bs.wrapping_sub(LO) & !bs;
    (ctl | quote | backslash) & HI
}

/// The index of the first byte at or after `from` that needs an escape, else `bytes.len()`.
#[inline]
fn find_escape(bytes: &[u8], from: usize) -> usize {
    let rest = bytes.get(from..).unwrap_or_default();
    let mut chunks = rest.chunks_exact(8);
    let mut at = from;
    for c in &mut chunks {
        let mut w = [0u8; 8];
        w.copy_from_slice(c);
        let m = escape_mask(u64::from_le_bytes(w));
        if m != 0 {
            return at + (m.trailing_zeros() / 8) as usize;
        }
        at += 8;
    }
    for &b in chunks.remainder() {
        if needs_escape(b) {
            return at;
        }
        at += 1;
    }
    bytes.len()
}

/// Append the escape of one byte that needs it.
fn escape(out: &mut Vec<u8>, b: u8) {
    match b {
        b'"' => out.extend_from_slice(b"\\\""),
        b'\\' => out.extend_from_slice(b"\\\\"),
        0x08 => out.extend_from_slice(b"\\b"),
        0x09 => out.extend_from_slice(b"\\t"),
        0x0a => out.extend_from_slice(b"\\n"),
        0x0c => out.extend_from_slice(b"\\f"),
        0x0d => out.extend_from_slice(b"\\r"),
        _ => out.extend_from_slice(&[
            b'\\',
            b'u',
            b'0',
            b'0',
            HEX[usize::from(b >> 4)],
            HEX[usize::from(b & 0xf)],
        ]),
    }
}

/// Append an unsigned integer in decimal.
pub(crate) fn uint(out: &mut Vec<u8>, mut n: u64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&buf[i..]);
}

fn key(out: &mut Vec<u8>, k: &[u8]) {
    out.extend_from_slice(k);
}

fn opt_str(out: &mut Vec<u8>, k: &[u8], v: &Option<String>) {
    if let Some(v) = v {
        key(out, k);
        string(out, v);
    }
}

fn opt_hex(out: &mut Vec<u8>, k: &[u8], v: Option<&[u8]>) {
    if let Some(v) = v {
        key(out, k);
        out.push(b'"');
        hex_into(v, out);
        out.push(b'"');
    }
}

fn decision(d: Decision) -> &'static [u8] {
    match d {
        Decision::Allow => b"\"allow\"",
        Decision::Deny => b"\"deny\"",
        Decision::Error => b"\"error\"",
    }
}

fn shadow(out: &mut Vec<u8>, s: &Shadow) {
    out.extend_from_slice(b",\"shadow\":{\"decision\":");
    out.extend_from_slice(decision(s.decision));
    opt_str(out, b",\"rule\":", &s.rule);
    out.push(b'}');
}

/// Append the event's JSON object (the sink writes it in two parts, see [`write_tail`]).
#[cfg(test)]
fn write(ev: &AuditEvent, out: &mut Vec<u8>) {
    write_head(ev, out);
    write_tail(ev, out);
    out.push(b'}');
}

/// The object's beginning: `{"v":..,"seq":..` (the part the writer knows last).
pub(crate) fn write_head(ev: &AuditEvent, out: &mut Vec<u8>) {
    out.extend_from_slice(b"{\"v\":");
    uint(out, u64::from(ev.v));
    out.extend_from_slice(b",\"seq\":");
    uint(out, ev.seq);
}

/// The rest of the object, from `,"time":` to the last field, without the closing brace:
/// what a producer can write before the writer numbers the event.
pub(crate) fn write_tail(ev: &AuditEvent, out: &mut Vec<u8>) {
    out.extend_from_slice(b",\"time\":");
    string(out, &ev.time);
    out.extend_from_slice(b",\"service\":");
    string(out, &ev.service);
    out.extend_from_slice(match ev.dir {
        Direction::In => b",\"dir\":\"in\"",
        Direction::Out => b",\"dir\":\"out\"",
    });
    opt_hex(
        out,
        b",\"txn\":",
        ev.txn.map(|t| t.to_bytes()).as_ref().map(|b| &b[..]),
    );
    opt_hex(
        out,
        b",\"trace_id\":",
        ev.trace_id.map(|t| t.to_bytes()).as_ref().map(|b| &b[..]),
    );
    opt_hex(
        out,
        b",\"span_id\":",
        ev.span_id.map(|t| t.to_bytes()).as_ref().map(|b| &b[..]),
    );
    opt_hex(
        out,
        b",\"parent_span_id\":",
        ev.parent_span_id
            .map(|t| t.to_bytes())
            .as_ref()
            .map(|b| &b[..]),
    );
    opt_str(out, b",\"sub\":", &ev.sub);
    opt_str(out, b",\"caller\":", &ev.caller);
    opt_str(out, b",\"verb\":", &ev.verb);
    opt_str(out, b",\"object\":", &ev.object);
    opt_str(out, b",\"method\":", &ev.method);
    opt_str(out, b",\"path\":", &ev.path);
    out.extend_from_slice(b",\"decision\":");
    out.extend_from_slice(decision(ev.decision));
    opt_str(out, b",\"rule\":", &ev.rule);
    opt_str(out, b",\"reason\":", &ev.reason);
    opt_str(out, b",\"reason_kind\":", &ev.reason_kind);
    if let Some(s) = &ev.shadow {
        shadow(out, s);
    }
    if let Some(s) = ev.status {
        out.extend_from_slice(b",\"status\":");
        uint(out, u64::from(s));
    }
    if let Some(l) = ev.latency_us {
        out.extend_from_slice(b",\"latency_us\":");
        uint(out, l);
    }
    opt_str(out, b",\"jti\":", &ev.jti);
    opt_str(out, b",\"token_sha256\":", &ev.token_sha256);
    if let Some(c) = ev.cls {
        out.extend_from_slice(b",\"cls\":\"");
        out.extend_from_slice(c.as_str().as_bytes());
        out.push(b'"');
    }
    opt_str(out, b",\"peer\":", &ev.peer);
    opt_str(out, b",\"target\":", &ev.target);
}

#[cfg(test)]
mod tests {
    use super::*;
    use secmesh_core::ExpiryClass;

    /// xorshift64*: reproducible random events without a dependency.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
        fn string(&mut self) -> String {
            const PIECES: &[&str] = &[
                "a", "Z", "0", "\"", "\\", "/", "\n", "\r", "\t", "\u{8}", "\u{c}", "\u{0}",
                "\u{1}", "\u{1f}", "\u{7f}", "\u{80}", "é", "€", "😀", "\u{2028}", "\u{feff}", " ",
                "orders/7", "{", "}", ",", ":",
            ];
            let n = self.below(12);
            let mut s = String::new();
            for _ in 0..n {
                if self.below(4) == 0 {
                    s.push(char::from(self.below(0x80) as u8));
                } else {
                    s.push_str(PIECES[self.below(PIECES.len() as u64) as usize]);
                }
            }
            s
        }
        fn opt(&mut self) -> Option<String> {
            (self.below(3) != 0).then(|| self.string())
        }
        fn decision(&mut self) -> Decision {
            [Decision::Allow, Decision::Deny, Decision::Error][self.below(3) as usize]
        }
        fn bytes<const N: usize>(&mut self) -> [u8; N] {
            let mut b = [0u8; N];
            for x in &mut b {
                *x = self.next() as u8;
            }
            b[0] |= 1; // never all zero
            b
        }
    }

    fn random(r: &mut Rng) -> AuditEvent {
        let mut ev = AuditEvent {
            v: r.next() as u32,
            seq: r.next() >> r.below(64),
            time: r.string(),
            service: r.string(),
            dir: if r.below(2) == 0 {
                Direction::In
            } else {
                Direction::Out
            },
            ..AuditEvent::default()
        };
        if r.below(2) == 0 {
            ev.txn = Some(secmesh_core::TxnId::from_bytes(r.bytes()).unwrap());
            ev.trace_id = Some(secmesh_core::TraceId::from_bytes(r.bytes()).unwrap());
            ev.span_id = Some(secmesh_core::SpanId::from_bytes(r.bytes()).unwrap());
        }
        if r.below(2) == 0 {
            ev.parent_span_id = Some(secmesh_core::SpanId::from_bytes(r.bytes()).unwrap());
        }
        ev.sub = r.opt();
        ev.caller = r.opt();
        ev.verb = r.opt();
        ev.object = r.opt();
        ev.method = r.opt();
        ev.path = r.opt();
        ev.decision = r.decision();
        ev.rule = r.opt();
        ev.reason = r.opt();
        ev.reason_kind = r.opt();
        if r.below(2) == 0 {
            ev.shadow = Some(Shadow {
                decision: r.decision(),
                rule: r.opt(),
            });
        }
        ev.status = (r.below(2) == 0).then(|| r.next() as u16);
        ev.latency_us = (r.below(2) == 0).then(|| r.next() >> r.below(64));
        ev.jti = r.opt();
        ev.token_sha256 = r.opt();
        ev.cls = [
            None,
            Some(ExpiryClass::Fast),
            Some(ExpiryClass::Medium),
            Some(ExpiryClass::Slow),
        ][r.below(4) as usize];
        ev.peer = r.opt();
        ev.target = r.opt();
        ev
    }

    #[test]
    fn writes_what_serde_json_writes_on_random_events() {
        let mut r = Rng(0x9e37_79b9_7f4a_7c15);
        let mut out = Vec::new();
        for _ in 0..20_000 {
            let ev = random(&mut r);
            out.clear();
            write(&ev, &mut out);
            let want = serde_json::to_vec(&ev).unwrap();
            assert_eq!(
                String::from_utf8_lossy(&out),
                String::from_utf8_lossy(&want),
                "{ev:?}"
            );
            let back: AuditEvent = serde_json::from_slice(&out).unwrap();
            assert_eq!(back, ev);
        }
    }

    /// The byte-at-a-time escaper the word scan replaced: the reference it must equal.
    fn string_bytewise(out: &mut Vec<u8>, s: &str) {
        out.push(b'"');
        let bytes = s.as_bytes();
        let mut start = 0;
        for (i, &b) in bytes.iter().enumerate() {
            if !needs_escape(b) {
                continue;
            }
            out.extend_from_slice(&bytes[start..i]);
            escape(out, b);
            start = i + 1;
        }
        out.extend_from_slice(&bytes[start..]);
        out.push(b'"');
    }

    fn check_string(s: &str) {
        let mut out = b"prefix".to_vec();
        string(&mut out, s);
        let mut want = b"prefix".to_vec();
        string_bytewise(&mut want, s);
        assert_eq!(out, want, "{s:?}");
        assert_eq!(&out[6..], serde_json::to_vec(s).unwrap(), "{s:?}");
    }

    #[test]
    fn word_scan_escapes_every_char_at_every_offset() {
        // Every ASCII byte, and characters of every UTF-8 length (their bytes are >= 0x80 and
        // never escaped), at every offset of clean strings longer than two words.
        let chars = (0u8..0x80).map(char::from).chain([
            '\u{80}',
            'é',
            '\u{7ff}',
            '€',
            '\u{2028}',
            '\u{feff}',
            '😀',
            '\u{10ffff}',
        ]);
        for c in chars {
            for len in 0..=20 {
                for at in 0..=len {
                    let mut s: String = "a".repeat(at);
                    s.push(c);
                    s.push_str(&"b".repeat(len - at));
                    check_string(&s);
                    // Next to a second escape, and after one in the same word.
                    let mut t = s.clone();
                    t.insert(at.min(t.len()), '"');
                    check_string(&t);
                    t.push('\n');
                    check_string(&t);
                }
            }
        }
    }

    proptest::proptest! {
        #[test]
        fn word_scan_equals_serde_json_on_random_strings(s in ".{0,80}") {
            check_string(&s);
        }

        #[test]
        fn word_scan_equals_serde_json_on_escape_heavy_strings(
            s in "[a-z\"\\\\\u{0}-\u{1f}\u{7f}é€😀]{0,64}"
        ) {
            check_string(&s);
        }
    }

    #[test]
    fn every_byte_below_0x80_escapes_as_serde_json_does() {
        for b in 0u8..0x80 {
            let s = format!("x{}y", char::from(b));
            let mut out = Vec::new();
            string(&mut out, &s);
            assert_eq!(out, serde_json::to_vec(&s).unwrap(), "byte {b:#x}");
        }
        for n in [0, 9, 10, 99, 100, u64::from(u32::MAX), u64::MAX] {
            let mut out = Vec::new();
            uint(&mut out, n);
            assert_eq!(out, n.to_string().into_bytes());
        }
    }
}
