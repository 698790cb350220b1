#![no_main]

use libfuzzer_sys::fuzz_target;
use secmesh_core::claims::Claims;

fuzz_target!(|data: &[u8]| {
    if let Ok(claims) = Claims::from_json(data) {
        // What decodes re-encodes, and decodes again to the same claims.
        let json = serde_json::to_vec(&claims).expect("claims serialize");
        let again = Claims::from_json(&json).expect("re-encoded claims decode");
        assert_eq!(again, claims);
    }
});
