#![no_main]

use std::sync::{Arc, OnceLock};

use libfuzzer_sys::fuzz_target;
use secmesh_core::ManualClock;
use secmesh_tokens::{Algorithm, KeySet, SigningKey, Verifier};

fn verifier() -> &'static Verifier {
    static V: OnceLock<Verifier> = OnceLock::new();
    V.get_or_init(|| {
        let key = SigningKey::from_hmac_secret(Algorithm::Hs256, b"fuzz-secret-fuzz-secret-fuzz-sec")
            .expect("key");
        Verifier::new(KeySet::single(key.verifying_key(Some("k1".into()))))
            .issuer("https://gw.mesh.test")
            .audience("mesh.test")
            .clock(Arc::new(ManualClock::new(1_800_000_000)))
    })
}

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        if let Ok(v) = verifier().verify(s) {
            // Anything that verifies passed every check.
            assert_eq!(v.iss, "https://gw.mesh.test");
            assert!(v.aud.contains("mesh.test"));
        }
    }
});
