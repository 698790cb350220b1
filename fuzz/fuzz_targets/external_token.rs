#![no_main]

//! External (IdP) tokens: arbitrary payload bytes, correctly signed (HS256 with a fixed key, so
//! that every input reaches the claims parser), through `IdpVerifier`: never a panic; what
//! verifies has the configured issuer and audience, a non-empty subject, and a time window
//! that holds now within the lifetime bound. Arbitrary whole tokens are tried as well.

use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use secmesh_core::ManualClock;
use secmesh_tokens::external::IdpVerifier;
use secmesh_tokens::jws::sign_compact;
use secmesh_tokens::source::KeySource;
use secmesh_tokens::{Algorithm, KeySet, SigningKey};

const NOW: u64 = 1_800_000_000;

fuzz_target!(|data: &[u8]| {
    let secret = [7u8; 32];
    let key = SigningKey::from_hmac_secret(Algorithm::Hs256, &secret).expect("key");
    let keys = KeySet::single(key.verifying_key(Some("k".into())));
    let verifier = IdpVerifier::new(Arc::new(KeySource::fixed(keys)), "https://idp.test", "gw")
        .clock(Arc::new(ManualClock::new(NOW)))
        .allow_missing_typ();
    let token = sign_compact(&key, Some("k"), Some("at+jwt"), data).expect("sign");
    if let Ok(v) = verifier.verify(&token) {
        assert_eq!(v.iss, "https://idp.test");
        assert!(v.aud.contains("gw"));
        assert!(!v.sub.is_empty());
        assert!(NOW < v.exp + 60);
        assert!(v.exp - v.iat.unwrap_or(NOW).min(v.exp) <= 24 * 3600);
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = verifier.verify(text);
    }
});
