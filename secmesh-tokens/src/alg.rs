//! JWS algorithms (RFC 7518) and what each needs of a key.
//!
//! # Example
//! ```
//! use secmesh_tokens::Algorithm;
//! use secmesh_tokens::alg::Family;
//!
//! let alg: Algorithm = "ES256".parse()?;
//! assert_eq!(alg.family(), Family::Ecdsa);
//! assert_eq!(alg.to_string(), "ES256");
//! assert!("none".parse::<Algorithm>().is_err(), "never");
//! assert!(!Algorithm::Es512.is_supported(), "known, reported as unsupported");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::fmt;
use std::str::FromStr;

/// A JWS signature algorithm this crate knows by name.
///
/// `none` is not one of them and never will be. [`Algorithm::Es512`] is known so that it can be
/// reported precisely, but the ring backend has no P-521, so it is [unsupported](Self::is_supported).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Algorithm {
    /// Ed25519 (RFC 8037).
    EdDsa,
    /// ECDSA P-256 with SHA-256, fixed-length `r || s`.
    Es256,
    /// ECDSA P-384 with SHA-384, fixed-length `r || s`.
    Es384,
    /// ECDSA P-521 with SHA-512: known, not supported.
    Es512,
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    Rs256,
    /// RSASSA-PKCS1-v1_5 with SHA-384.
    Rs384,
    /// RSASSA-PKCS1-v1_5 with SHA-512.
    Rs512,
    /// RSASSA-PSS with SHA-256.
    Ps256,
    /// RSASSA-PSS with SHA-384.
    Ps384,
    /// RSASSA-PSS with SHA-512.
    Ps512,
    /// HMAC with SHA-256.
    Hs256,
    /// HMAC with SHA-384.
    Hs384,
    /// HMAC with SHA-512.
    Hs512,
}

/// The kind of key an algorithm uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Family {
    /// Ed25519 (`kty: OKP`).
    Ed25519,
    /// ECDSA (`kty: EC`).
    Ecdsa,
    /// RSA (`kty: RSA`).
    Rsa,
    /// HMAC (`kty: oct`).
    Hmac,
}

impl Algorithm {
    /// Every algorithm, supported or not.
    pub const ALL: [Algorithm; 13] = [
        Algorithm::EdDsa,
        Algorithm::Es256,
        Algorithm::Es384,
        Algorithm::Es512,
        Algorithm::Rs256,
        Algorithm::Rs384,
        Algorithm::Rs512,
        Algorithm::Ps256,
        Algorithm::Ps384,
        Algorithm::Ps512,
        Algorithm::Hs256,
        Algorithm::Hs384,
        Algorithm::Hs512,
    ];

    /// The JOSE name (`"EdDSA"`, `"ES256"`, ...).
    pub const fn as_str(self) -> &'static str {
        match self {
            Algorithm::EdDsa => "EdDSA",
            Algorithm::Es256 => "ES256",
            Algorithm::Es384 => "ES384",
            Algorithm::Es512 => "ES512",
            Algorithm::Rs256 => "RS256",
            Algorithm::Rs384 => "RS384",
            Algorithm::Rs512 => "RS512",
            Algorithm::Ps256 => "PS256",
            Algorithm::Ps384 => "PS384",
            Algorithm::Ps512 => "PS512",
            Algorithm::Hs256 => "HS256",
            Algorithm::Hs384 => "HS384",
            Algorithm::Hs512 => "HS512",
        }
    }

    /// The key family.
    pub const fn family(self) -> Family {
        match self {
            Algorithm::EdDsa => Family::Ed25519,
            Algorithm::Es256 | Algorithm::Es384 | Algorithm::Es512 => Family::Ecdsa,
            Algorithm::Rs256
            | Algorithm::Rs384
            | Algorithm::Rs512
            | Algorithm::Ps256
            | Algorithm::Ps384
            | Algorithm::Ps512 => Family::Rsa,
            Algorithm::Hs256 | Algorithm::Hs384 | Algorithm::Hs512 => Family::Hmac,
        }
    }

    /// Whether this build can sign and verify with it (everything but ES512).
    pub const fn is_supported(self) -> bool {
        !matches!(self, Algorithm::Es512)
    }

    /// For HMAC, the smallest secret accepted: the hash output size (RFC 7518 §3.2).
    pub const fn min_secret_len(self) -> usize {
        match self {
            Algorithm::Hs256 => 32,
            Algorithm::Hs384 => 48,
            Algorithm::Hs512 => 64,
            Algorithm::EdDsa
            | Algorithm::Es256
            | Algorithm::Es384
            | Algorithm::Es512
            | Algorithm::Rs256
            | Algorithm::Rs384
            | Algorithm::Rs512
            | Algorithm::Ps256
            | Algorithm::Ps384
            | Algorithm::Ps512 => 0,
        }
    }

    /// For ECDSA, the curve name in a JWK (`crv`).
    pub const fn curve(self) -> Option<&'static str> {
        match self {
            Algorithm::Es256 => Some("P-256"),
            Algorithm::Es384 => Some("P-384"),
            Algorithm::Es512 => Some("P-521"),
            Algorithm::EdDsa => Some("Ed25519"),
            Algorithm::Rs256
            | Algorithm::Rs384
            | Algorithm::Rs512
            | Algorithm::Ps256
            | Algorithm::Ps384
            | Algorithm::Ps512
            | Algorithm::Hs256
            | Algorithm::Hs384
            | Algorithm::Hs512 => None,
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A name that is not a JWS signature algorithm known here (including `none`).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown algorithm {0:?}")]
pub struct UnknownAlgorithm(pub String);

impl FromStr for Algorithm {
    type Err = UnknownAlgorithm;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Algorithm::ALL
            .into_iter()
            .find(|a| a.as_str() == s)
            .ok_or_else(|| UnknownAlgorithm(s.chars().take(32).collect()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_none_is_unknown() {
        for a in Algorithm::ALL {
            assert_eq!(a.as_str().parse::<Algorithm>(), Ok(a));
        }
        assert!("none".parse::<Algorithm>().is_err());
        assert!("hs256".parse::<Algorithm>().is_err());
        assert!(!Algorithm::Es512.is_supported());
    }
}
