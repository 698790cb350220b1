#![no_main]

// A JWKS fetch answer (status, Cache-Control, body) to a key set or a typed error: only a 200
// with a strict JWKS of at most 256 KiB is accepted; redirects and other statuses never are.
use libfuzzer_sys::fuzz_target;
use secmesh_tokens::KeySet;
use secmesh_tokens::source::SourceError;
use secmesh_tokens::source::response::{MAX_BODY, jwks_from_response, max_age};

fuzz_target!(|data: &[u8]| {
    if data.len() < 3 {
        return;
    }
    let status = u16::from_be_bytes([data[0], data[1]]) % 1000;
    // Then a Cache-Control value of `data[2]` bytes, then the body.
    let cc_len = usize::from(data[2]).min(data.len() - 3);
    let cache_control = &data[3..3 + cc_len];
    let body = &data[3 + cc_len..];
    let _ = max_age(cache_control);
    match jwks_from_response(status, Some(cache_control), body) {
        Ok(fetched) => {
            assert_eq!(status, 200);
            assert!(body.len() <= MAX_BODY);
            assert!(!fetched.keys.is_empty() || fetched.keys.skipped().len() > 0);
            let text = std::str::from_utf8(body).expect("accepted UTF-8");
            assert!(KeySet::from_jwks_json(text).is_ok());
        }
        Err(SourceError::Redirect { status: s }) => assert!((300..400).contains(&s)),
        Err(SourceError::Status { status: s }) => assert_ne!(s, 200),
        Err(_) => assert_eq!(status, 200),
    }
});
