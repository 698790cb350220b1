#![no_main]

use libfuzzer_sys::fuzz_target;
use secmesh_tokens::{Jwk, KeySet};

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        if let Ok(set) = KeySet::from_json(s) {
            // A loaded set exports to a JWKS that loads again with the same kids.
            let again = KeySet::from_jwks_json(&set.to_jwks().to_json()).expect("round trip");
            assert_eq!(again.kids().collect::<Vec<_>>(), set.kids().collect::<Vec<_>>());
        }
        let _ = Jwk::from_json(s);
    }
});
