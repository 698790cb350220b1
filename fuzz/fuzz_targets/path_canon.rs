#![no_main]

//! The request-path canonicaliser: never panics, and whatever it accepts is canonical (each
//! segment decoded once and free of separators, dot segments, escapes, parameters, controls
//! and bidi), stable (the object re-encoded and canonicalised again gives itself back), and
//! never longer than the path.

use libfuzzer_sys::fuzz_target;
use secmesh_core::svo::{Object, is_forbidden_char};

fuzz_target!(|data: &[u8]| {
    let Ok(path) = std::str::from_utf8(data) else {
        return;
    };
    let _ = Object::from_grpc_path(path);
    let Ok(object) = Object::from_path(path) else {
        return;
    };
    assert!(object.as_str().len() <= path.len());
    let mut reencoded = String::from("/");
    for (i, seg) in object.as_str().split('/').enumerate() {
        if object.as_str().is_empty() {
            break;
        }
        assert!(!seg.is_empty() && seg != "." && seg != "..", "{path:?}");
        for c in seg.chars() {
            assert!(
                !matches!(c, '\\' | '%' | ';' | '?' | '#') && !is_forbidden_char(c),
                "{path:?}"
            );
        }
        if i > 0 {
            reencoded.push('/');
        }
        for b in seg.bytes() {
            if b.is_ascii_alphanumeric() {
                reencoded.push(b as char);
            } else {
                reencoded.push_str(&format!("%{b:02X}"));
            }
        }
    }
    assert_eq!(
        Object::from_path(&reencoded).as_ref(),
        Ok(&object),
        "{path:?}"
    );
});
