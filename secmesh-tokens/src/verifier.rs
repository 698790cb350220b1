//! The [`Verifier`]: from a compact token to a [`Verified<Claims>`] proof, or a typed reason.
//!
//! Order of checks (DESIGN.md): size and structure, key by `kid` and the pinned algorithm, the
//! signature, and only then anything the token says: `typ`, claims, `iss`, `aud`, time (with a
//! skew, 60 s by default), class lifetime and the slowest class accepted, revocation.
//!
//! # Example
//! ```
//! use secmesh_tokens::{Algorithm, ErrorKind, Issuer, KeySet, MintRequest, SigningKey, Verifier};
//! use secmesh_core::{ExpiryClass, ManualClock};
//! use std::sync::Arc;
//!
//! let clock = Arc::new(ManualClock::new(1_700_000_000));
//! let key = SigningKey::generate(Algorithm::EdDsa)?;
//! let keys = KeySet::single(key.verifying_key(Some("k1".into())));
//! let issuer = Issuer::new(key, "k1", "https://gw.mesh.test")
//!     .audience("mesh.test")
//!     .clock(clock.clone());
//! let token = issuer.mint(&MintRequest::new("user:alice", ExpiryClass::Fast).grant("read", "orders/*"))?;
//!
//! let verifier = Verifier::new(keys)
//!     .issuer("https://gw.mesh.test")
//!     .audience("mesh.test")
//!     .max_class(ExpiryClass::Medium)
//!     .clock(clock.clone());
//! let claims = verifier.verify(&token)?;
//! assert_eq!(claims.sub, "user:alice");
//!
//! clock.advance(180 + 61);
//! assert_eq!(verifier.verify(&token).unwrap_err().kind(), ErrorKind::Expired);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::collections::HashSet;
use std::fmt;
use std::ops::Deref;
use std::sync::{Arc, RwLock};

use secmesh_core::claims::{Claims, ClaimsError};
use secmesh_core::{ClassBounds, Clock, ExpiryClass, SystemClock};

use crate::alg::Algorithm;
use crate::error::{ErrorKind, VerifyError};
use crate::jws;
use crate::key::KeySet;
use crate::source::KeySource;

/// The `typ` of a transaction token.
pub const TXN_TOKEN_TYP: &str = "txntoken+jwt";

/// Proof that a token verified: only a [`Verifier`] makes one. Derefs to the claims.
#[derive(Clone, Debug)]
pub struct Verified<T> {
    inner: T,
    kid: Option<String>,
    alg: Algorithm,
}

impl<T> Verified<T> {
    /// The proof: for the verifiers of this crate only.
    pub(crate) fn new(inner: T, kid: Option<String>, alg: Algorithm) -> Verified<T> {
        Verified { inner, kid, alg }
    }

    /// The verified value.
    pub fn claims(&self) -> &T {
        &self.inner
    }

    /// The verified value, owned.
    pub fn into_inner(self) -> T {
        self.inner
    }

    /// The `kid` of the key that verified it.
    pub fn kid(&self) -> Option<&str> {
        self.kid.as_deref()
    }

    /// The algorithm of the signature.
    pub fn alg(&self) -> Algorithm {
        self.alg
    }
}

impl<T> Deref for Verified<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.inner
    }
}

/// Revocation, asked after everything else passed.
pub trait Revocation: Send + Sync + fmt::Debug {
    /// Whether this token (by `jti`, or the key by `kid`) is revoked.
    fn is_revoked(&self, claims: &Claims, kid: Option<&str>) -> bool;
}

/// An in-memory revocation list of token ids and key ids, shared by clones.
#[derive(Clone, Debug, Default)]
pub struct RevocationList {
    inner: Arc<RwLock<(HashSet<String>, HashSet<String>)>>,
}

impl RevocationList {
    /// An empty list.
    pub fn new() -> Self {
        Self::default()
    }

    /// Revoke one token by its `jti`.
    pub fn revoke_jti(&self, jti: impl Into<String>) {
        if let Ok(mut g) = self.inner.write() {
            g.0.insert(jti.into());
        }
    }

    /// Revoke every token signed by the key `kid`.
    pub fn revoke_kid(&self, kid: impl Into<String>) {
        if let Ok(mut g) = self.inner.write() {
            g.1.insert(kid.into());
        }
    }
}

impl Revocation for RevocationList {
    fn is_revoked(&self, claims: &Claims, kid: Option<&str>) -> bool {
        // A poisoned lock fails closed.
        self.inner.read().map_or(true, |g| {
            g.0.contains(&claims.jti) || kid.is_some_and(|k| g.1.contains(k))
        })
    }
}

/// Verifies secmesh tokens against a key set and expectations. Cheap to share behind an `Arc`.
#[derive(Clone, Debug)]
pub struct Verifier {
    source: Arc<KeySource>,
    issuer: Option<String>,
    audience: Option<String>,
    typ: String,
    max_class: ExpiryClass,
    skew: u64,
    bounds: ClassBounds,
    clock: Arc<dyn Clock>,
    max_size: usize,
    revocation: Option<Arc<dyn Revocation>>,
}

impl Verifier {
    /// A verifier for tokens signed by `keys`, with `typ: txntoken+jwt`, every class accepted,
    /// 60 s skew, the default class bounds and the system clock. Set the expected
    /// [`issuer`](Self::issuer) and [`audience`](Self::audience): without them any issuer and
    /// audience signed by these keys passes.
    pub fn new(keys: impl Into<Arc<KeySet>>) -> Verifier {
        Verifier::with_source(Arc::new(KeySource::fixed(keys)))
    }

    /// A verifier that reads its keys through `source` (a live, swapped set: a file, a JWKS
    /// URL, OIDC discovery); otherwise as [`new`](Self::new).
    pub fn with_source(source: Arc<KeySource>) -> Verifier {
        Verifier {
            source,
            issuer: None,
            audience: None,
            typ: TXN_TOKEN_TYP.to_owned(),
            max_class: ExpiryClass::Slow,
            skew: 60,
            bounds: ClassBounds::default(),
            clock: Arc::new(SystemClock),
            max_size: jws::DEFAULT_MAX_SIZE,
            revocation: None,
        }
    }

    /// Require `iss` to equal this.
    pub fn issuer(mut self, iss: impl Into<String>) -> Self {
        self.issuer = Some(iss.into());
        self
    }

    /// Require `aud` to name this.
    pub fn audience(mut self, aud: impl Into<String>) -> Self {
        self.audience = Some(aud.into());
        self
    }

    /// Require this `typ` instead of `txntoken+jwt` (compared case-insensitively, with or
    /// without `application/`).
    pub fn typ(mut self, typ: impl Into<String>) -> Self {
        self.typ = typ.into();
        self
    }

    /// The slowest class accepted (a fast token passes where medium is allowed).
    ///
    /// Deprecated: the route's slowest class is a setting of the server stack
    /// (`secmesh_tower::SecureLayer::builder(..).max_class(..)`, refused with 403
    /// `class_not_allowed`); the verifier enforces the class's lifetime bound only.
    #[deprecated(
        since = "0.1.0",
        note = "set the route's slowest class on the server stack: secmesh_tower::SecureLayer::builder(..).max_class(..) (403 class_not_allowed); the verifier checks the class lifetime bound"
    )]
    pub fn max_class(mut self, class: ExpiryClass) -> Self {
        self.max_class = class;
        self
    }

    /// Clock skew tolerated on `exp`, `nbf` and `iat`, in seconds.
    pub fn skew(mut self, secs: u64) -> Self {
        self.skew = secs;
        self
    }

    /// Class lifetime bounds.
    pub fn bounds(mut self, bounds: ClassBounds) -> Self {
        self.bounds = bounds;
        self
    }

    /// The clock ("now").
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// The size limit on a token, in bytes.
    pub fn max_size(mut self, bytes: usize) -> Self {
        self.max_size = bytes;
        self
    }

    /// Ask `revocation` about every token that passed everything else.
    pub fn revocation(mut self, revocation: Arc<dyn Revocation>) -> Self {
        self.revocation = Some(revocation);
        self
    }

    /// The current key set (the source's, at this moment).
    pub fn keys(&self) -> Arc<KeySet> {
        self.source.keys()
    }

    /// The key source.
    pub fn source(&self) -> &Arc<KeySource> {
        &self.source
    }

    pub(crate) fn size_limit(&self) -> usize {
        self.max_size
    }

    /// The slowest class accepted.
    pub fn accepted_class(&self) -> ExpiryClass {
        self.max_class
    }

    /// Verify a compact token against the current key set, without waiting for a refresh
    /// (see [`verify_async`](Self::verify_async)). A `kid` that a refreshing (remote) source
    /// does not hold fails with `unknown_kid` at once, and starts the same single-flight,
    /// rate-limited refresh in the background (on the current tokio runtime), so that a
    /// signer's new key is learnt even by callers that cannot wait, such as the tower stack.
    pub fn verify(&self, token: &str) -> Result<Verified<Claims>, VerifyError> {
        self.source.verify_or_kick(|| self.verify_now(token))
    }

    /// [`verify`](Self::verify) without the background refresh.
    fn verify_now(&self, token: &str) -> Result<Verified<Claims>, VerifyError> {
        jws::with_scratch(|buf| {
            let parts = jws::parse_into(token, self.max_size, buf)?;
            self.verify_parts(&parts, None)
        })
    }

    /// Verify a compact token; when its `kid` is not in the current set of a refreshing
    /// (remote) source, ask the source to fetch its keys again (one fetch in flight for all
    /// callers, at most one per interval; the `kid` is not sent) and verify once more. A `kid`
    /// still unknown fails with `unknown_kid`.
    pub async fn verify_async(&self, token: &str) -> Result<Verified<Claims>, VerifyError> {
        self.source
            .verify_or_refresh(|| self.verify_now(token))
            .await
    }

    /// The checks after parsing: key, signature, `typ`, claims (`claims` when the caller
    /// already decoded the payload, e.g. to choose the verifier by `iss`).
    pub(crate) fn verify_parts(
        &self,
        parts: &jws::PartsRef<'_, '_>,
        claims: Option<Claims>,
    ) -> Result<Verified<Claims>, VerifyError> {
        let kid = parts.header.kid.as_deref().ok_or_else(|| {
            VerifyError::new(ErrorKind::UnknownKid, "the token header has no kid")
        })?;
        let keys = self.source.current()?;
        let key = keys.get(Some(kid))?;
        jws::check_signature(parts, key)?;
        if !typ_matches(parts.header.typ.as_deref(), &self.typ) {
            return Err(VerifyError::new(
                ErrorKind::WrongTyp,
                format!("expected typ {:?}", self.typ),
            ));
        }
        let claims = match claims {
            Some(c) => c,
            None => decode_claims(parts.payload)?,
        };
        self.check_claims(&claims)?;
        self.check_revocation(&claims, Some(kid))?;
        Ok(Verified {
            inner: claims,
            kid: Some(kid.to_owned()),
            alg: parts.header.alg,
        })
    }

    /// The claim checks after the signature: issuer, audience, time, class. Also used to
    /// re-check a cached verification (time moves on).
    pub fn check_claims(&self, claims: &Claims) -> Result<(), VerifyError> {
        if let Some(iss) = &self.issuer
            && claims.iss != *iss
        {
            return Err(VerifyError::new(
                ErrorKind::WrongIss,
                format!("expected issuer {iss:?}"),
            ));
        }
        if let Some(aud) = &self.audience
            && !claims.aud.contains(aud)
        {
            return Err(VerifyError::new(
                ErrorKind::WrongAud,
                format!("expected audience {aud:?}"),
            ));
        }
        self.check_time(claims)?;
        if !claims.cls.accepted_by(self.max_class) {
            return Err(VerifyError::new(
                ErrorKind::ClassNotAllowed,
                format!(
                    "a {} token where {} is the slowest class accepted",
                    claims.cls, self.max_class
                ),
            ));
        }
        let bound = self.bounds.bound(claims.cls);
        if claims.lifetime() > bound {
            return Err(VerifyError::new(
                ErrorKind::LifetimeExceedsClass,
                format!(
                    "lifetime {} s exceeds the {} bound of {bound} s",
                    claims.lifetime(),
                    claims.cls
                ),
            ));
        }
        Ok(())
    }

    /// Ask the revocation source, if one is configured (for caches: revocation applies to
    /// tokens verified before it).
    pub fn check_revocation(&self, claims: &Claims, kid: Option<&str>) -> Result<(), VerifyError> {
        match &self.revocation {
            Some(rev) if rev.is_revoked(claims, kid) => Err(VerifyError::new(
                ErrorKind::Revoked,
                "the token or its key is revoked",
            )),
            _ => Ok(()),
        }
    }

    /// Whether the token is still within its time window now (for caches).
    pub fn check_time(&self, claims: &Claims) -> Result<(), VerifyError> {
        let now = self.clock.now_unix();
        if claims.exp <= claims.iat {
            return Err(VerifyError::new(
                ErrorKind::InvalidClaim,
                "`exp` is not after `iat`",
            ));
        }
        if now >= claims.exp.saturating_add(self.skew) {
            return Err(VerifyError::new(
                ErrorKind::Expired,
                format!("expired at {}, now {now}", claims.exp),
            ));
        }
        let not_before = claims.nbf.unwrap_or(claims.iat).max(claims.iat);
        if not_before > now.saturating_add(self.skew) {
            return Err(VerifyError::new(
                ErrorKind::NotYetValid,
                format!("valid from {not_before}, now {now}"),
            ));
        }
        Ok(())
    }
}

/// The payload's claims, or why they are refused.
pub(crate) fn decode_claims(payload: &[u8]) -> Result<Claims, VerifyError> {
    Claims::from_json(payload).map_err(|e| match e {
        ClaimsError::Missing(name) => {
            VerifyError::new(ErrorKind::MissingClaim, format!("`{name}`"))
        }
        ClaimsError::Json(e) => VerifyError::new(ErrorKind::Malformed, format!("payload: {e}")),
        other => VerifyError::new(ErrorKind::InvalidClaim, other.to_string()),
    })
}

fn typ_matches(got: Option<&str>, want: &str) -> bool {
    got.is_some_and(|g| media_type_eq(g, want))
}

/// Media types compare case-insensitively, and `application/` may be left out (RFC 7515
/// §4.1.9). No allocation: this runs on every request.
pub(crate) fn media_type_eq(got: &str, want: &str) -> bool {
    fn strip(s: &str) -> &str {
        match s.get(..12) {
            Some(p) if p.eq_ignore_ascii_case("application/") => &s[12..],
            _ => s,
        }
    }
    strip(got).eq_ignore_ascii_case(strip(want))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typ_comparison() {
        assert!(typ_matches(Some("txntoken+jwt"), TXN_TOKEN_TYP));
        assert!(typ_matches(Some("application/TxnToken+JWT"), TXN_TOKEN_TYP));
        assert!(!typ_matches(Some("JWT"), TXN_TOKEN_TYP));
        assert!(!typ_matches(None, TXN_TOKEN_TYP));
    }
}
