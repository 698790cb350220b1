//! Errors: why a token was refused ([`VerifyError`]), why a key was refused ([`KeyError`]),
//! why signing failed ([`SignError`]).
//!
//! # Example
//! ```
//! use secmesh_tokens::{Algorithm, ErrorKind, KeySet, SigningKey, Verifier};
//!
//! let key = SigningKey::generate(Algorithm::EdDsa)?;
//! let verifier = Verifier::new(KeySet::single(key.verifying_key(Some("k1".into()))));
//! let err = verifier.verify("not.a.token").unwrap_err();
//! assert_eq!(err.kind(), ErrorKind::Malformed);
//! // The kind is a stable word (metrics, audit, the CLI); the detail never holds the token.
//! assert_eq!(err.kind().as_str(), "malformed");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::borrow::Cow;
use std::fmt;

/// The reason a token or JWS was refused, as a stable word for logs, metrics and the CLI.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// Not a well-formed JWS compact serialization, or not strict JSON inside.
    Malformed,
    /// Larger than the size limit.
    TooLarge,
    /// The header's `alg` is unknown, `none`, or not supported by this build.
    Unsupported,
    /// No key with the token's `kid` (or no `kid` where one is needed).
    UnknownKid,
    /// The key is pinned to another algorithm than the header's `alg`.
    AlgMismatch,
    /// The key may not verify signatures (`use: enc`, or `key_ops` without `verify`).
    KeyNotUsable,
    /// The signature does not verify.
    BadSignature,
    /// `crit`, `zip` or `b64` is present in the header.
    ForbiddenHeader,
    /// `typ` is absent or not the expected one.
    WrongTyp,
    /// `iss` is not the expected issuer.
    WrongIss,
    /// `aud` does not name the expected audience.
    WrongAud,
    /// `exp` has passed (beyond the skew).
    Expired,
    /// `nbf` or `iat` is in the future (beyond the skew).
    NotYetValid,
    /// `exp - iat` is longer than the token's class allows.
    LifetimeExceedsClass,
    /// The token's class is slower than the slowest class accepted here.
    ClassNotAllowed,
    /// A required claim is absent.
    MissingClaim,
    /// A claim is present but malformed.
    InvalidClaim,
    /// The token (its `jti`) or its key was revoked.
    Revoked,
    /// The token is bound to a certificate (`cnf.x5t#S256`) other than the connection's.
    BindingMismatch,
    /// The verification keys are not available: a live key source could not refresh them for
    /// longer than its maximum staleness (fail closed).
    KeysUnavailable,
}

impl ErrorKind {
    /// The stable word: `malformed`, `too_large`, `unsupported`, `unknown_kid`,
    /// `alg_mismatch`, `key_not_usable`, `bad_signature`, `forbidden_header`, `wrong_typ`,
    /// `wrong_iss`, `wrong_aud`, `expired`, `not_yet_valid`, `lifetime_exceeds_class`,
    /// `class_not_allowed`, `missing_claim`, `invalid_claim`, `revoked`, `binding_mismatch`,
    /// `keys_unavailable`.
    pub const fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Malformed => "malformed",
            ErrorKind::TooLarge => "too_large",
            ErrorKind::Unsupported => "unsupported",
            ErrorKind::UnknownKid => "unknown_kid",
            ErrorKind::AlgMismatch => "alg_mismatch",
            ErrorKind::KeyNotUsable => "key_not_usable",
            ErrorKind::BadSignature => "bad_signature",
            ErrorKind::ForbiddenHeader => "forbidden_header",
            ErrorKind::WrongTyp => "wrong_typ",
            ErrorKind::WrongIss => "wrong_iss",
            ErrorKind::WrongAud => "wrong_aud",
            ErrorKind::Expired => "expired",
            ErrorKind::NotYetValid => "not_yet_valid",
            ErrorKind::LifetimeExceedsClass => "lifetime_exceeds_class",
            ErrorKind::ClassNotAllowed => "class_not_allowed",
            ErrorKind::MissingClaim => "missing_claim",
            ErrorKind::InvalidClaim => "invalid_claim",
            ErrorKind::Revoked => "revoked",
            ErrorKind::BindingMismatch => "binding_mismatch",
            ErrorKind::KeysUnavailable => "keys_unavailable",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A refused token: a [`kind`](Self::kind) to branch on and a human detail.
///
/// Displays as `<kind>: <detail>`. The detail never contains the token, a signature or key
/// material; it may name a claim value such as the issuer that did not match.
#[derive(Clone, PartialEq, Eq)]
pub struct VerifyError {
    kind: ErrorKind,
    detail: Cow<'static, str>,
}

impl VerifyError {
    /// An error of `kind` (for checks made outside this crate, such as certificate binding in
    /// the tower layers).
    pub fn new(kind: ErrorKind, detail: impl Into<Cow<'static, str>>) -> Self {
        VerifyError {
            kind,
            detail: detail.into(),
        }
    }

    /// A `malformed` error for token framing found outside this crate (e.g. two `Txn-Token`
    /// headers).
    pub fn malformed(detail: impl Into<Cow<'static, str>>) -> Self {
        VerifyError::new(ErrorKind::Malformed, detail)
    }

    /// Why, as a stable kind.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// Why, in words.
    pub fn detail(&self) -> &str {
        &self.detail
    }
}

impl fmt::Display for VerifyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind, self.detail)
    }
}

impl fmt::Debug for VerifyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "VerifyError({}: {})", self.kind, self.detail)
    }
}

impl std::error::Error for VerifyError {}

/// A key that could not be loaded or used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// The PEM armour is broken or holds another kind of object.
    #[error("invalid PEM: {0}")]
    Pem(String),
    /// The key encoding (DER, JWK fields) is malformed or the backend refused it.
    #[error("invalid key: {0}")]
    Invalid(String),
    /// A well-formed key that is too weak to use: short RSA modulus, small exponent, ROCA, short
    /// HMAC secret.
    #[error("weak key: {0}")]
    Weak(crate::key::WeakKey),
    /// The key does not fit the algorithm it is pinned to.
    #[error("key does not fit {alg}: {detail}")]
    AlgMismatch {
        /// The algorithm asked for.
        alg: crate::Algorithm,
        /// Why it does not fit.
        detail: String,
    },
    /// The algorithm (or key type) is not supported by this build.
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// A key set names the same `kid` twice.
    #[error("duplicate kid {0:?}")]
    DuplicateKid(String),
    /// A key set mixes public and private, or symmetric and asymmetric keys.
    #[error("mixed key set: {0}")]
    MixedSet(&'static str),
    /// A key set needs `kid`s to choose between its keys.
    #[error("a key in a set of several has no kid")]
    MissingKid,
    /// A key set holds more keys than [`MAX_KEYS`](crate::key::MAX_KEYS).
    #[error("the key set holds more than {max} keys")]
    TooManyKeys {
        /// The limit.
        max: usize,
    },
    /// The JWK or JWKS JSON is malformed.
    #[error("invalid JWK: {0}")]
    Jwk(String),
    /// A JWKS with no key at all: every token would fail with `unknown_kid`, so the set is
    /// refused when it is loaded (at start-up), not on every request.
    #[error("the key set holds no key")]
    EmptySet,
}

/// Signing failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SignError {
    /// The backend refused to sign (it should not happen with a loaded key).
    #[error("the crypto backend failed to sign")]
    Crypto,
    /// The claims could not be encoded or are inconsistent.
    #[error("invalid claims: {0}")]
    Claims(String),
    /// The random number generator failed.
    #[error("the system random number generator failed")]
    Random,
}
