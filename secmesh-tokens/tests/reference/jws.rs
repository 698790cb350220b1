//! The old `jws::parse` (secmesh-tokens before issue 13): three parts, each decoded with the
//! base64 crate, the header strictly checked and then decoded with serde.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;

use secmesh_tokens::{Algorithm, ErrorKind, VerifyError};

/// The header as the old parser read it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    pub alg: Algorithm,
    pub kid: Option<String>,
    pub typ: Option<String>,
}

/// A compact JWS taken apart.
#[derive(Clone, Debug)]
pub struct Parts<'a> {
    pub header: Header,
    pub signing_input: &'a [u8],
    pub payload: Vec<u8>,
    pub signature: Vec<u8>,
}

fn malformed(detail: &'static str) -> VerifyError {
    VerifyError::new(ErrorKind::Malformed, detail)
}

fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    serde::de::IgnoredAny::deserialize(d).map(|_| true)
}

#[derive(Deserialize)]
struct RawHeader<'a> {
    #[serde(borrow)]
    alg: Option<std::borrow::Cow<'a, str>>,
    kid: Option<String>,
    typ: Option<String>,
    #[serde(default, deserialize_with = "present")]
    crit: bool,
    #[serde(default, deserialize_with = "present")]
    zip: bool,
    #[serde(default, deserialize_with = "present")]
    b64: bool,
}

/// Parse a compact JWS without verifying it, within `max_size` bytes.
pub fn parse(token: &str, max_size: usize) -> Result<Parts<'_>, VerifyError> {
    let bytes = token.as_bytes();
    if bytes.len() > max_size {
        return Err(VerifyError::new(ErrorKind::TooLarge, "too large"));
    }
    let mut dots = bytes
        .iter()
        .enumerate()
        .filter(|(_, b)| **b == b'.')
        .map(|(i, _)| i);
    let (Some(d1), Some(d2), None) = (dots.next(), dots.next(), dots.next()) else {
        return Err(malformed("a compact JWS has exactly three parts"));
    };
    let (h, p, s) = (&bytes[..d1], &bytes[d1 + 1..d2], &bytes[d2 + 1..]);
    if h.is_empty() || s.is_empty() {
        return Err(malformed("empty header or signature"));
    }
    let header_json = URL_SAFE_NO_PAD
        .decode(h)
        .map_err(|_| malformed("the header is not base64url without padding"))?;
    let payload = URL_SAFE_NO_PAD
        .decode(p)
        .map_err(|_| malformed("the payload is not base64url without padding"))?;
    let signature = URL_SAFE_NO_PAD
        .decode(s)
        .map_err(|_| malformed("the signature is not base64url without padding"))?;
    let header = parse_header(&header_json)?;
    Ok(Parts {
        header,
        signing_input: &bytes[..d2],
        payload,
        signature,
    })
}

pub fn parse_header(json: &[u8]) -> Result<Header, VerifyError> {
    super::json::check_object(json, super::json::DEFAULT_MAX_DEPTH)
        .map_err(|e| VerifyError::new(ErrorKind::Malformed, format!("header: {e}")))?;
    let raw: RawHeader<'_> = serde_json::from_slice(json)
        .map_err(|_| malformed("header members have the wrong types"))?;
    if raw.crit || raw.zip || raw.b64 {
        return Err(VerifyError::new(
            ErrorKind::ForbiddenHeader,
            "`crit`, `zip` and `b64` are not accepted",
        ));
    }
    let alg = raw
        .alg
        .ok_or_else(|| malformed("the header has no `alg`"))?;
    let alg: Algorithm = alg
        .parse()
        .map_err(|_| VerifyError::new(ErrorKind::Unsupported, "algorithm"))?;
    if !alg.is_supported() {
        return Err(VerifyError::new(ErrorKind::Unsupported, "not supported"));
    }
    Ok(Header {
        alg,
        kid: raw.kid,
        typ: raw.typ,
    })
}
