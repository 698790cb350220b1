//! Strict base64url without padding (RFC 7515 §2): the URL-safe alphabet, no `=`, and no
//! non-canonical encodings (trailing bits must be zero), so each byte string has exactly one
//! encoding.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// Decode, rejecting padding, other alphabets, whitespace and non-canonical trailing bits.
pub(crate) fn decode(s: &[u8]) -> Result<Vec<u8>, base64::DecodeError> {
    URL_SAFE_NO_PAD.decode(s)
}

/// Encode without padding.
pub(crate) fn encode(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Append the encoding of `bytes` to `out`.
pub(crate) fn encode_to(bytes: &[u8], out: &mut String) {
    URL_SAFE_NO_PAD.encode_string(bytes, out);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strict() {
        assert_eq!(decode(b"AQ").unwrap(), [1]);
        assert!(decode(b"AR").is_err(), "non-canonical trailing bits");
        assert!(decode(b"AQ==").is_err(), "padding");
        assert!(
            decode(b"A+").is_err() && decode(b"A/").is_err(),
            "standard alphabet"
        );
        assert!(decode(b"A").is_err(), "impossible length");
        assert!(decode(b"AQ ").is_err(), "whitespace");
        assert_eq!(encode(&[0xfb, 0xff]), "-_8");
    }
}
