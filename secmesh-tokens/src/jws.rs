//! JWS compact serialization (RFC 7515 §7.1): a strict parser, signing, and raw verification
//! of arbitrary payloads.
//!
//! The parser accepts exactly `header.payload.signature`: three parts, a non-empty header and
//! signature, base64url without padding and with canonical trailing bits, a header that is a
//! strict JSON object (no duplicate members, bounded depth) naming a known `alg`, and nothing
//! of `crit`, `zip` or `b64`. The whole input is bounded ([`DEFAULT_MAX_SIZE`] unless told
//! otherwise) before any work. No input makes it panic; the `jws_compact` fuzz target checks.
//!
//! Header parameters that point at keys (`jwk`, `jku`, `x5u`, `x5c`) are never used: the key
//! is chosen by `kid` from a [`KeySet`] the caller trusts.
//!
//! # Example
//! ```
//! use secmesh_tokens::{jws, Algorithm, KeySet, SigningKey};
//!
//! let key = SigningKey::generate(Algorithm::Es256)?;
//! let token = jws::sign_compact(&key, Some("k1"), None, b"hello")?;
//! let keys = KeySet::single(key.verifying_key(Some("k1".into())));
//! let verified = jws::verify_compact(&token, &keys)?;
//! assert_eq!(verified.payload(), b"hello");
//!
//! let mut tampered = token.clone();
//! tampered.insert(token.find('.').unwrap() + 1, 'A');
//! assert!(jws::verify_compact(&tampered, &keys).is_err());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::borrow::Cow;

use secmesh_core::json::{DEFAULT_MAX_DEPTH, JsonError, Reader, SeenKeys};

use crate::alg::Algorithm;
use crate::b64;
use crate::error::{ErrorKind, SignError, VerifyError};
use crate::key::{KeySet, SigningKey, VerifyingKey};

/// The default bound on a compact JWS, in bytes.
pub const DEFAULT_MAX_SIZE: usize = 8 * 1024;

/// The most scratch capacity a thread keeps between verifications (the default token bound,
/// decoded, fits several times over; a bigger one is dropped after its use).
const SCRATCH_KEEP: usize = 4 * DEFAULT_MAX_SIZE;

thread_local! {
    static SCRATCH: std::cell::Cell<Vec<u8>> = const { std::cell::Cell::new(Vec::new()) };
}

/// Run `f` with this thread's decode buffer (for [`parse_into`] on the hot path: no
/// allocation per token once the thread has verified one). Re-entrant: the buffer is taken out
/// of its slot for the call, so a nested call gets a fresh one. The buffer holds decoded
/// token parts (claims and signature, never a key) until the thread's next verification.
pub(crate) fn with_scratch<R>(f: impl FnOnce(&mut Vec<u8>) -> R) -> R {
    // `try_with`: during the thread's teardown (a verification from another thread-local's
    // destructor) there is no slot, and a fresh buffer does.
    let mut buf = SCRATCH.try_with(std::cell::Cell::take).unwrap_or_default();
    let out = f(&mut buf);
    if buf.capacity() <= SCRATCH_KEEP {
        let _ = SCRATCH.try_with(|slot| slot.set(buf));
    }
    out
}

/// The protected header, as far as secmesh reads it.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Header {
    /// The algorithm.
    pub alg: Algorithm,
    /// The key id.
    pub kid: Option<String>,
    /// The media type of the whole token (`txntoken+jwt` for secmesh tokens).
    pub typ: Option<String>,
}

/// A compact JWS taken apart and decoded, signature not yet checked.
#[derive(Clone, Debug)]
pub struct Parts<'a> {
    /// The decoded header.
    pub header: Header,
    /// `base64url(header) '.' base64url(payload)`: what the signature covers.
    pub signing_input: &'a [u8],
    /// The decoded payload.
    pub payload: Vec<u8>,
    /// The decoded signature.
    pub signature: Vec<u8>,
}

fn malformed(detail: &'static str) -> VerifyError {
    VerifyError::new(ErrorKind::Malformed, detail)
}

/// The protected header as [`parse_into`] reads it: `kid` and `typ` borrowed from the
/// decoded header unless they have escapes.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct HeaderRef<'b> {
    /// The algorithm.
    pub alg: Algorithm,
    /// The key id.
    pub kid: Option<Cow<'b, str>>,
    /// The media type of the whole token.
    pub typ: Option<Cow<'b, str>>,
}

/// A compact JWS taken apart into one buffer, signature not yet checked: the decoded header,
/// payload and signature are slices of the buffer, the signing input a slice of the token.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct PartsRef<'t, 'b> {
    /// The decoded header.
    pub header: HeaderRef<'b>,
    /// `base64url(header) '.' base64url(payload)`: what the signature covers.
    pub signing_input: &'t [u8],
    /// The decoded payload.
    pub payload: &'b [u8],
    /// The decoded signature.
    pub signature: &'b [u8],
}

/// Parse a compact JWS without verifying it, within `max_size` bytes.
pub fn parse(token: &str, max_size: usize) -> Result<Parts<'_>, VerifyError> {
    let mut buf = Vec::new();
    let raw = parse_into(token, max_size, &mut buf)?;
    Ok(Parts {
        header: Header {
            alg: raw.header.alg,
            kid: raw.header.kid.map(Cow::into_owned),
            typ: raw.header.typ.map(Cow::into_owned),
        },
        signing_input: raw.signing_input,
        payload: raw.payload.to_vec(),
        signature: raw.signature.to_vec(),
    })
}

/// [`parse`] without copies: the three parts are decoded into `buf` (one allocation, or none
/// when `buf` is reused) and the header is read without allocating. The same checks, the same
/// errors.
pub fn parse_into<'t, 'b>(
    token: &'t str,
    max_size: usize,
    buf: &'b mut Vec<u8>,
) -> Result<PartsRef<'t, 'b>, VerifyError> {
    let bytes = token.as_bytes();
    if bytes.len() > max_size {
        return Err(VerifyError::new(
            ErrorKind::TooLarge,
            format!("{} bytes, the limit is {max_size}", bytes.len()),
        ));
    }
    // The first and the last dot; a dot in between is not base64url, so the payload's
    // decoding refuses a fourth part.
    let (Some(d1), Some(d2)) = (
        bytes.iter().position(|b| *b == b'.'),
        bytes.iter().rposition(|b| *b == b'.'),
    ) else {
        return Err(malformed("a compact JWS has exactly three parts"));
    };
    if d1 == d2 {
        return Err(malformed("a compact JWS has exactly three parts"));
    }
    let (h, p, s) = (&bytes[..d1], &bytes[d1 + 1..d2], &bytes[d2 + 1..]);
    if h.is_empty() || s.is_empty() {
        return Err(malformed("empty header or signature"));
    }
    if p.contains(&b'.') {
        return Err(malformed("a compact JWS has exactly three parts"));
    }
    let (hl, pl) = b64::decode_parts(h, p, s, buf)?;
    let buf: &'b [u8] = buf;
    let (header_json, rest) = buf.split_at(hl);
    let (payload, signature) = rest.split_at(pl);
    let header = parse_header(header_json)?;
    Ok(PartsRef {
        header,
        signing_input: &bytes[..d2],
        payload,
        signature,
    })
}

/// The header, in one strict pass: `alg`, `kid`, `typ` (strings or null), `crit`, `zip` and
/// `b64` (refused whatever their value), every other member checked and ignored.
fn parse_header(json: &[u8]) -> Result<HeaderRef<'_>, VerifyError> {
    let bad_json = |e: JsonError| VerifyError::new(ErrorKind::Malformed, format!("header: {e}"));
    let mut r = Reader::new(json, DEFAULT_MAX_DEPTH).map_err(bad_json)?;
    r.begin_top_object().map_err(bad_json)?;
    let (mut alg, mut kid, mut typ) = (None, None, None);
    let (mut known, mut unknown) = (0u8, SeenKeys::new());
    let (mut forbidden, mut wrong_type) = (false, false);
    let mut first = true;
    while let Some(key) = r.key(first).map_err(bad_json)? {
        first = false;
        let index = match &*key {
            "alg" => 0,
            "kid" => 1,
            "typ" => 2,
            "crit" => 3,
            "zip" => 4,
            "b64" => 5,
            _ => 6,
        };
        if index < 6 {
            if known & (1 << index) != 0 {
                return Err(bad_json(JsonError::DuplicateKey {
                    key: key.into_owned(),
                }));
            }
            known |= 1 << index;
        } else {
            unknown.insert(key).map_err(bad_json)?;
        }
        r.colon().map_err(bad_json)?;
        if index < 3 && !wrong_type {
            let v = match r.peek() {
                Some(b'"') => Some(r.string().map_err(bad_json)?),
                Some(b'n') => {
                    r.literal(b"null").map_err(bad_json)?;
                    None
                }
                _ => {
                    wrong_type = true;
                    r.skip_value(1).map_err(bad_json)?;
                    continue;
                }
            };
            match index {
                0 => alg = v,
                1 => kid = v,
                _ => typ = v,
            }
        } else {
            forbidden |= (3..6).contains(&index);
            r.skip_value(1).map_err(bad_json)?;
        }
    }
    r.end_top().map_err(bad_json)?;
    if wrong_type {
        return Err(malformed("header members have the wrong types"));
    }
    if forbidden {
        return Err(VerifyError::new(
            ErrorKind::ForbiddenHeader,
            "`crit`, `zip` and `b64` are not accepted",
        ));
    }
    let alg = alg.ok_or_else(|| malformed("the header has no `alg`"))?;
    let alg: Algorithm = alg.parse().map_err(|_| {
        VerifyError::new(
            ErrorKind::Unsupported,
            format!("algorithm {:?}", alg.chars().take(32).collect::<String>()),
        )
    })?;
    if !alg.is_supported() {
        return Err(VerifyError::new(
            ErrorKind::Unsupported,
            format!("algorithm {alg} is not supported (ring has no P-521)"),
        ));
    }
    Ok(HeaderRef { alg, kid, typ })
}

/// Check the signature of parsed parts with a key: the key's pinned algorithm must be the
/// header's `alg`.
pub(crate) fn check_signature(
    parts: &PartsRef<'_, '_>,
    key: &VerifyingKey,
) -> Result<(), VerifyError> {
    if key.alg() != parts.header.alg {
        return Err(VerifyError::new(
            ErrorKind::AlgMismatch,
            format!(
                "the header says {} but the key is pinned to {}",
                parts.header.alg,
                key.alg()
            ),
        ));
    }
    key.verify(parts.signing_input, parts.signature)
}

/// A JWS whose signature verified.
#[derive(Clone, Debug)]
pub struct VerifiedJws {
    header: Header,
    payload: Vec<u8>,
}

impl VerifiedJws {
    /// The header.
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// The payload (may be empty).
    pub fn payload(&self) -> &[u8] {
        &self.payload
    }

    /// The payload, owned.
    pub fn into_payload(self) -> Vec<u8> {
        self.payload
    }
}

/// Verify a compact JWS of any payload (empty allowed) with the key chosen by its `kid`.
pub fn verify_compact(token: &str, keys: &KeySet) -> Result<VerifiedJws, VerifyError> {
    verify_compact_with_limit(token, keys, DEFAULT_MAX_SIZE)
}

/// [`verify_compact`] with another size limit.
pub fn verify_compact_with_limit(
    token: &str,
    keys: &KeySet,
    max_size: usize,
) -> Result<VerifiedJws, VerifyError> {
    let mut buf = Vec::new();
    let parts = parse_into(token, max_size, &mut buf)?;
    let key = keys.get(parts.header.kid.as_deref())?;
    check_signature(&parts, key)?;
    Ok(VerifiedJws {
        header: Header {
            alg: parts.header.alg,
            kid: parts.header.kid.map(Cow::into_owned),
            typ: parts.header.typ.map(Cow::into_owned),
        },
        payload: parts.payload.to_vec(),
    })
}

/// Sign `payload` as a compact JWS with header `{"alg", "kid"?, "typ"?}`.
pub fn sign_compact(
    key: &SigningKey,
    kid: Option<&str>,
    typ: Option<&str>,
    payload: &[u8],
) -> Result<String, SignError> {
    #[derive(serde::Serialize)]
    struct H<'a> {
        alg: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        kid: Option<&'a str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        typ: Option<&'a str>,
    }
    let header = serde_json::to_vec(&H {
        alg: key.alg().as_str(),
        kid,
        typ,
    })
    .map_err(|e| SignError::Claims(e.to_string()))?;
    sign_with_raw_header(key, &header, payload)
}

/// Sign with a header given as raw JSON bytes (for tests and interop; the header is not
/// checked).
pub fn sign_with_raw_header(
    key: &SigningKey,
    header_json: &[u8],
    payload: &[u8],
) -> Result<String, SignError> {
    let mut out = String::with_capacity((header_json.len() + payload.len()) * 4 / 3 + 100);
    b64::encode_to(header_json, &mut out);
    out.push('.');
    b64::encode_to(payload, &mut out);
    let sig = key.sign(out.as_bytes())?;
    out.push('.');
    b64::encode_to(&sig, &mut out);
    Ok(out)
}

/// Decode a compact JWS without verifying anything (for `secmesh token inspect` and
/// debugging). Never use the result for a decision.
pub fn decode_unverified(token: &str) -> Result<Unverified, VerifyError> {
    if token.len() > DEFAULT_MAX_SIZE {
        return Err(VerifyError::new(
            ErrorKind::TooLarge,
            "the token is too large",
        ));
    }
    let mut it = token.split('.');
    let (Some(h), Some(p), Some(_), None) = (it.next(), it.next(), it.next(), it.next()) else {
        return Err(malformed("a compact JWS has exactly three parts"));
    };
    let header_json =
        b64::decode(h.as_bytes()).map_err(|_| malformed("the header is not base64url"))?;
    secmesh_core::json::check_object(&header_json, secmesh_core::json::DEFAULT_MAX_DEPTH)
        .map_err(|e| VerifyError::new(ErrorKind::Malformed, format!("header: {e}")))?;
    let header =
        serde_json::from_slice(&header_json).map_err(|_| malformed("the header is not JSON"))?;
    let payload =
        b64::decode(p.as_bytes()).map_err(|_| malformed("the payload is not base64url"))?;
    Ok(Unverified { header, payload })
}

/// A decoded, NOT verified, JWS.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Unverified {
    /// The whole header as JSON.
    pub header: serde_json::Value,
    /// The payload bytes.
    pub payload: Vec<u8>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> SigningKey {
        SigningKey::from_hmac_secret(Algorithm::Hs256, &[7u8; 32]).unwrap()
    }

    fn keys() -> KeySet {
        KeySet::single(key().verifying_key(Some("k".into())))
    }

    fn kind(token: &str) -> ErrorKind {
        verify_compact(token, &keys()).unwrap_err().kind()
    }

    #[test]
    fn round_trip_and_empty_payload() {
        let t = sign_compact(&key(), Some("k"), None, b"").unwrap();
        assert_eq!(verify_compact(&t, &keys()).unwrap().payload(), b"");
    }

    #[test]
    fn structure_is_strict() {
        let t = sign_compact(&key(), Some("k"), None, b"x").unwrap();
        assert_eq!(kind(&format!("{t}.")), ErrorKind::Malformed);
        assert_eq!(kind(&t.replacen('.', "", 1)), ErrorKind::Malformed);
        assert_eq!(kind(&format!("{t}=")), ErrorKind::Malformed);
        assert_eq!(kind(&format!(" {t}")), ErrorKind::Malformed);
        let sig_start = t.rfind('.').unwrap();
        assert_eq!(kind(&t[..=sig_start]), ErrorKind::Malformed);
        assert_eq!(
            verify_compact_with_limit(&t, &keys(), 10)
                .unwrap_err()
                .kind(),
            ErrorKind::TooLarge
        );
    }

    #[test]
    fn header_rules() {
        let k = key();
        let signed = |h: &str| sign_with_raw_header(&k, h.as_bytes(), b"x").unwrap();
        assert_eq!(
            kind(&signed(r#"{"alg":"none","kid":"k"}"#)),
            ErrorKind::Unsupported
        );
        assert_eq!(
            kind(&signed(r#"{"alg":"ES512","kid":"k"}"#)),
            ErrorKind::Unsupported
        );
        assert_eq!(kind(&signed(r#"{"kid":"k"}"#)), ErrorKind::Malformed);
        assert_eq!(
            kind(&signed(r#"{"alg":"HS256","kid":"k","alg":"HS256"}"#)),
            ErrorKind::Malformed
        );
        assert_eq!(
            kind(&signed(r#"{"alg":"HS256","kid":"k","crit":["exp"]}"#)),
            ErrorKind::ForbiddenHeader
        );
        assert_eq!(
            kind(&signed(r#"{"alg":"HS256","kid":"k","b64":false}"#)),
            ErrorKind::ForbiddenHeader
        );
        assert_eq!(
            kind(&signed(r#"{"alg":"HS256","kid":"k","zip":null}"#)),
            ErrorKind::ForbiddenHeader
        );
        assert_eq!(
            kind(&signed(r#"{"alg":"HS384","kid":"k"}"#)),
            ErrorKind::AlgMismatch
        );
        assert_eq!(
            kind(&signed(r#"{"alg":"HS256","kid":"other"}"#)),
            ErrorKind::UnknownKid
        );
        assert_eq!(
            kind(&signed(r#"{"alg":"HS256","kid":7}"#)),
            ErrorKind::Malformed
        );
        assert!(
            verify_compact(
                &signed(r#"{"alg":"HS256","kid":"k","jku":"https://evil"}"#),
                &keys()
            )
            .is_ok()
        );
    }

    #[test]
    fn scratch_is_reused_reentrant_and_bounded() {
        with_scratch(|b| {
            b.clear();
            b.extend_from_slice(b"outer");
            // A nested verification (say, from a revocation hook) gets a buffer of its own.
            with_scratch(|inner| assert!(inner.is_empty()));
            assert_eq!(b, b"outer");
        });
        let t = sign_compact(&key(), Some("k"), None, b"payload").unwrap();
        assert!(
            with_scratch(|b| parse_into(&t, DEFAULT_MAX_SIZE, b).map(|p| p.payload.len())).is_ok()
        );
        assert!(
            with_scratch(|b| b.capacity()) > 0,
            "kept for the next token"
        );
        with_scratch(|b| b.reserve(SCRATCH_KEEP + 1));
        assert!(
            with_scratch(|b| b.capacity()) <= SCRATCH_KEEP,
            "a big buffer is not kept"
        );
    }

    #[test]
    fn no_panic_on_garbage() {
        for s in [
            "",
            ".",
            "..",
            "...",
            "a.b.c",
            "e30.e30.e30",
            "\u{1F600}.\u{1F600}.x",
        ] {
            assert!(verify_compact(s, &keys()).is_err());
        }
    }
}
