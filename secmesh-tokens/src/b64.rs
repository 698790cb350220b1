//! Strict base64url without padding (RFC 7515 §2): the URL-safe alphabet, no `=`, and no
//! non-canonical encodings (trailing bits must be zero), so each byte string has exactly one
//! encoding.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::error::{ErrorKind, VerifyError};

/// Decode, rejecting padding, other alphabets, whitespace and non-canonical trailing bits.
pub(crate) fn decode(s: &[u8]) -> Result<Vec<u8>, base64::DecodeError> {
    URL_SAFE_NO_PAD.decode(s)
}

/// Decode the three parts of a compact JWS into `buf` (cleared first), one after the other,
/// with one allocation at most; returns the decoded lengths of the header and the payload
/// (the signature is the rest).
pub(crate) fn decode_parts(
    header: &[u8],
    payload: &[u8],
    signature: &[u8],
    buf: &mut Vec<u8>,
) -> Result<(usize, usize), VerifyError> {
    let room = |n: usize| n.div_ceil(4) * 3;
    buf.clear();
    buf.resize(
        room(header.len()) + room(payload.len()) + room(signature.len()),
        0,
    );
    let mut at = 0;
    let mut part = |s: &[u8], what: &'static str| -> Result<usize, VerifyError> {
        let n = URL_SAFE_NO_PAD
            .decode_slice(s, &mut buf[at..])
            .map_err(|_| VerifyError::new(ErrorKind::Malformed, what))?;
        at += n;
        Ok(n)
    };
    let h = part(header, "the header is not base64url without padding")?;
    let p = part(payload, "the payload is not base64url without padding")?;
    part(signature, "the signature is not base64url without padding")?;
    buf.truncate(at);
    Ok((h, p))
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

    #[test]
    fn parts_share_one_buffer() {
        let mut buf = vec![9; 3];
        assert_eq!(decode_parts(b"AQ", b"", b"AQID", &mut buf).unwrap(), (1, 0));
        assert_eq!(buf, [1, 1, 2, 3]);
        for bad in [&b"AR"[..], b"AQ=", b"A", b"A.", b"+A"] {
            let e = decode_parts(b"AQ", bad, b"AQ", &mut buf).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Malformed);
        }
    }
}
