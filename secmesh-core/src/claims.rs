//! The claims of a secmesh transaction token (the JWT payload), typed.
//!
//! The wire format is the OAuth Transaction Tokens draft plus `cls`; see DESIGN.md. Required
//! claims are plain fields (`iss`, `sub`, `aud`, `iat`, `exp`, `jti`, `cls`); the rest are
//! `Option`s, and claims this crate does not know are kept in [`Claims::extra`] so that nothing
//! a peer sent is silently lost.
//!
//! Decoding is strict: [`Claims::from_json`] makes the [strict JSON checks](crate::json)
//! (no duplicate keys, bounded depth) in the same single pass that decodes; times are integer NumericDates, `aud` is a
//! string or a non-empty array of strings, `scope` is a list of `verb:object` grants, and a
//! `cnf` with a confirmation method other than `x5t#S256` is refused rather than ignored.
//!
//! # Example
//! ```
//! use secmesh_core::claims::{Claims, ClaimsError};
//! use secmesh_core::ExpiryClass;
//!
//! let json = br#"{"iss":"https://gw.mesh.test","sub":"user:alice","aud":"mesh.test",
//!   "iat":1700000000,"exp":1700000180,"jti":"j1","cls":"fast",
//!   "scope":"read:orders/* create:orders","txn":"4bf92f3577b34da6a3ce929d0e0e4736"}"#;
//! let claims = Claims::from_json(json)?;
//! assert_eq!(claims.cls, ExpiryClass::Fast);
//! assert_eq!(claims.lifetime(), 180);
//! assert!(claims.aud.contains("mesh.test"));
//! assert_eq!(claims.sub, "user:alice");
//! // The scope is parsed once, here, into the grants the authorizer checks.
//! let grants: Vec<_> = claims.grants().iter().map(|g| g.to_string()).collect();
//! assert_eq!(grants, ["read:orders/*", "create:orders"]);
//!
//! let missing = Claims::from_json(br#"{"iss":"x"}"#).unwrap_err();
//! assert!(matches!(missing, ClaimsError::Missing("sub")));
//! let bad = br#"{"iss":"i","sub":"u","aud":"a","iat":1,"exp":2,"jti":"j","cls":"fast",
//!   "scope":"read:a/**/b"}"#;
//! assert!(matches!(Claims::from_json(bad), Err(ClaimsError::Scope(_))));
//! # Ok::<(), ClaimsError>(())
//! ```

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::class::ExpiryClass;
use crate::json::JsonError;

mod decode;
use crate::policy::grant::{Grant as PolicyGrant, GrantError};
use crate::svo::{Subject, SvoError};
use crate::trace::TxnId;

/// A JSON object, as kept for `tctx`, `rctx` and unknown claims.
pub type JsonMap = serde_json::Map<String, serde_json::Value>;

/// Why a claims set was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClaimsError {
    /// The payload is not strict JSON.
    #[error("claims are not strict JSON: {0}")]
    Json(#[from] JsonError),
    /// A required claim is absent.
    #[error("missing claim `{0}`")]
    Missing(&'static str),
    /// A claim is present but malformed.
    #[error("{0}")]
    Invalid(String),
    /// `sub` is not a [`Subject`] (empty, too long, or a forbidden character).
    #[error("invalid claim `sub`: {0}")]
    Subject(SvoError),
    /// `scope` is not in the grant grammar the authorizer uses.
    #[error("invalid claim `scope`: {0}")]
    Scope(ScopeError),
}

/// The `aud` claim: one audience or several.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Audience {
    /// A single string.
    One(String),
    /// A non-empty array of strings.
    Many(Vec<String>),
}

impl Audience {
    /// Whether `aud` names `expected`.
    pub fn contains(&self, expected: &str) -> bool {
        match self {
            Audience::One(a) => a == expected,
            Audience::Many(v) => v.iter().any(|a| a == expected),
        }
    }

    /// The audiences, in order.
    pub fn iter(&self) -> impl Iterator<Item = &str> {
        let (one, many) = match self {
            Audience::One(a) => (Some(a.as_str()), &[][..]),
            Audience::Many(v) => (None, v.as_slice()),
        };
        one.into_iter().chain(many.iter().map(String::as_str))
    }
}

impl From<&str> for Audience {
    fn from(s: &str) -> Self {
        Audience::One(s.to_owned())
    }
}

impl Serialize for Audience {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Audience::One(a) => s.serialize_str(a),
            Audience::Many(v) => v.serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for Audience {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct AudVisitor;
        impl<'de> Visitor<'de> for AudVisitor {
            type Value = Audience;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string or a non-empty array of strings")
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<Audience, E> {
                Ok(Audience::One(v.to_owned()))
            }

            fn visit_string<E: de::Error>(self, v: String) -> Result<Audience, E> {
                Ok(Audience::One(v))
            }

            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Audience, A::Error> {
                let mut v = Vec::new();
                while let Some(a) = seq.next_element::<String>()? {
                    v.push(a);
                }
                if v.is_empty() {
                    return Err(de::Error::custom("`aud` is an empty array"));
                }
                Ok(Audience::Many(v))
            }
        }
        d.deserialize_any(AudVisitor)
    }
}

/// Why a `scope` was refused. The grammar is the authorizer's: grants separated by single
/// spaces, each a [`policy::Grant`](crate::policy::Grant).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ScopeError {
    /// The scope is the empty string (leave `scope` out instead).
    #[error("invalid scope: empty")]
    Empty,
    /// A leading, trailing or doubled space.
    #[error("invalid scope: grants are separated by single spaces")]
    Spacing,
    /// More than [`MAX_GRANTS`](crate::policy::grant::MAX_GRANTS) grants.
    #[error("invalid scope: more than {} grants", crate::policy::grant::MAX_GRANTS)]
    TooMany,
    /// One grant is not in the grant grammar.
    #[error("invalid scope: grant {index}: {error}")]
    Grant {
        /// The grant's position, from 1.
        index: usize,
        /// Why it was refused.
        error: GrantError,
    },
}

/// The `scope` claim: space-separated grants, each `verb:object-pattern`, parsed once.
///
/// A `Scope` keeps the string it was built from (the wire form, re-serialised byte for byte)
/// and the typed [`policy::Grant`](crate::policy::Grant)s the authorizer checks, so that no
/// request re-parses it. Equality and hashing are on the string.
#[derive(Clone)]
pub struct Scope {
    raw: String,
    grants: Vec<PolicyGrant>,
}

impl Scope {
    /// Parse a scope string: grants separated by single spaces, each in the one grant grammar
    /// the authorizer uses ([`policy::Grant`](crate::policy::Grant): `verb:object-pattern`,
    /// `**` only last), at most [`MAX_GRANTS`](crate::policy::grant::MAX_GRANTS) of them. A
    /// scope that mints is a scope that authorizes: there is no grant that is accepted here and
    /// refused on every request.
    pub fn new(s: impl Into<String>) -> Result<Scope, ScopeError> {
        let raw = s.into();
        if raw.is_empty() {
            return Err(ScopeError::Empty);
        }
        let spaces = raw.bytes().filter(|&b| b == b' ').count();
        let mut grants = Vec::with_capacity(spaces.min(crate::policy::grant::MAX_GRANTS - 1) + 1);
        for (i, g) in raw.split(' ').enumerate() {
            if i == crate::policy::grant::MAX_GRANTS {
                return Err(ScopeError::TooMany);
            }
            if g.is_empty() {
                return Err(ScopeError::Spacing);
            }
            grants.push(
                g.parse::<PolicyGrant>()
                    .map_err(|error| ScopeError::Grant {
                        index: i + 1,
                        error,
                    })?,
            );
        }
        Ok(Scope { raw, grants })
    }

    /// Build a scope from grants given as `(verb, object)` pairs. Each pair must be one grant:
    /// a space inside a verb or object (which would smuggle in a second grant) is refused.
    pub fn from_grants<'a>(
        grants: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<Scope, ScopeError> {
        let mut joined: Vec<String> = Vec::new();
        for (i, (v, o)) in grants.into_iter().enumerate() {
            let g = format!("{v}:{o}");
            g.parse::<PolicyGrant>()
                .map_err(|error| ScopeError::Grant {
                    index: i + 1,
                    error,
                })?;
            joined.push(g);
        }
        Scope::new(joined.join(" "))
    }

    /// The grants, typed, in order (never empty).
    pub fn grants(&self) -> &[PolicyGrant] {
        &self.grants
    }

    /// Whether every grant of `self` is also literally a grant of `wider` (renewal may narrow
    /// a scope, never widen it).
    pub fn is_subset_of(&self, wider: &Scope) -> bool {
        self.grants.iter().all(|g| wider.grants.contains(g))
    }

    /// Whether every grant of `self` is covered by a grant of `wider`: its verb pattern by
    /// the wider verb pattern and its object pattern by the wider object pattern
    /// (`read:orders/42` is within `read:orders/**`). Conservative: a `false` may be a missed
    /// inclusion (a `{sub}` template only covers the same template), a `true` is never wrong.
    /// A replacement token's scope must be within the original's.
    pub fn is_within(&self, wider: &Scope) -> bool {
        self.grants.iter().all(|g| {
            wider
                .grants
                .iter()
                .any(|w| w.verb().covers(g.verb()) && w.object().covers(g.object()))
        })
    }

    /// The wire string.
    pub fn as_str(&self) -> &str {
        &self.raw
    }
}

impl PartialEq for Scope {
    fn eq(&self, other: &Scope) -> bool {
        self.raw == other.raw
    }
}

impl Eq for Scope {}

impl std::hash::Hash for Scope {
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        self.raw.hash(h);
    }
}

impl fmt::Debug for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Scope({:?})", self.raw)
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.raw)
    }
}

impl std::str::FromStr for Scope {
    type Err = ScopeError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Scope::new(s)
    }
}

impl Serialize for Scope {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.raw)
    }
}

impl<'de> Deserialize<'de> for Scope {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Scope::new(String::deserialize(d)?).map_err(de::Error::custom)
    }
}

/// The `act` claim (RFC 8693): the current actor, with earlier actors nested inside.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor {
    /// The acting party, e.g. `spiffe://mesh.test/gateway`.
    pub sub: String,
    /// The actor before this one, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub act: Option<Box<Actor>>,
}

impl Actor {
    /// An actor with no history.
    pub fn new(sub: impl Into<String>) -> Actor {
        Actor {
            sub: sub.into(),
            act: None,
        }
    }

    /// The chain from the current actor back to the first.
    pub fn chain(&self) -> impl Iterator<Item = &Actor> {
        std::iter::successors(Some(self), |a| a.act.as_deref())
    }
}

/// The `cnf` claim: the token is bound to a client certificate (RFC 8705).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Confirmation {
    /// base64url SHA-256 thumbprint of the DER certificate (`x5t#S256`).
    #[serde(rename = "x5t#S256")]
    pub x5t_s256: String,
}

/// The claims of a secmesh token.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct Claims {
    /// Issuer.
    pub iss: String,
    /// Subject: the principal, e.g. `user:alice`, checked once at decode.
    pub sub: Subject,
    /// Audience: the trust domain or service.
    pub aud: Audience,
    /// Issued at (seconds since the epoch).
    pub iat: u64,
    /// Expiry (seconds since the epoch).
    pub exp: u64,
    /// Not before (seconds since the epoch).
    pub nbf: Option<u64>,
    /// Token id.
    pub jti: String,
    /// Transaction id.
    pub txn: Option<TxnId>,
    /// Expiry class.
    pub cls: ExpiryClass,
    /// Grants, parsed once at decode.
    pub scope: Option<Scope>,
    /// The workload that requested the token.
    pub req_wl: Option<String>,
    /// Actor chain.
    pub act: Option<Actor>,
    /// Certificate binding.
    pub cnf: Option<Confirmation>,
    /// Transaction context.
    pub tctx: Option<JsonMap>,
    /// Requester context.
    pub rctx: Option<JsonMap>,
    /// Every other claim, kept as sent.
    pub extra: BTreeMap<String, serde_json::Value>,
}

impl Claims {
    /// Claims with the required fields set and nothing else.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        iss: impl Into<String>,
        sub: Subject,
        aud: Audience,
        iat: u64,
        exp: u64,
        jti: impl Into<String>,
        cls: ExpiryClass,
    ) -> Claims {
        Claims {
            iss: iss.into(),
            sub,
            aud,
            iat,
            exp,
            nbf: None,
            jti: jti.into(),
            txn: None,
            cls,
            scope: None,
            req_wl: None,
            act: None,
            cnf: None,
            tctx: None,
            rctx: None,
            extra: BTreeMap::new(),
        }
    }

    /// Decode claims from the bytes of a JWT payload, strictly (see the module docs).
    ///
    /// One pass over the bytes: the strict checks of [`check_object`](crate::json::check_object) are made as the
    /// claims are decoded into their types (the scope into its grants), not before.
    pub fn from_json(bytes: &[u8]) -> Result<Claims, ClaimsError> {
        decode::from_json(bytes)
    }

    /// `exp - iat` in seconds (zero if `exp` is before `iat`).
    pub fn lifetime(&self) -> u64 {
        self.exp.saturating_sub(self.iat)
    }

    /// The typed grants of `scope` (empty when there is no scope).
    pub fn grants(&self) -> &[PolicyGrant] {
        self.scope.as_ref().map_or(&[], Scope::grants)
    }

    /// The current actor: the outermost `act.sub`.
    pub fn current_actor(&self) -> Option<&str> {
        self.act.as_ref().map(|a| a.sub.as_str())
    }

    /// Check every identifier that reaches the policy or the logs against the identifier
    /// grammar ([`check_identifier`](crate::svo::check_identifier): non-empty, bounded, no
    /// whitespace, control or bidirectional formatting characters): `iss`, each `aud`, `jti`,
    /// `req_wl` and every actor in `act` (`sub` is a [`Subject`], checked when it was made).
    /// Decoding ([`Claims::from_json`]) runs it, so a token with `"sub": ""` or
    /// `"iss": "alice\u0000"` does not verify (`invalid_claim`).
    pub fn check_identifiers(&self) -> Result<(), ClaimsError> {
        let check = |name: &str, v: &str| {
            crate::svo::check_identifier(v)
                .map_err(|e| ClaimsError::Invalid(format!("invalid claim `{name}`: {e}")))
        };
        check("iss", &self.iss)?;
        for a in self.aud.iter() {
            check("aud", a)?;
        }
        check("jti", &self.jti)?;
        if let Some(w) = &self.req_wl {
            check("req_wl", w)?;
        }
        let mut act = self.act.as_ref();
        let mut depth = 0;
        while let Some(a) = act {
            depth += 1;
            if depth > 32 {
                return Err(ClaimsError::Invalid(
                    "invalid claim `act`: more than 32 actors".into(),
                ));
            }
            check("act.sub", &a.sub)?;
            act = a.act.as_deref();
        }
        Ok(())
    }
}

#[derive(Default)]
struct RawClaims {
    iss: Option<String>,
    sub: Option<String>,
    aud: Option<Audience>,
    iat: Option<u64>,
    exp: Option<u64>,
    nbf: Option<u64>,
    jti: Option<String>,
    txn: Option<TxnId>,
    cls: Option<ExpiryClass>,
    scope: Option<String>,
    req_wl: Option<String>,
    act: Option<Actor>,
    cnf: Option<Confirmation>,
    tctx: Option<JsonMap>,
    rctx: Option<JsonMap>,
    extra: BTreeMap<String, serde_json::Value>,
}

impl RawClaims {
    fn into_claims(self) -> Result<Claims, ClaimsError> {
        let claims = self.into_claims_unchecked()?;
        claims.check_identifiers()?;
        Ok(claims)
    }

    fn into_claims_unchecked(self) -> Result<Claims, ClaimsError> {
        Ok(Claims {
            iss: self.iss.ok_or(ClaimsError::Missing("iss"))?,
            sub: Subject::new(self.sub.ok_or(ClaimsError::Missing("sub"))?)
                .map_err(ClaimsError::Subject)?,
            aud: self.aud.ok_or(ClaimsError::Missing("aud"))?,
            iat: self.iat.ok_or(ClaimsError::Missing("iat"))?,
            exp: self.exp.ok_or(ClaimsError::Missing("exp"))?,
            nbf: self.nbf,
            jti: self.jti.ok_or(ClaimsError::Missing("jti"))?,
            txn: self.txn,
            cls: self.cls.ok_or(ClaimsError::Missing("cls"))?,
            scope: self
                .scope
                .map(Scope::new)
                .transpose()
                .map_err(ClaimsError::Scope)?,
            req_wl: self.req_wl,
            act: self.act,
            cnf: self.cnf,
            tctx: self.tctx,
            rctx: self.rctx,
            extra: self.extra,
        })
    }
}

impl<'de> Deserialize<'de> for RawClaims {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(RawVisitor)
    }
}

struct RawVisitor;

fn claim<'de, T: Deserialize<'de>, A: MapAccess<'de>>(
    map: &mut A,
    name: &str,
) -> Result<Option<T>, A::Error> {
    map.next_value::<T>()
        .map(Some)
        .map_err(|e| de::Error::custom(format_args!("invalid claim `{name}`: {e}")))
}

impl<'de> Visitor<'de> for RawVisitor {
    type Value = RawClaims;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object of claims")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawClaims, A::Error> {
        let mut r = RawClaims::default();
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            match &*key {
                "iss" => r.iss = claim(&mut map, "iss")?,
                "sub" => r.sub = claim(&mut map, "sub")?,
                "aud" => r.aud = claim(&mut map, "aud")?,
                "iat" => r.iat = claim(&mut map, "iat")?,
                "exp" => r.exp = claim(&mut map, "exp")?,
                "nbf" => r.nbf = claim(&mut map, "nbf")?,
                "jti" => r.jti = claim(&mut map, "jti")?,
                "txn" => r.txn = claim(&mut map, "txn")?,
                "cls" => r.cls = claim(&mut map, "cls")?,
                "scope" => r.scope = claim(&mut map, "scope")?,
                "req_wl" => r.req_wl = claim(&mut map, "req_wl")?,
                "act" => r.act = claim(&mut map, "act")?,
                "cnf" => r.cnf = claim(&mut map, "cnf")?,
                "tctx" => r.tctx = claim(&mut map, "tctx")?,
                "rctx" => r.rctx = claim(&mut map, "rctx")?,
                other => {
                    let v: serde_json::Value = map.next_value()?;
                    r.extra.insert(other.to_owned(), v);
                }
            }
        }
        Ok(r)
    }
}

/// Decoding through serde (e.g. from another JWT library) checks the claims but not the
/// bytes: serde_json lets a duplicate key win silently. Use [`Claims::from_json`] on untrusted
/// bytes.
impl<'de> Deserialize<'de> for Claims {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        RawClaims::deserialize(d)?
            .into_claims()
            .map_err(de::Error::custom)
    }
}

impl Serialize for Claims {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("iss", &self.iss)?;
        m.serialize_entry("sub", &self.sub)?;
        m.serialize_entry("aud", &self.aud)?;
        m.serialize_entry("iat", &self.iat)?;
        m.serialize_entry("exp", &self.exp)?;
        if let Some(nbf) = self.nbf {
            m.serialize_entry("nbf", &nbf)?;
        }
        m.serialize_entry("jti", &self.jti)?;
        if let Some(txn) = &self.txn {
            m.serialize_entry("txn", txn)?;
        }
        m.serialize_entry("cls", &self.cls)?;
        if let Some(v) = &self.scope {
            m.serialize_entry("scope", v)?;
        }
        if let Some(v) = &self.req_wl {
            m.serialize_entry("req_wl", v)?;
        }
        if let Some(v) = &self.act {
            m.serialize_entry("act", v)?;
        }
        if let Some(v) = &self.cnf {
            m.serialize_entry("cnf", v)?;
        }
        if let Some(v) = &self.tctx {
            m.serialize_entry("tctx", v)?;
        }
        if let Some(v) = &self.rctx {
            m.serialize_entry("rctx", v)?;
        }
        for (k, v) in &self.extra {
            m.serialize_entry(k, v)?;
        }
        m.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str =
        r#""iss":"i","sub":"user:a","aud":"mesh.test","iat":10,"exp":190,"jti":"j","cls":"fast""#;

    fn parse(extra: &str) -> Result<Claims, ClaimsError> {
        Claims::from_json(format!("{{{BASE}{extra}}}").as_bytes())
    }

    #[test]
    fn round_trips_every_claim() {
        let c = parse(
            r#","nbf":10,"txn":"4bf92f3577b34da6a3ce929d0e0e4736","scope":"read:a/*","req_wl":"spiffe://mesh.test/gw","act":{"sub":"svc:b","act":{"sub":"svc:a"}},"cnf":{"x5t#S256":"abc"},"tctx":{"k":1},"rctx":{"ip":"1.2.3.4"},"custom":[1,2]"#,
        )
        .unwrap();
        assert_eq!(c.current_actor(), Some("svc:b"));
        assert_eq!(c.act.as_ref().unwrap().chain().count(), 2);
        assert_eq!(c.extra["custom"], serde_json::json!([1, 2]));
        let again = Claims::from_json(&serde_json::to_vec(&c).unwrap()).unwrap();
        assert_eq!(again, c);
    }

    #[test]
    fn names_the_missing_claim() {
        for name in ["iss", "sub", "aud", "iat", "exp", "jti", "cls"] {
            let v: serde_json::Value = serde_json::from_str(&format!("{{{BASE}}}")).unwrap();
            let mut m = v.as_object().unwrap().clone();
            m.remove(name);
            let err = Claims::from_json(&serde_json::to_vec(&m).unwrap()).unwrap_err();
            assert!(
                matches!(err, ClaimsError::Missing(n) if n == name),
                "{name}: {err}"
            );
        }
    }

    #[test]
    fn rejects_malformed_claims() {
        for (extra, what) in [
            (r#","exp":1.5"#, "duplicate"),
            (r#","nbf":-1"#, "nbf"),
            (r#","nbf":1.5"#, "nbf"),
            (r#","txn":"XYZ""#, "txn"),
            (r#","scope":"read""#, "scope"),
            (r#","scope":"read:a  write:b""#, "scope"),
            (r#","cnf":{"jkt":"x"}"#, "cnf"),
            (r#","act":{"iss":"x"}"#, "act"),
        ] {
            let err = parse(extra).unwrap_err();
            assert!(err.to_string().contains(what), "{extra}: {err}");
        }
        assert!(
            Claims::from_json(
                br#"{"iss":"i","sub":"s","aud":[],"iat":1,"exp":2,"jti":"j","cls":"fast"}"#
            )
            .is_err()
        );
        assert!(
            Claims::from_json(
                br#"{"iss":"i","sub":"s","aud":"a","iat":1,"exp":2,"jti":"j","cls":"quick"}"#
            )
            .is_err()
        );
    }

    #[test]
    fn unknown_claims_round_trip_exactly() {
        // Found by the `claims` fuzz target: without exact float parsing a long mantissa came
        // back as a different number after one encode/decode, so a renewed token would not
        // carry the claim it was given.
        let c = parse(r#","x":2666666666666666666666666666666666666666666666666666666666666666666666666666666666"#)
            .unwrap();
        let again = Claims::from_json(&serde_json::to_vec(&c).unwrap()).unwrap();
        assert_eq!(again, c);
    }

    #[test]
    fn audiences_one_or_many() {
        let c = Claims::from_json(
            br#"{"iss":"i","sub":"s","aud":["a","b"],"iat":1,"exp":2,"jti":"j","cls":"slow"}"#,
        )
        .unwrap();
        assert!(c.aud.contains("b") && !c.aud.contains("c"));
        assert_eq!(c.aud.iter().collect::<Vec<_>>(), ["a", "b"]);
    }

    #[test]
    fn scope_subset() {
        let wide = Scope::new("read:a/* write:a/1").unwrap();
        assert!(Scope::new("read:a/*").unwrap().is_subset_of(&wide));
        assert!(
            !Scope::new("read:a/* delete:a/1")
                .unwrap()
                .is_subset_of(&wide)
        );
        assert_eq!(
            Scope::from_grants([("read", "x"), ("*", "y/**")])
                .unwrap()
                .as_str(),
            "read:x *:y/**"
        );
    }

    /// One grant grammar: what mints is what authorizes.
    #[test]
    fn scope_uses_the_authorizer_grammar() {
        for bad in [
            "read:a/**/b",
            "read:a//b",
            "read:",
            ":a",
            "read",
            "read:a  write:b",
            " read:a",
            "read:a ",
            "re ad:a",
        ] {
            assert!(Scope::new(bad).is_err(), "{bad:?}");
            assert!(
                crate::policy::parse_scope(bad).is_err()
                    || bad.contains("  ")
                    || bad.starts_with(' ')
                    || bad.ends_with(' '),
                "{bad:?}"
            );
        }
        let many = vec!["read:a"; 257].join(" ");
        assert!(Scope::new(many).is_err());
        // One pair is one grant: a space cannot smuggle in another.
        assert!(matches!(
            Scope::from_grants([("read", "a"), ("read", "b *:**")]),
            Err(ScopeError::Grant { index: 2, .. })
        ));
        for good in [
            "read:a/**",
            "*:orders/{sub}/**",
            "call:inventory.v1.Inventory/Reserve",
        ] {
            assert!(Scope::new(good).is_ok(), "{good}");
            assert!(crate::policy::parse_scope(good).is_ok(), "{good}");
        }
    }
}
