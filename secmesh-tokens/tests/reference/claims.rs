//! The old `Claims::from_json` (secmesh-core before issue 13): the strict check, then a serde
//! decode of the same bytes into raw claims, then the required claims, the subject, the scope
//! and the identifier grammar, in that order.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;

use secmesh_core::claims::{Actor, Audience, Claims, ClaimsError, Confirmation, JsonMap, Scope};
use secmesh_core::{ExpiryClass, Subject, TxnId};
use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};

use super::json;

/// Decode claims from the bytes of a JWT payload, strictly.
pub fn from_json(bytes: &[u8]) -> Result<Claims, ClaimsError> {
    json::check_object(bytes, json::DEFAULT_MAX_DEPTH)?;
    let raw: RawClaims =
        serde_json::from_slice(bytes).map_err(|e| ClaimsError::Invalid(strip_pos(e)))?;
    raw.into_claims()
}

fn strip_pos(e: serde_json::Error) -> String {
    let s = e.to_string();
    match s.rfind(" at line ") {
        Some(i) => s[..i].to_owned(),
        None => s,
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
        let iss = self.iss.ok_or(ClaimsError::Missing("iss"))?;
        let sub = Subject::new(self.sub.ok_or(ClaimsError::Missing("sub"))?)
            .map_err(ClaimsError::Subject)?;
        let aud = self.aud.ok_or(ClaimsError::Missing("aud"))?;
        let iat = self.iat.ok_or(ClaimsError::Missing("iat"))?;
        let exp = self.exp.ok_or(ClaimsError::Missing("exp"))?;
        let jti = self.jti.ok_or(ClaimsError::Missing("jti"))?;
        let cls = self.cls.ok_or(ClaimsError::Missing("cls"))?;
        let scope = self
            .scope
            .map(Scope::new)
            .transpose()
            .map_err(ClaimsError::Scope)?;
        let mut c = Claims::new(iss, sub, aud, iat, exp, jti, cls);
        c.nbf = self.nbf;
        c.txn = self.txn;
        c.scope = scope;
        c.req_wl = self.req_wl;
        c.act = self.act;
        c.cnf = self.cnf;
        c.tctx = self.tctx;
        c.rctx = self.rctx;
        c.extra = self.extra;
        Ok(c)
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
        while let Some(key) = map.next_key::<Cow<'de, str>>()? {
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
