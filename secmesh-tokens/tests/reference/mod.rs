//! The token parser as it was before issue 13 ("parse at the floor"), kept verbatim as the
//! reference the new one-pass parser is compared with: the `parse_equiv` property test, the
//! `parse_equiv` fuzz target and the `parse/reference` bench row include this folder with
//! `#[path]`.
//!
//! It is the old two-pass design: a strict JSON check ([`json::check_object`]) and then a
//! serde_json decode of the same bytes; the JWS header the same way. It uses only public
//! items of secmesh-core and secmesh-tokens (and their serde implementations of `Actor`,
//! `Confirmation`, `Audience`, `TxnId`, `ExpiryClass`, which the new parser does not use).
#![allow(dead_code, unreachable_pub, missing_docs, clippy::all)]

pub mod claims;
pub mod json;
pub mod jws;

use secmesh_core::claims::{Claims, ClaimsError};
use secmesh_tokens::{ErrorKind, Verifier, VerifyError};

/// The old `Verifier::verify`, step by step, with the verifier's public checks.
pub fn verify(
    verifier: &Verifier,
    token: &str,
    typ: &str,
    max_size: usize,
) -> Result<Claims, VerifyError> {
    let parts = jws::parse(token, max_size)?;
    let kid =
        parts.header.kid.as_deref().ok_or_else(|| {
            VerifyError::new(ErrorKind::UnknownKid, "the token header has no kid")
        })?;
    let keys = verifier.keys();
    let key = keys.get(Some(kid))?;
    if key.alg() != parts.header.alg {
        return Err(VerifyError::new(ErrorKind::AlgMismatch, "alg mismatch"));
    }
    key.verify(parts.signing_input, &parts.signature)?;
    if !typ_matches(parts.header.typ.as_deref(), typ) {
        return Err(VerifyError::new(ErrorKind::WrongTyp, "typ"));
    }
    let claims = claims_to_verify_error(claims::from_json(&parts.payload))?;
    verifier.check_claims(&claims)?;
    verifier.check_revocation(&claims, Some(kid))?;
    Ok(claims)
}

/// The verifier's mapping of a claims error to a kind.
pub fn claims_to_verify_error(r: Result<Claims, ClaimsError>) -> Result<Claims, VerifyError> {
    r.map_err(|e| match e {
        ClaimsError::Missing(name) => {
            VerifyError::new(ErrorKind::MissingClaim, format!("`{name}`"))
        }
        ClaimsError::Json(e) => VerifyError::new(ErrorKind::Malformed, format!("payload: {e}")),
        other => VerifyError::new(ErrorKind::InvalidClaim, other.to_string()),
    })
}

fn typ_matches(got: Option<&str>, want: &str) -> bool {
    fn strip(s: &str) -> &str {
        match s.get(..12) {
            Some(p) if p.eq_ignore_ascii_case("application/") => &s[12..],
            _ => s,
        }
    }
    got.is_some_and(|g| strip(g).eq_ignore_ascii_case(strip(want)))
}
