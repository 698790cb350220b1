#![no_main]

use libfuzzer_sys::fuzz_target;
use secmesh_core::{SpiffeId, TrustDomain};

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        if let Ok(id) = s.parse::<SpiffeId>() {
            // What parses prints back to itself and belongs to its own trust domain.
            assert_eq!(id.as_str(), s);
            assert!(id.is_member_of(&id.trust_domain()));
        }
        let _ = s.parse::<TrustDomain>();
    }
});
