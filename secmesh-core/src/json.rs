//! A strict JSON checker for untrusted token parts.
//!
//! `serde_json` accepts duplicate object keys (the last one wins) and nests up to 128 levels.
//! For a security token both are wrong: a duplicate `sub` or `alg` means two readers can see two
//! different tokens. [`check_object`] walks the bytes once, without allocating for keys that
//! have no escapes, and accepts only RFC 8259 JSON whose top level is an object, with no
//! duplicate keys (compared after unescaping), no lone surrogates, and a bounded depth.
//!
//! The same checks are available one value at a time through [`Reader`], so that a decoder
//! (the claims, the JWS header) reads its members straight into their types in the same
//! single pass, refusing exactly what [`check_object`] refuses.
//!
//! # Example
//! ```
//! use secmesh_core::json::{check_object, JsonError, DEFAULT_MAX_DEPTH};
//!
//! assert!(check_object(br#"{"alg":"EdDSA","kid":"k1"}"#, DEFAULT_MAX_DEPTH).is_ok());
//! assert!(matches!(
//!     check_object(br#"{"alg":"EdDSA","alg":"none"}"#, DEFAULT_MAX_DEPTH),
//!     Err(JsonError::DuplicateKey { .. })
//! ));
//! assert!(check_object(b"[1]", DEFAULT_MAX_DEPTH).is_err());
//! ```

mod reader;

pub(crate) use reader::duplicate;
pub use reader::{Reader, SeenKeys};

/// The default nesting limit: objects and arrays inside each other, the top object counted.
pub const DEFAULT_MAX_DEPTH: usize = 16;

/// Why bytes were not accepted as strict JSON.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum JsonError {
    /// The bytes are not well-formed JSON; `offset` is where the checker stopped.
    #[error("invalid JSON at byte {offset}")]
    Syntax {
        /// Byte offset of the first unexpected byte.
        offset: usize,
    },
    /// The top-level value is not an object.
    #[error("the top-level JSON value is not an object")]
    NotAnObject,
    /// An object has the same key twice.
    #[error("duplicate key {key:?}")]
    DuplicateKey {
        /// The repeated key (unescaped; truncated to 64 characters).
        key: String,
    },
    /// Objects and arrays nest deeper than allowed.
    #[error("JSON nested deeper than {limit} levels")]
    TooDeep {
        /// The limit that was exceeded.
        limit: usize,
    },
}

/// Check that `bytes` is one strict JSON object (see the module documentation).
pub fn check_object(bytes: &[u8], max_depth: usize) -> Result<(), JsonError> {
    let mut r = Reader::new(bytes, max_depth)?;
    r.begin_top_object()?;
    let mut keys = SeenKeys::new();
    let mut first = true;
    while let Some(key) = r.key(first)? {
        first = false;
        keys.insert(key)?;
        r.colon()?;
        r.skip_value(1)?;
    }
    r.end_top()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(s: &str) -> bool {
        check_object(s.as_bytes(), DEFAULT_MAX_DEPTH).is_ok()
    }

    #[test]
    fn accepts_rfc8259_objects() {
        assert!(ok(r#"{}"#));
        assert!(ok(
            r#" { "a" : [1, -0.5e+3, true, false, null, "x\u00e9\ud83d\ude00"] , "b":{}} "#
        ));
        assert!(ok(r#"{"a":"\"\\\/\b\f\n\r\t"}"#));
    }

    #[test]
    fn rejects_non_json_and_non_objects() {
        for s in [
            "",
            "[]",
            "1",
            "\"a\"",
            "{",
            "{\"a\"}",
            "{\"a\":}",
            "{\"a\":1,}",
            "{,}",
            "{'a':1}",
            "{\"a\":01}",
            "{\"a\":1.}",
            "{\"a\":.5}",
            "{\"a\":1e}",
            "{\"a\":-}",
            "{\"a\":+1}",
            "{\"a\":tru}",
            "{\"a\":\"\x01\"}",
            "{\"a\":\"\\x\"}",
            "{\"a\":\"\\ud800\"}",
            "{\"a\":\"\\udc00\"}",
            "{\"a\":\"\\ud800\\u0041\"}",
            "{} {}",
            "{}x",
            "{\"a\":NaN}",
        ] {
            assert!(!ok(s), "{s:?} accepted");
        }
        assert_eq!(check_object(b"[]", 4), Err(JsonError::NotAnObject));
    }

    #[test]
    fn rejects_duplicates_after_unescaping() {
        assert!(matches!(
            check_object(br#"{"sub":"a","s\u0075b":"b"}"#, 4),
            Err(JsonError::DuplicateKey { key }) if key == "sub"
        ));
        // Nested objects have their own key space.
        assert!(ok(r#"{"a":{"a":1},"b":{"a":2}}"#));
        // The set path for objects with many keys.
        let many: Vec<String> = (0..40).map(|i| format!("\"k{i}\":{i}")).collect();
        assert!(ok(&format!("{{{}}}", many.join(","))));
        assert!(!ok(&format!("{{{},\"k7\":0}}", many.join(","))));
    }

    #[test]
    fn rejects_invalid_utf8_and_deep_nesting() {
        assert!(check_object(b"{\"a\":\"\xff\"}", 4).is_err());
        assert!(check_object(b"{\"a\\n\":\"\xc3\"}", 4).is_err());
        assert!(ok(r#"{"a":[[{"b":[1]}]]}"#));
        assert_eq!(
            check_object(br#"{"a":[[[{}]]]}"#, 4),
            Err(JsonError::TooDeep { limit: 4 })
        );
        let deep = format!("{{\"a\":{}1{}}}", "[".repeat(100_000), "]".repeat(100_000));
        assert!(check_object(deep.as_bytes(), DEFAULT_MAX_DEPTH).is_err());
    }
}
