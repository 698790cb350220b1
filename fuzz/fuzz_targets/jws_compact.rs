#![no_main]

use libfuzzer_sys::fuzz_target;
use secmesh_tokens::jws;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        if let Ok(parts) = jws::parse(s, jws::DEFAULT_MAX_SIZE) {
            // The signing input is exactly the first two parts.
            assert!(s.as_bytes().starts_with(parts.signing_input));
            assert_eq!(parts.signing_input.iter().filter(|b| **b == b'.').count(), 1);
        }
        let _ = jws::decode_unverified(s);
    }
});
