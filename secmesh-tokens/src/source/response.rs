//! The pure part of fetching: an HTTP answer (status, `Cache-Control`, body) to a key set, and a
//! metadata document to its `jwks_uri`. No I/O, so both are fuzzed directly.

use std::time::Duration;

use serde::Deserialize;

use super::SourceError;
use crate::key::KeySet;

/// The largest JWKS or metadata body read: 256 KiB.
pub const MAX_BODY: usize = 256 * 1024;

/// A JWKS answer that was accepted.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Fetched {
    /// The keys.
    pub keys: KeySet,
    /// `Cache-Control: max-age` (zero for `no-cache` / `no-store`), unclamped.
    pub max_age: Option<Duration>,
}

/// The status of an answer as an error: 3xx is a refused redirect, anything but 200 an error.
pub fn check_status(status: u16) -> Result<(), SourceError> {
    match status {
        200 => Ok(()),
        300..=399 => Err(SourceError::Redirect { status }),
        _ => Err(SourceError::Status { status }),
    }
}

/// A JWKS answer to a key set: the status must be 200, the body at most [`MAX_BODY`] bytes of
/// a JWKS that [`KeySet::from_jwks_json`] accepts. `cache_control` is the raw header value.
pub fn jwks_from_response(
    status: u16,
    cache_control: Option<&[u8]>,
    body: &[u8],
) -> Result<Fetched, SourceError> {
    check_status(status)?;
    if body.len() > MAX_BODY {
        return Err(SourceError::TooLarge { limit: MAX_BODY });
    }
    let text = std::str::from_utf8(body)
        .map_err(|_| SourceError::Keys(crate::error::KeyError::Jwk("not UTF-8".into())))?;
    let keys = KeySet::from_jwks_json(text)?;
    Ok(Fetched {
        keys,
        max_age: cache_control.and_then(max_age),
    })
}

/// The freshness a `Cache-Control` value gives: `max-age=N` (the first valid one), zero for
/// `no-cache` or `no-store`; `None` when it says neither or is not readable.
pub fn max_age(value: &[u8]) -> Option<Duration> {
    let text = std::str::from_utf8(value).ok()?;
    let mut age = None;
    for directive in text.split(',') {
        let d = directive.trim();
        if d.eq_ignore_ascii_case("no-cache") || d.eq_ignore_ascii_case("no-store") {
            return Some(Duration::ZERO);
        }
        if age.is_none()
            && let Some((name, value)) = d.split_once('=')
            && name.trim().eq_ignore_ascii_case("max-age")
        {
            let v = value.trim().trim_matches('"');
            if !v.is_empty() && v.len() <= 19 && v.bytes().all(|b| b.is_ascii_digit()) {
                age = v.parse::<u64>().ok().map(Duration::from_secs);
            }
        }
    }
    age
}

#[derive(Deserialize)]
struct Metadata {
    issuer: String,
    jwks_uri: String,
}

/// An OIDC or RFC 8414 metadata document to its `jwks_uri`, after checking that its `issuer`
/// is `expected` byte for byte (OpenID Connect Discovery §4.3, RFC 8414 §3.3). The document
/// must be strict JSON as a whole (the members not read too: no duplicate key, no lone
/// surrogate, bounded depth), as a JWKS must.
pub fn jwks_uri_from_metadata(body: &[u8], expected: &str) -> Result<String, SourceError> {
    if body.len() > MAX_BODY {
        return Err(SourceError::TooLarge { limit: MAX_BODY });
    }
    secmesh_core::json::check_object(body, secmesh_core::json::DEFAULT_MAX_DEPTH)
        .map_err(|e| SourceError::Metadata(e.to_string()))?;
    let meta: Metadata =
        serde_json::from_slice(body).map_err(|e| SourceError::Metadata(e.to_string()))?;
    if meta.issuer != expected {
        return Err(SourceError::IssuerMismatch {
            expected: expected.to_owned(),
            found: meta.issuer,
        });
    }
    if meta.jwks_uri.is_empty() {
        return Err(SourceError::Metadata("`jwks_uri` is empty".into()));
    }
    Ok(meta.jwks_uri)
}

/// The two metadata URLs of `issuer`, in the order they are tried: OpenID Connect
/// (`{issuer}/.well-known/openid-configuration`), then RFC 8414 (the well-known segment
/// between the host and the issuer's path).
pub fn metadata_urls(issuer: &str) -> Result<[String; 2], SourceError> {
    let rest = issuer
        .strip_prefix("https://")
        .or_else(|| issuer.strip_prefix("http://"))
        .ok_or_else(|| SourceError::Url("the issuer is not an http(s) URL".into()))?;
    if rest.contains(['?', '#']) {
        return Err(SourceError::Url(
            "the issuer has a query or fragment".into(),
        ));
    }
    let scheme = &issuer[..issuer.len() - rest.len()];
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    if authority.is_empty() {
        return Err(SourceError::Url("the issuer has no host".into()));
    }
    let path = path.trim_end_matches('/');
    Ok([
        format!("{scheme}{authority}{path}/.well-known/openid-configuration"),
        format!("{scheme}{authority}/.well-known/oauth-authorization-server{path}"),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_control() {
        assert_eq!(
            max_age(b"public, max-age=600"),
            Some(Duration::from_secs(600))
        );
        assert_eq!(max_age(b"max-age=\"60\""), Some(Duration::from_secs(60)));
        assert_eq!(max_age(b"no-store"), Some(Duration::ZERO));
        assert_eq!(max_age(b"max-age=-1"), None);
        assert_eq!(max_age(b"max-age=99999999999999999999999"), None);
        assert_eq!(max_age(b"\xff"), None);
    }

    #[test]
    fn well_known_urls() {
        let [oidc, oauth] = metadata_urls("https://idp.test/tenant/").expect("urls");
        assert_eq!(
            oidc,
            "https://idp.test/tenant/.well-known/openid-configuration"
        );
        assert_eq!(
            oauth,
            "https://idp.test/.well-known/oauth-authorization-server/tenant"
        );
        assert!(metadata_urls("ftp://x").is_err());
    }

    #[test]
    fn metadata_is_strict_json() {
        let ok = br#"{"issuer":"https://i.test","jwks_uri":"https://i.test/jwks","x":["a"]}"#;
        assert_eq!(
            jwks_uri_from_metadata(ok, "https://i.test").expect("ok"),
            "https://i.test/jwks"
        );
        // Found by the key_source_metadata fuzz target: a lone surrogate in a member not read.
        let lone = br#"{"issuer":"https://i.test","jwks_uri":"u","x":"\udc00"}"#;
        assert!(matches!(
            jwks_uri_from_metadata(lone, "https://i.test"),
            Err(SourceError::Metadata(_))
        ));
        let dup = br#"{"issuer":"https://i.test","jwks_uri":"u","x":1,"x":2}"#;
        assert!(matches!(
            jwks_uri_from_metadata(dup, "https://i.test"),
            Err(SourceError::Metadata(_))
        ));
    }

    #[test]
    fn statuses() {
        assert!(matches!(
            check_status(302),
            Err(SourceError::Redirect { status: 302 })
        ));
        assert!(matches!(
            check_status(503),
            Err(SourceError::Status { status: 503 })
        ));
        assert!(check_status(200).is_ok());
    }
}
