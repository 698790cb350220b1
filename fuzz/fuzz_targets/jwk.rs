#![no_main]

use libfuzzer_sys::fuzz_target;
use secmesh_tokens::{Jwk, KeySet};

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        if let Ok(set) = KeySet::from_json(s)
            && set.kids().next().is_some()
        {
            // A loaded set with a usable key exports to a JWKS that loads again with the same
            // kids (a set whose keys were all skipped exports as an empty JWKS, which is
            // refused).
            let again = KeySet::from_jwks_json(&set.to_jwks().to_json()).expect("round trip");
            assert_eq!(
                again.kids().collect::<Vec<_>>(),
                set.kids().collect::<Vec<_>>()
            );
        }
        let _ = Jwk::from_json(s);
    }
});
