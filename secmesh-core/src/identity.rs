//! Workload identity: SPIFFE IDs and trust domains.
//!
//! A SPIFFE ID names a workload, `spiffe://<trust-domain>/<path>`. Parsing follows the SPIFFE
//! ID specification strictly: lowercase `spiffe` scheme; a trust domain of lowercase letters,
//! digits, `.`, `-` and `_` (no port, no user info, at most 255 bytes); a path of segments of
//! letters, digits, `.`, `-` and `_`, with no empty, `.` or `..` segment and no trailing `/`; no
//! query or fragment; at most 2048 bytes in all. Workload IDs (the ones in X.509-SVIDs) must have
//! a path; the bare trust-domain ID is accepted only where [`SpiffeId::parse_any`] is used.
//!
//! # Example
//! ```
//! use secmesh_core::identity::SpiffeId;
//!
//! let id: SpiffeId = "spiffe://mesh.test/ns/shop/sa/orders".parse().unwrap();
//! assert_eq!(id.trust_domain().as_str(), "mesh.test");
//! assert_eq!(id.path(), "/ns/shop/sa/orders");
//! assert!("spiffe://Mesh.test/x".parse::<SpiffeId>().is_err());
//! assert!("spiffe://mesh.test/a/../b".parse::<SpiffeId>().is_err());
//! ```

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The longest SPIFFE ID accepted, in bytes.
pub const MAX_ID_LEN: usize = 2048;
/// The longest trust domain accepted, in bytes.
pub const MAX_TRUST_DOMAIN_LEN: usize = 255;

const SCHEME: &str = "spiffe://";

/// Why a SPIFFE ID or trust domain was rejected.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SpiffeIdError {
    /// Empty input.
    #[error("empty")]
    Empty,
    /// The scheme is not `spiffe://` (lowercase).
    #[error("scheme must be spiffe://")]
    Scheme,
    /// The trust domain is missing.
    #[error("missing trust domain")]
    MissingTrustDomain,
    /// A character not allowed in a trust domain (including uppercase, `:` for a port, `@`).
    #[error("invalid trust domain character")]
    TrustDomainChar,
    /// A character not allowed in a path segment (including `?` and `#`).
    #[error("invalid path character")]
    PathChar,
    /// An empty path segment (`//`) or a trailing `/`.
    #[error("empty path segment")]
    EmptySegment,
    /// A `.` or `..` path segment.
    #[error("dot segment")]
    DotSegment,
    /// A workload ID without a path.
    #[error("missing path")]
    MissingPath,
    /// Longer than the limits.
    #[error("too long")]
    TooLong,
}

/// A SPIFFE trust domain, e.g. `mesh.test`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TrustDomain(Box<str>);

impl TrustDomain {
    /// The trust domain name.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The trust domain's own SPIFFE ID, `spiffe://<td>`.
    pub fn id_string(&self) -> String {
        format!("{SCHEME}{}", self.0)
    }
}

fn check_trust_domain(td: &str) -> Result<(), SpiffeIdError> {
    if td.is_empty() {
        return Err(SpiffeIdError::MissingTrustDomain);
    }
    if td.len() > MAX_TRUST_DOMAIN_LEN {
        return Err(SpiffeIdError::TooLong);
    }
    if !td
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'-' | b'_'))
    {
        return Err(SpiffeIdError::TrustDomainChar);
    }
    Ok(())
}

impl FromStr for TrustDomain {
    type Err = SpiffeIdError;

    /// Parses a bare trust domain name, or a `spiffe://<td>` ID without a path.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let td = s.strip_prefix(SCHEME).unwrap_or(s);
        check_trust_domain(td)?;
        Ok(TrustDomain(td.into()))
    }
}

impl fmt::Display for TrustDomain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for TrustDomain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TrustDomain({})", self.0)
    }
}

/// A validated SPIFFE ID.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SpiffeId {
    /// The whole ID, `spiffe://td/path` (shared: a clone per request costs no allocation).
    id: std::sync::Arc<str>,
    /// Where the path starts in `id` (== id.len() when there is no path).
    path_at: usize,
}

impl SpiffeId {
    /// Parses a SPIFFE ID that may be a bare trust-domain ID (`spiffe://td`).
    pub fn parse_any(s: &str) -> Result<SpiffeId, SpiffeIdError> {
        if s.is_empty() {
            return Err(SpiffeIdError::Empty);
        }
        if s.len() > MAX_ID_LEN {
            return Err(SpiffeIdError::TooLong);
        }
        let rest = s.strip_prefix(SCHEME).ok_or(SpiffeIdError::Scheme)?;
        let (td, path) = match rest.find('/') {
            Some(i) => rest.split_at(i),
            None => (rest, ""),
        };
        check_trust_domain(td)?;
        if !path.is_empty() {
            for seg in path[1..].split('/') {
                match seg {
                    "" => return Err(SpiffeIdError::EmptySegment),
                    "." | ".." => return Err(SpiffeIdError::DotSegment),
                    _ => {}
                }
                if !seg
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
                {
                    return Err(SpiffeIdError::PathChar);
                }
            }
        }
        Ok(SpiffeId {
            id: s.into(),
            path_at: SCHEME.len() + td.len(),
        })
    }

    /// The trust domain.
    pub fn trust_domain(&self) -> TrustDomain {
        TrustDomain(self.trust_domain_str().into())
    }

    /// The trust domain, borrowed.
    pub fn trust_domain_str(&self) -> &str {
        &self.id[SCHEME.len()..self.path_at]
    }

    /// The path, starting with `/`, or empty for a trust-domain ID.
    pub fn path(&self) -> &str {
        &self.id[self.path_at..]
    }

    /// Whether this ID belongs to `td`.
    pub fn is_member_of(&self, td: &TrustDomain) -> bool {
        self.trust_domain_str() == td.as_str()
    }

    /// The whole ID as a string.
    pub fn as_str(&self) -> &str {
        &self.id
    }
}

/// The verified identity of the peer on the other end of a mutual-TLS connection: its SPIFFE
/// ID and the SHA-256 thumbprint of its certificate (base64url, as in `cnf.x5t#S256`, RFC
/// 8705). The TLS layer puts one into every request's extensions; the authorize layer uses the
/// id as the caller, the authenticate layer checks certificate-bound tokens against the
/// thumbprint, and the audit layer records the id.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PeerIdentity {
    /// The peer's SPIFFE ID (the one URI SAN of its X.509-SVID).
    pub spiffe_id: SpiffeId,
    /// base64url (no padding) SHA-256 of the peer's DER certificate.
    pub x5t_s256: String,
}

impl FromStr for SpiffeId {
    type Err = SpiffeIdError;

    /// Parses a workload SPIFFE ID, which must have a path.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let id = SpiffeId::parse_any(s)?;
        if id.path().is_empty() {
            return Err(SpiffeIdError::MissingPath);
        }
        Ok(id)
    }
}

impl fmt::Display for SpiffeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.id)
    }
}

impl fmt::Debug for SpiffeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SpiffeId({})", self.id)
    }
}

impl Serialize for SpiffeId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.id)
    }
}

impl<'de> Deserialize<'de> for SpiffeId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        SpiffeId::parse_any(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_ids() {
        for s in [
            "spiffe://mesh.test/gateway",
            "spiffe://a/b/c.d/e-f/g_h/0",
            "spiffe://x_y-z.0/A",
            "spiffe://mesh.test/...",
        ] {
            let id: SpiffeId = s.parse().unwrap();
            assert_eq!(id.to_string(), s);
        }
        let td = SpiffeId::parse_any("spiffe://mesh.test").unwrap();
        assert_eq!(td.path(), "");
        assert_eq!(
            "spiffe://mesh.test".parse::<SpiffeId>(),
            Err(SpiffeIdError::MissingPath)
        );
    }

    #[test]
    fn invalid_ids() {
        use SpiffeIdError::*;
        let long_td = format!("spiffe://{}/a", "a".repeat(256));
        let long_id = format!("spiffe://td/{}", "a".repeat(2048));
        let cases: Vec<(&str, SpiffeIdError)> = vec![
            ("", Empty),
            ("SPIFFE://td/a", Scheme),
            ("http://td/a", Scheme),
            ("spiffe:/td/a", Scheme),
            ("spiffe:///a", MissingTrustDomain),
            ("spiffe://TD/a", TrustDomainChar),
            ("spiffe://td:443/a", TrustDomainChar),
            ("spiffe://u@td/a", TrustDomainChar),
            ("spiffe://td/a/", EmptySegment),
            ("spiffe://td//a", EmptySegment),
            ("spiffe://td/", EmptySegment),
            ("spiffe://td/./a", DotSegment),
            ("spiffe://td/a/..", DotSegment),
            ("spiffe://td/a?x=1", PathChar),
            ("spiffe://td/a#f", PathChar),
            ("spiffe://td/a%20b", PathChar),
            ("spiffe://td/é", PathChar),
            (&long_td, TooLong),
            (&long_id, TooLong),
        ];
        for (s, e) in cases {
            assert_eq!(s.parse::<SpiffeId>(), Err(e), "{s}");
        }
    }

    #[test]
    fn trust_domains() {
        let td: TrustDomain = "mesh.test".parse().unwrap();
        assert_eq!(td.id_string(), "spiffe://mesh.test");
        let id: SpiffeId = "spiffe://mesh.test/a".parse().unwrap();
        assert!(id.is_member_of(&td));
        assert!(!id.is_member_of(&"other.test".parse().unwrap()));
        assert_eq!("spiffe://mesh.test".parse::<TrustDomain>().unwrap(), td);
        assert!("Mesh".parse::<TrustDomain>().is_err());
    }

    #[test]
    fn serde_round_trip() {
        let id: SpiffeId = "spiffe://mesh.test/a".parse().unwrap();
        let j = serde_json::to_string(&id).unwrap();
        assert_eq!(serde_json::from_str::<SpiffeId>(&j).unwrap(), id);
        assert!(serde_json::from_str::<SpiffeId>("\"spiffe://X/a\"").is_err());
    }
}
