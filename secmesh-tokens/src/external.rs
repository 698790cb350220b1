//! External tokens: an identity provider's access tokens (RFC 9068) and OpenID Connect ID
//! tokens, verified where they enter the mesh (the Txn-Token Service, the edge) and never
//! beyond it.
//!
//! An [`IdpVerifier`] holds one issuer's keys through a [`KeySource`] (a fixed set, a file, a
//! JWKS URL or OIDC discovery: the live source refreshes on an unknown `kid`) and checks:
//!
//! - the signature with the key the `kid` names, pinned to that key's algorithm (`none` is
//!   never an algorithm); `crit`, `zip`, `b64`, `jku`, `x5u` handled as for txn-tokens;
//! - `typ`: one of the accepted media types, by default `at+jwt` (RFC 9068) and `JWT`; a
//!   missing `typ` only when [`allow_missing_typ`](IdpVerifier::allow_missing_typ) says so
//!   (many ID tokens carry none), and never `txntoken+jwt`: a txn-token is not an external
//!   token, whatever the keys;
//! - `iss` byte-exact, `aud` naming the configured audience (the client id of the edge or
//!   service), `sub` a non-empty string;
//! - `exp` required, `iat` and `nbf` optional, all integer NumericDates; with the clock skew;
//!   a lifetime (`exp - iat`, or `exp - now` without `iat`) of at most
//!   [`max_lifetime`](IdpVerifier::max_lifetime) (24 h by default): a token that claims to be
//!   valid for a year is refused, not trusted for a year;
//! - the payload a strict JSON object: no duplicate member, bounded depth, no lone surrogate.
//!
//! The result is a [`Verified`]`<`[`ExternalClaims`]`>`: only a verifier makes one. OAuth
//! `scope` stays a list of the IdP's words ([`ExternalClaims::scopes`]): it is not in the
//! mesh's grant grammar, and the Txn-Token Service maps it through its exchange policy.
//! [`IdpVerifiers`] chooses among several issuers by `iss` (read once, before any key is used).
//!
//! # Example
//! ```
//! use std::sync::Arc;
//! use secmesh_tokens::external::IdpVerifier;
//! use secmesh_tokens::jws::sign_compact;
//! use secmesh_tokens::source::KeySource;
//! use secmesh_tokens::{Algorithm, KeySet, SigningKey};
//!
//! let key = SigningKey::generate(Algorithm::EdDsa)?;
//! let keys = KeySet::single(key.verifying_key(Some("idp-1".into())));
//! let idp = IdpVerifier::new(Arc::new(KeySource::fixed(keys)), "https://idp.test", "gateway");
//!
//! let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_secs();
//! let claims = serde_json::json!({
//!     "iss": "https://idp.test", "sub": "alice", "aud": "gateway",
//!     "iat": now, "exp": now + 300, "scope": "orders profile", "client_id": "web",
//! });
//! let token = sign_compact(&key, Some("idp-1"), Some("at+jwt"), claims.to_string().as_bytes())?;
//! let verified = idp.verify(&token)?;
//! assert_eq!(verified.sub, "alice");
//! assert!(verified.has_scope("orders"));
//!
//! // Another audience: refused.
//! let other = IdpVerifier::new(idp.source().clone(), "https://idp.test", "billing");
//! assert!(other.verify(&token).is_err());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::fmt;
use std::sync::Arc;

use secmesh_core::claims::Audience;
use secmesh_core::json::{self, DEFAULT_MAX_DEPTH};
use secmesh_core::{Clock, SystemClock};

use crate::error::{ErrorKind, VerifyError};
use crate::jws;
use crate::source::KeySource;
use crate::verifier::{TXN_TOKEN_TYP, Verified, media_type_eq};

/// The claims of a verified external token, as far as the mesh reads them.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ExternalClaims {
    /// `iss`.
    pub iss: String,
    /// `sub`: the IdP's subject identifier.
    pub sub: String,
    /// `aud`.
    pub aud: Audience,
    /// `exp`.
    pub exp: u64,
    /// `iat`, when present.
    pub iat: Option<u64>,
    /// `nbf`, when present.
    pub nbf: Option<u64>,
    /// `jti`, when present.
    pub jti: Option<String>,
    /// `client_id` (RFC 9068) or `azp` (OpenID Connect), when present.
    pub client_id: Option<String>,
    /// The words of `scope` (RFC 8693 section 4.2: space-separated), or of `scp` when it is an
    /// array of strings.
    pub scopes: Vec<String>,
    /// `auth_time`, when present.
    pub auth_time: Option<u64>,
    /// `acr`, when present.
    pub acr: Option<String>,
    /// `amr`, when present.
    pub amr: Vec<String>,
}

impl ExternalClaims {
    /// Whether `scope` names `word`.
    pub fn has_scope(&self, word: &str) -> bool {
        self.scopes.iter().any(|s| s == word)
    }

    fn from_json(payload: &[u8]) -> Result<ExternalClaims, VerifyError> {
        json::check_object(payload, DEFAULT_MAX_DEPTH)
            .map_err(|e| VerifyError::new(ErrorKind::Malformed, format!("payload: {e}")))?;
        let map: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(payload)
            .map_err(|_| VerifyError::new(ErrorKind::Malformed, "payload: not a JSON object"))?;
        let string = |name: &'static str| -> Result<Option<String>, VerifyError> {
            match map.get(name) {
                None => Ok(None),
                Some(serde_json::Value::String(s)) if !s.is_empty() => Ok(Some(s.clone())),
                Some(_) => Err(invalid(name)),
            }
        };
        let time = |name: &'static str| -> Result<Option<u64>, VerifyError> {
            match map.get(name) {
                None => Ok(None),
                Some(v) => v.as_u64().map(Some).ok_or_else(|| invalid(name)),
            }
        };
        let words = |name: &'static str| -> Result<Vec<String>, VerifyError> {
            match map.get(name) {
                None => Ok(Vec::new()),
                Some(serde_json::Value::Array(a)) => a
                    .iter()
                    .map(|v| match v {
                        serde_json::Value::String(s) if !s.is_empty() => Ok(s.clone()),
                        _ => Err(invalid(name)),
                    })
                    .collect(),
                Some(_) => Err(invalid(name)),
            }
        };
        let required = |v: Option<String>, name: &'static str| {
            v.ok_or_else(|| VerifyError::new(ErrorKind::MissingClaim, format!("`{name}`")))
        };
        let aud = match map.get("aud") {
            None => return Err(VerifyError::new(ErrorKind::MissingClaim, "`aud`")),
            Some(v) => serde_json::from_value::<Audience>(v.clone()).map_err(|_| invalid("aud"))?,
        };
        let scopes = match map.get("scope") {
            None => words("scp")?,
            Some(serde_json::Value::String(s)) => s
                .split(' ')
                .filter(|w| !w.is_empty())
                .map(str::to_owned)
                .collect(),
            Some(_) => return Err(invalid("scope")),
        };
        let amr = words("amr")?;
        Ok(ExternalClaims {
            iss: required(string("iss")?, "iss")?,
            sub: required(string("sub")?, "sub")?,
            aud,
            exp: time("exp")?.ok_or_else(|| VerifyError::new(ErrorKind::MissingClaim, "`exp`"))?,
            iat: time("iat")?,
            nbf: time("nbf")?,
            jti: string("jti")?,
            client_id: match string("client_id")? {
                Some(c) => Some(c),
                None => string("azp")?,
            },
            scopes,
            auth_time: time("auth_time")?,
            acr: string("acr")?,
            amr,
        })
    }
}

impl fmt::Debug for ExternalClaims {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExternalClaims")
            .field("iss", &self.iss)
            .field("sub", &self.sub)
            .field("aud", &self.aud)
            .field("exp", &self.exp)
            .field("client_id", &self.client_id)
            .field("scopes", &self.scopes)
            .finish_non_exhaustive()
    }
}

fn invalid(name: &'static str) -> VerifyError {
    VerifyError::new(
        ErrorKind::InvalidClaim,
        format!("`{name}` has the wrong type"),
    )
}

/// The default accepted `typ` values: RFC 9068's `at+jwt` and the generic `JWT`.
pub const DEFAULT_TYPS: [&str; 2] = ["at+jwt", "JWT"];

/// The default lifetime bound of an external token: 24 hours.
pub const DEFAULT_MAX_LIFETIME: u64 = 24 * 3600;

/// Verifies one identity provider's tokens; see the [module docs](self).
#[derive(Clone)]
pub struct IdpVerifier {
    source: Arc<KeySource>,
    issuer: String,
    audience: String,
    typs: Vec<String>,
    allow_missing_typ: bool,
    skew: u64,
    max_lifetime: u64,
    max_size: usize,
    clock: Arc<dyn Clock>,
}

impl fmt::Debug for IdpVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IdpVerifier")
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("typs", &self.typs)
            .finish_non_exhaustive()
    }
}

impl IdpVerifier {
    /// A verifier of `issuer`'s tokens for `audience`, with its keys from `source`: `typ`
    /// `at+jwt` or `JWT`, 60 s skew, at most 24 h of lifetime, 8 KiB, the system clock.
    pub fn new(
        source: Arc<KeySource>,
        issuer: impl Into<String>,
        audience: impl Into<String>,
    ) -> IdpVerifier {
        IdpVerifier {
            source,
            issuer: issuer.into(),
            audience: audience.into(),
            typs: DEFAULT_TYPS.iter().map(|t| (*t).to_owned()).collect(),
            allow_missing_typ: false,
            skew: 60,
            max_lifetime: DEFAULT_MAX_LIFETIME,
            max_size: jws::DEFAULT_MAX_SIZE,
            clock: Arc::new(SystemClock),
        }
    }

    /// Accept exactly these `typ` values (compared case-insensitively, with or without
    /// `application/`). `txntoken+jwt` is never accepted, even when listed.
    pub fn typs(mut self, typs: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.typs = typs.into_iter().map(Into::into).collect();
        self
    }

    /// Accept a token without `typ` (many OpenID Connect ID tokens carry none).
    pub fn allow_missing_typ(mut self) -> Self {
        self.allow_missing_typ = true;
        self
    }

    /// Clock skew tolerated on `exp`, `nbf` and `iat`, in seconds.
    pub fn skew(mut self, secs: u64) -> Self {
        self.skew = secs;
        self
    }

    /// The longest lifetime accepted, in seconds.
    pub fn max_lifetime(mut self, secs: u64) -> Self {
        self.max_lifetime = secs;
        self
    }

    /// The size limit on a token, in bytes.
    pub fn max_size(mut self, bytes: usize) -> Self {
        self.max_size = bytes;
        self
    }

    /// The clock ("now").
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// The issuer whose tokens this verifies.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The audience required.
    pub fn audience(&self) -> &str {
        &self.audience
    }

    /// The key source.
    pub fn source(&self) -> &Arc<KeySource> {
        &self.source
    }

    /// Verify a token against the current keys, without waiting for a refresh; an unknown
    /// `kid` starts the source's single-flight refresh in the background (see
    /// [`Verifier::verify`](crate::Verifier::verify)).
    pub fn verify(&self, token: &str) -> Result<Verified<ExternalClaims>, VerifyError> {
        self.source.verify_or_kick(|| self.verify_now(token))
    }

    /// Verify a token; on an unknown `kid` of a refreshing source, wait for the source's
    /// single-flight, rate-limited refresh and verify once more.
    pub async fn verify_async(&self, token: &str) -> Result<Verified<ExternalClaims>, VerifyError> {
        self.source
            .verify_or_refresh(|| self.verify_now(token))
            .await
    }

    fn verify_now(&self, token: &str) -> Result<Verified<ExternalClaims>, VerifyError> {
        jws::with_scratch(|buf| self.verify_in(token, buf))
    }

    fn verify_in(
        &self,
        token: &str,
        buf: &mut Vec<u8>,
    ) -> Result<Verified<ExternalClaims>, VerifyError> {
        let parts = jws::parse_into(token, self.max_size, buf)?;
        let kid = parts.header.kid.as_deref().ok_or_else(|| {
            VerifyError::new(ErrorKind::UnknownKid, "the token header has no kid")
        })?;
        let keys = self.source.current()?;
        let key = keys.get(Some(kid))?;
        jws::check_signature(&parts, key)?;
        self.check_typ(parts.header.typ.as_deref())?;
        let claims = ExternalClaims::from_json(parts.payload)?;
        self.check_claims(&claims)?;
        Ok(Verified::new(
            claims,
            Some(kid.to_owned()),
            parts.header.alg,
        ))
    }

    fn check_typ(&self, typ: Option<&str>) -> Result<(), VerifyError> {
        let ok = match typ {
            None => self.allow_missing_typ,
            Some(t) if media_type_eq(t, TXN_TOKEN_TYP) => false,
            Some(t) => self.typs.iter().any(|want| media_type_eq(t, want)),
        };
        if ok {
            Ok(())
        } else {
            Err(VerifyError::new(
                ErrorKind::WrongTyp,
                "not a typ accepted for an external token",
            ))
        }
    }

    fn check_claims(&self, c: &ExternalClaims) -> Result<(), VerifyError> {
        if c.iss != self.issuer {
            return Err(VerifyError::new(
                ErrorKind::WrongIss,
                format!("expected issuer {:?}", self.issuer),
            ));
        }
        if !c.aud.contains(&self.audience) {
            return Err(VerifyError::new(
                ErrorKind::WrongAud,
                format!("expected audience {:?}", self.audience),
            ));
        }
        let now = self.clock.now_unix();
        if now >= c.exp.saturating_add(self.skew) {
            return Err(VerifyError::new(
                ErrorKind::Expired,
                format!("expired at {}, now {now}", c.exp),
            ));
        }
        if let Some(iat) = c.iat {
            if c.exp <= iat {
                return Err(VerifyError::new(
                    ErrorKind::InvalidClaim,
                    "`exp` is not after `iat`",
                ));
            }
            if iat > now.saturating_add(self.skew) {
                return Err(VerifyError::new(
                    ErrorKind::NotYetValid,
                    format!("issued at {iat}, now {now}"),
                ));
            }
        }
        if let Some(nbf) = c.nbf
            && nbf > now.saturating_add(self.skew)
        {
            return Err(VerifyError::new(
                ErrorKind::NotYetValid,
                format!("valid from {nbf}, now {now}"),
            ));
        }
        let lifetime = c.exp - c.iat.unwrap_or(now).min(c.exp);
        if lifetime > self.max_lifetime {
            return Err(VerifyError::new(
                ErrorKind::InvalidClaim,
                format!(
                    "a lifetime of {lifetime} s, the limit is {} s",
                    self.max_lifetime
                ),
            ));
        }
        Ok(())
    }
}

/// Several identity providers, chosen by the token's `iss` (read from the payload once,
/// before any key is used; an issuer not configured is refused with `wrong_iss`).
#[derive(Clone, Debug, Default)]
pub struct IdpVerifiers {
    by_issuer: Vec<Arc<IdpVerifier>>,
}

impl IdpVerifiers {
    /// No issuer yet.
    pub fn new() -> IdpVerifiers {
        IdpVerifiers::default()
    }

    /// Add an issuer (a later verifier for the same issuer replaces the earlier one).
    pub fn issuer(mut self, verifier: IdpVerifier) -> IdpVerifiers {
        self.by_issuer.retain(|v| v.issuer != verifier.issuer);
        self.by_issuer.push(Arc::new(verifier));
        self
    }

    /// The verifier of `iss`.
    pub fn get(&self, iss: &str) -> Option<&Arc<IdpVerifier>> {
        self.by_issuer.iter().find(|v| v.issuer == iss)
    }

    /// The configured issuers.
    pub fn issuers(&self) -> impl Iterator<Item = &str> {
        self.by_issuer.iter().map(|v| v.issuer.as_str())
    }

    /// Whether no issuer is configured.
    pub fn is_empty(&self) -> bool {
        self.by_issuer.is_empty()
    }

    /// The verifier for this token's issuer, or `wrong_iss`.
    pub fn choose(&self, token: &str) -> Result<&Arc<IdpVerifier>, VerifyError> {
        let max = self
            .by_issuer
            .iter()
            .map(|v| v.max_size)
            .max()
            .unwrap_or(jws::DEFAULT_MAX_SIZE);
        let mut buf = Vec::new();
        let parts = jws::parse_into(token, max, &mut buf)?;
        #[derive(serde::Deserialize)]
        struct Iss {
            iss: Option<String>,
        }
        let iss = serde_json::from_slice::<Iss>(parts.payload)
            .ok()
            .and_then(|i| i.iss)
            .ok_or_else(|| VerifyError::new(ErrorKind::MissingClaim, "`iss`"))?;
        self.get(&iss).ok_or_else(|| {
            VerifyError::new(ErrorKind::WrongIss, "an issuer this service does not trust")
        })
    }

    /// Verify with the token's issuer's verifier ([`IdpVerifier::verify_async`]).
    pub async fn verify_async(&self, token: &str) -> Result<Verified<ExternalClaims>, VerifyError> {
        self.choose(token)?.verify_async(token).await
    }
}
