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

/// Decode the three parts of a compact JWS into `buf`, one after the other, with one
/// allocation at most (none when `buf` is reused and big enough); returns the decoded lengths
/// of the header and the payload (the signature is the rest; `buf` is cut to the three).
///
/// The same strictness as [`decode`] (the `parts_decode_like_base64` property test compares
/// them), at SIMD speed: `base64_simd`'s strict no-padding decoder refuses `=`, every byte
/// outside the URL-safe alphabet, a length of 1 modulo 4 and non-zero trailing bits.
pub(crate) fn decode_parts(
    header: &[u8],
    payload: &[u8],
    signature: &[u8],
    buf: &mut Vec<u8>,
) -> Result<(usize, usize), VerifyError> {
    const WHAT: [&str; 3] = [
        "the header is not base64url without padding",
        "the payload is not base64url without padding",
        "the signature is not base64url without padding",
    ];
    let engine = &base64_simd::URL_SAFE_NO_PAD;
    let mut lens = [0usize; 3];
    for (i, part) in [header, payload, signature].into_iter().enumerate() {
        lens[i] = engine
            .decoded_length(part)
            .map_err(|_| VerifyError::new(ErrorKind::Malformed, WHAT[i]))?;
    }
    let total = lens[0] + lens[1] + lens[2];
    // Every byte is written by the decoder below: only growth needs filling.
    if buf.len() < total {
        buf.resize(total, 0);
    }
    buf.truncate(total);
    let mut at = 0;
    for (i, part) in [header, payload, signature].into_iter().enumerate() {
        let out = &mut buf[at..at + lens[i]];
        engine
            .decode(part, base64_simd::Out::from_slice(out))
            .map_err(|_| VerifyError::new(ErrorKind::Malformed, WHAT[i]))?;
        at += lens[i];
    }
    Ok((lens[0], lens[1]))
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
        // A reused buffer longer than the parts is cut to them.
        let mut buf = vec![9; 40];
        assert_eq!(
            decode_parts(b"AQ", b"AgM", b"BA", &mut buf).unwrap(),
            (1, 2)
        );
        assert_eq!(buf, [1, 2, 3, 4]);
    }

    /// One part as the former decoder (the `base64` crate) reads it.
    fn reference(s: &[u8]) -> Option<Vec<u8>> {
        decode(s).ok()
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(4000))]

        /// The SIMD decoder accepts exactly what `base64`'s strict URL_SAFE_NO_PAD accepts,
        /// with the same bytes: on canonical encodings (every length, so every SIMD block
        /// and tail), and on strings over the alphabet plus `=`, `+`, `/`, `.`, whitespace,
        /// NUL and non-ASCII bytes (non-canonical tails, impossible lengths, padding).
        #[test]
        fn parts_decode_like_base64(
            data in proptest::collection::vec(proptest::num::u8::ANY, 0..200),
            noise in proptest::collection::vec(proptest::sample::select(
                b"AQgw_-z9Z=+/. \n\0\xc3\xff".to_vec()), 0..80),
            flip in proptest::option::of((0usize..400, proptest::sample::select(
                b"ARB=+/ .\xff_-".to_vec()))),
        ) {
            let mut enc = encode(&data).into_bytes();
            if let Some((at, c)) = flip && !enc.is_empty() {
                let at = at % enc.len();
                enc[at] = c;
            }
            let mut buf = Vec::new();
            for (h, p, sig) in [(&b"e30"[..], &enc[..], &b"AQ"[..]), (&enc[..], b"", b"AQ"),
                (b"AQ", b"e30", &enc[..]), (b"AQ", &noise[..], b"AQ")] {
                let got = decode_parts(h, p, sig, &mut buf).ok().map(|(hl, pl)| {
                    (buf[..hl].to_vec(), buf[hl..hl + pl].to_vec(), buf[hl + pl..].to_vec())
                });
                let want = match (reference(h), reference(p), reference(sig)) {
                    (Some(a), Some(b), Some(c)) => Some((a, b, c)),
                    _ => None,
                };
                proptest::prop_assert_eq!(got, want);
            }
        }
    }
}
