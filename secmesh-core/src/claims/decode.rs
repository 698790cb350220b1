//! The one-pass claims decoder: the strict [`Reader`] walks the payload once and every known
//! claim is decoded straight into its type as it is met (the scope into typed grants, once);
//! unknown claims become `serde_json` values as they are read.
//!
//! It refuses exactly what the former two-pass decoder (strict check, then serde) refused,
//! with the same [`ClaimsError`] variants, in the same order of precedence:
//! 1. not strict JSON ([`ClaimsError::Json`]), anywhere in the payload;
//! 2. the first claim, in document order, whose value has the wrong shape
//!    ([`ClaimsError::Invalid`]; the rest of the payload is still checked for 1);
//! 3. `iss`, `sub` missing, `sub` not a subject, `aud`, `iat`, `exp`, `jti`, `cls` missing,
//!    `scope` not in the grant grammar;
//! 4. the identifier grammar ([`Claims::check_identifiers`]).
//!
//! The former decoder lives on in `secmesh-tokens/tests/reference` and the `parse_equiv`
//! property test and fuzz target compare the two on generated and arbitrary input.

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde_json::Value;

use super::{Actor, Audience, Claims, ClaimsError, Confirmation, JsonMap, Scope, ScopeError};
use crate::class::ExpiryClass;
use crate::json::{self, JsonError, Reader, SeenKeys};
use crate::svo::Subject;
use crate::trace::TxnId;

/// Why a value was not decoded: the bytes are not strict JSON (final), or the value has the
/// wrong shape for its claim (the payload is then still checked to the end).
enum Fail {
    Hard(JsonError),
    Soft(String),
}

impl From<JsonError> for Fail {
    fn from(e: JsonError) -> Self {
        Fail::Hard(e)
    }
}

fn soft<T>(what: &str) -> Result<T, Fail> {
    Err(Fail::Soft(what.to_owned()))
}

/// The known claims, by bit.
const NAMES: [&str; 15] = [
    "iss", "sub", "aud", "iat", "exp", "nbf", "jti", "txn", "cls", "scope", "req_wl", "act", "cnf",
    "tctx", "rctx",
];

fn claim_index(key: &str) -> Option<usize> {
    Some(match key {
        "iss" => 0,
        "sub" => 1,
        "aud" => 2,
        "iat" => 3,
        "exp" => 4,
        "nbf" => 5,
        "jti" => 6,
        "txn" => 7,
        "cls" => 8,
        "scope" => 9,
        "req_wl" => 10,
        "act" => 11,
        "cnf" => 12,
        "tctx" => 13,
        "rctx" => 14,
        _ => return None,
    })
}

#[derive(Default)]
struct Raw {
    iss: Option<String>,
    sub: Option<String>,
    aud: Option<Audience>,
    iat: Option<u64>,
    exp: Option<u64>,
    nbf: Option<u64>,
    jti: Option<String>,
    txn: Option<TxnId>,
    cls: Option<ExpiryClass>,
    scope: Option<Result<Scope, ScopeError>>,
    req_wl: Option<String>,
    act: Option<Actor>,
    cnf: Option<Confirmation>,
    tctx: Option<JsonMap>,
    rctx: Option<JsonMap>,
    extra: BTreeMap<String, Value>,
}

/// Decode claims from the bytes of a JWT payload, strictly, in one pass.
pub(super) fn from_json(bytes: &[u8]) -> Result<Claims, ClaimsError> {
    let mut r = Reader::new(bytes, json::DEFAULT_MAX_DEPTH)?;
    r.begin_top_object()?;
    let mut known: u16 = 0;
    let mut unknown = SeenKeys::new();
    let mut raw = Raw::default();
    let mut invalid: Option<String> = None;
    let mut first = true;
    while let Some(key) = r.key(first)? {
        first = false;
        let index = claim_index(&key);
        match index {
            Some(i) => {
                if known & (1 << i) != 0 {
                    return Err(json::duplicate(&key).into());
                }
                known |= 1 << i;
            }
            None => unknown.insert(key.clone())?,
        }
        r.colon()?;
        if invalid.is_some() {
            r.skip_value(1)?;
            continue;
        }
        let start = r.position();
        match member(&mut r, &mut raw, index, key) {
            Ok(()) => {}
            Err(Fail::Hard(e)) => return Err(e.into()),
            Err(Fail::Soft(why)) => {
                // Check the rest of this value (and of the payload) as the checker would.
                r.rewind(start);
                r.skip_value(1)?;
                let name = index.map_or("", |i| NAMES[i]);
                invalid = Some(if name.is_empty() {
                    why
                } else {
                    format!("invalid claim `{name}`: {why}")
                });
            }
        }
    }
    r.end_top()?;
    if let Some(why) = invalid {
        return Err(ClaimsError::Invalid(why));
    }
    let claims = raw.into_claims()?;
    claims.check_identifiers()?;
    Ok(claims)
}

impl Raw {
    fn into_claims(self) -> Result<Claims, ClaimsError> {
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
            scope: self.scope.transpose().map_err(ClaimsError::Scope)?,
            req_wl: self.req_wl,
            act: self.act,
            cnf: self.cnf,
            tctx: self.tctx,
            rctx: self.rctx,
            extra: self.extra,
        })
    }
}

/// Decode one member's value into `raw`.
fn member<'a>(
    r: &mut Reader<'a>,
    raw: &mut Raw,
    index: Option<usize>,
    key: Cow<'a, str>,
) -> Result<(), Fail> {
    match index {
        Some(0) => raw.iss = Some(string(r)?.into_owned()),
        Some(1) => raw.sub = Some(string(r)?.into_owned()),
        Some(2) => raw.aud = Some(audience(r)?),
        Some(3) => raw.iat = Some(uint(r)?),
        Some(4) => raw.exp = Some(uint(r)?),
        Some(5) => raw.nbf = Some(uint(r)?),
        Some(6) => raw.jti = Some(string(r)?.into_owned()),
        Some(7) => match string(r)?.parse::<TxnId>() {
            Ok(t) => raw.txn = Some(t),
            Err(e) => return soft(&e.to_string()),
        },
        Some(8) => raw.cls = Some(class(r)?),
        // The scope is parsed into its typed grants here, once; a refusal is reported after
        // the required claims (as it always was).
        Some(9) => raw.scope = Some(Scope::new(string(r)?.into_owned())),
        Some(10) => raw.req_wl = Some(string(r)?.into_owned()),
        Some(11) => raw.act = Some(actor(r, 1)?),
        Some(12) => raw.cnf = Some(confirmation(r)?),
        Some(13) => raw.tctx = Some(object(r, 1)?),
        Some(14) => raw.rctx = Some(object(r, 1)?),
        _ => {
            let v = value(r, 1)?;
            raw.extra.insert(key.into_owned(), v);
        }
    }
    Ok(())
}

/// A string value.
fn string<'a>(r: &mut Reader<'a>) -> Result<Cow<'a, str>, Fail> {
    if r.peek() == Some(b'"') {
        Ok(r.string()?)
    } else {
        soft("invalid type, expected a string")
    }
}

/// A NumericDate: an integer from 0 to u64::MAX, written without fraction or exponent.
fn uint(r: &mut Reader<'_>) -> Result<u64, Fail> {
    if !matches!(r.peek(), Some(b'-' | b'0'..=b'9')) {
        return soft("invalid type, expected an integer");
    }
    let text = r.number()?;
    // One pass: digits only (no sign, fraction or exponent), accumulated with overflow checks.
    let mut v: u64 = 0;
    let mut overflow = false;
    for b in text.bytes() {
        if !b.is_ascii_digit() {
            return soft("expected a non-negative integer");
        }
        match v
            .checked_mul(10)
            .and_then(|v| v.checked_add(u64::from(b - b'0')))
        {
            Some(n) => v = n,
            None => overflow = true,
        }
    }
    if overflow {
        return soft("integer out of range");
    }
    Ok(v)
}

/// `aud`: a string or a non-empty array of strings.
fn audience(r: &mut Reader<'_>) -> Result<Audience, Fail> {
    match r.peek() {
        Some(b'"') => Ok(Audience::One(r.string()?.into_owned())),
        Some(b'[') => {
            r.begin_array(2)?;
            let mut v = Vec::new();
            let mut first = true;
            while r.element(first)? {
                first = false;
                v.push(string(r)?.into_owned());
            }
            if v.is_empty() {
                return soft("`aud` is an empty array");
            }
            Ok(Audience::Many(v))
        }
        _ => soft("expected a string or a non-empty array of strings"),
    }
}

/// `cls`: a variant name, or (as serde reads an enum) `{"<name>": null}`.
fn class(r: &mut Reader<'_>) -> Result<ExpiryClass, Fail> {
    fn name(s: &str) -> Result<ExpiryClass, Fail> {
        s.parse().or_else(|_| soft("unknown variant"))
    }
    match r.peek() {
        Some(b'"') => name(&r.string()?),
        Some(b'{') => {
            r.begin_object(2)?;
            let Some(key) = r.key(true)? else {
                return soft("expected a variant");
            };
            let class = name(&key)?;
            r.colon()?;
            if r.peek() != Some(b'n') {
                return soft("expected unit");
            }
            r.literal(b"null")?;
            if r.key(false)?.is_some() {
                return soft("expected one variant");
            }
            Ok(class)
        }
        _ => soft("expected a class name"),
    }
}

/// `null` or an actor (for `act.act`).
fn optional_actor(r: &mut Reader<'_>, depth: usize) -> Result<Option<Box<Actor>>, Fail> {
    if r.peek() == Some(b'n') {
        r.literal(b"null")?;
        return Ok(None);
    }
    actor(r, depth).map(|a| Some(Box::new(a)))
}

/// An actor, as serde reads the struct: `{"sub": .., "act": ..}` (other members ignored) or
/// `[sub, act?]`.
fn actor(r: &mut Reader<'_>, depth: usize) -> Result<Actor, Fail> {
    let inner = depth + 1;
    match r.peek() {
        Some(b'{') => {
            r.begin_object(inner)?;
            let mut keys = SeenKeys::new();
            let (mut sub, mut act) = (None, None);
            let mut first = true;
            while let Some(key) = r.key(first)? {
                first = false;
                let which = match &*key {
                    "sub" => 1,
                    "act" => 2,
                    _ => 0,
                };
                keys.insert(key)?;
                r.colon()?;
                match which {
                    1 => sub = Some(string(r)?.into_owned()),
                    2 => act = optional_actor(r, inner)?,
                    _ => r.skip_value(inner)?,
                }
            }
            match sub {
                Some(sub) => Ok(Actor { sub, act }),
                None => soft("missing field `sub`"),
            }
        }
        Some(b'[') => {
            r.begin_array(inner)?;
            if !r.element(true)? {
                return soft("invalid length 0");
            }
            let sub = string(r)?.into_owned();
            let mut act = None;
            if r.element(false)? {
                act = optional_actor(r, inner)?;
                if r.element(false)? {
                    return soft("trailing elements");
                }
            }
            Ok(Actor { sub, act })
        }
        _ => soft("expected an actor"),
    }
}

/// `cnf`: `{"x5t#S256": ..}` and nothing else, or `[x5t]`.
fn confirmation(r: &mut Reader<'_>) -> Result<Confirmation, Fail> {
    match r.peek() {
        Some(b'{') => {
            r.begin_object(2)?;
            let mut x5t = None;
            let mut first = true;
            while let Some(key) = r.key(first)? {
                first = false;
                if key != "x5t#S256" {
                    return soft("unknown field");
                }
                if x5t.is_some() {
                    return Err(json::duplicate(&key).into());
                }
                r.colon()?;
                x5t = Some(string(r)?.into_owned());
            }
            match x5t {
                Some(x5t_s256) => Ok(Confirmation { x5t_s256 }),
                None => soft("missing field `x5t#S256`"),
            }
        }
        Some(b'[') => {
            r.begin_array(2)?;
            if !r.element(true)? {
                return soft("invalid length 0");
            }
            let x5t_s256 = string(r)?.into_owned();
            if r.element(false)? {
                return soft("trailing elements");
            }
            Ok(Confirmation { x5t_s256 })
        }
        _ => soft("expected a confirmation"),
    }
}

/// A JSON object (`tctx`, `rctx`).
fn object(r: &mut Reader<'_>, depth: usize) -> Result<JsonMap, Fail> {
    if r.peek() != Some(b'{') {
        return soft("invalid type, expected a map");
    }
    match value(r, depth)? {
        Value::Object(m) => Ok(m),
        _ => soft("expected a map"),
    }
}

/// Any value inside a container at `depth`, as `serde_json` builds it.
fn value(r: &mut Reader<'_>, depth: usize) -> Result<Value, Fail> {
    Ok(match r.peek() {
        Some(b'{') => {
            let inner = depth + 1;
            r.begin_object(inner)?;
            let mut keys = SeenKeys::new();
            let mut map = JsonMap::new();
            let mut first = true;
            while let Some(key) = r.key(first)? {
                first = false;
                keys.insert(key.clone())?;
                r.colon()?;
                let v = value(r, inner)?;
                map.insert(key.into_owned(), v);
            }
            Value::Object(map)
        }
        Some(b'[') => {
            let inner = depth + 1;
            r.begin_array(inner)?;
            let mut v = Vec::new();
            let mut first = true;
            while r.element(first)? {
                first = false;
                v.push(value(r, inner)?);
            }
            Value::Array(v)
        }
        Some(b'"') => Value::String(r.string()?.into_owned()),
        Some(b't') => {
            r.literal(b"true")?;
            Value::Bool(true)
        }
        Some(b'f') => {
            r.literal(b"false")?;
            Value::Bool(false)
        }
        Some(b'n') => {
            r.literal(b"null")?;
            Value::Null
        }
        Some(b'-' | b'0'..=b'9') => number(r.number()?)?,
        _ => return Err(r.syntax().into()),
    })
}

/// A number as `serde_json` reads it (u64, i64, or f64 with exact rounding; `-0` is a
/// float), out-of-range floats refused.
fn number(text: &str) -> Result<Value, Fail> {
    if text.bytes().all(|b| b.is_ascii_digit())
        && let Ok(v) = text.parse::<u64>()
    {
        return Ok(Value::from(v));
    }
    // Negative integers, fractions, exponents and big integers: serde_json itself, on the
    // number's text alone, so that every edge case is its own.
    serde_json::from_str::<Value>(text).or_else(|e| soft(&e.to_string()))
}
