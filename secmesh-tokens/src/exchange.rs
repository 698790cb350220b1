//! Replacement txn-tokens: the rules a Txn-Token Service applies when the subject token of a
//! [`TxnTokenRequest`] is itself a txn-token (draft-ietf-oauth-transaction-tokens, "Txn-Token
//! as a subject_token"), as one pure function from the verified original to the
//! [`MintRequest`] of its replacement.
//!
//! - `txn`, `sub` and `aud` are kept: the request must name the original's trust domain
//!   (`invalid_target` otherwise), and an original without `txn` is refused (`invalid_grant`);
//! - scope only narrows: every requested grant must be covered by a grant of the original
//!   ([`Scope::is_within`](secmesh_core::claims::Scope::is_within)), and an
//!   original whose scope is unknown is refused, never treated as unconstrained
//!   (`invalid_scope`);
//! - the class is never slower than the original's (`invalid_scope`);
//! - the call chain is kept: `req_wl` becomes the workload asking now, and the workloads that
//!   requested the earlier tokens are kept, oldest first, in the `req_wl_chain` member of
//!   `rctx` (the draft leaves the mechanism to the service; `rctx` is the service's to assert).
//!   The chain is bounded at [`MAX_REPLACEMENTS`], which bounds how often a token is replaced;
//! - `tctx`, `act` and the rest of `rctx` are carried; a certificate binding (`cnf`) is not:
//!   the service binds the replacement to the workload that asked for it, if it binds at all.
//!
//! The original must come from a [`Verifier`](crate::Verifier) (the [`Verified`] proof): an
//! expired or forged token never reaches these rules.
//!
//! # Example
//! ```
//! use secmesh_core::exchange::{ErrorCode, SubjectToken, SubjectTokenType, TxnTokenRequest};
//! use secmesh_core::claims::Scope;
//! use secmesh_core::ExpiryClass;
//! use secmesh_tokens::exchange::replacement;
//! use secmesh_tokens::{Algorithm, Issuer, KeySet, MintRequest, SigningKey, Verifier};
//!
//! let key = SigningKey::generate(Algorithm::EdDsa)?;
//! let keys = KeySet::single(key.verifying_key(Some("k1".into())));
//! let issuer = Issuer::new(key, "k1", "https://sts.mesh.test").audience("mesh.test");
//! let original = issuer.mint(
//!     &MintRequest::new("user:alice", ExpiryClass::Medium)
//!         .grant("read", "orders/**")
//!         .req_wl("spiffe://mesh.test/gateway"),
//! )?;
//! let verified = Verifier::new(keys).audience("mesh.test").verify(&original)?;
//!
//! let ask = |scope: &str| TxnTokenRequest::new(
//!     "mesh.test",
//!     Scope::new(scope).unwrap(),
//!     SubjectToken::new(original.clone()),
//!     SubjectTokenType::TxnToken,
//! );
//! let mint = replacement(&verified, &ask("read:orders/42"), "spiffe://mesh.test/orders", ExpiryClass::Fast)?;
//! let claims = issuer.claims_for(&mint)?;
//! assert_eq!((claims.sub.as_str(), claims.txn), ("user:alice", verified.txn));
//! assert_eq!(claims.req_wl.as_deref(), Some("spiffe://mesh.test/orders"));
//! assert_eq!(claims.rctx.unwrap()["req_wl_chain"][0], "spiffe://mesh.test/gateway");
//!
//! // Wider than the original: refused.
//! let wider = replacement(&verified, &ask("read:payments/**"), "spiffe://mesh.test/orders", ExpiryClass::Fast);
//! assert_eq!(wider.unwrap_err().code(), ErrorCode::InvalidScope);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use secmesh_core::ExpiryClass;
use secmesh_core::claims::{Audience, Claims, JsonMap};
use secmesh_core::exchange::{ErrorCode, ExchangeError, SubjectTokenType, TxnTokenRequest};

use crate::issuer::MintRequest;
use crate::verifier::Verified;

/// The member of `rctx` that keeps the earlier requesting workloads, oldest first.
pub const REQ_WL_CHAIN: &str = "req_wl_chain";

/// How many earlier requesters a chain keeps: a token is replaced at most this many times.
pub const MAX_REPLACEMENTS: usize = 16;

/// The [`MintRequest`] of the replacement of `original` that `requester` (the requesting
/// workload, e.g. its SPIFFE ID) asks for with `request`, in `class`; see the
/// [module docs](self) for the rules.
pub fn replacement(
    original: &Verified<Claims>,
    request: &TxnTokenRequest,
    requester: &str,
    class: ExpiryClass,
) -> Result<MintRequest, ExchangeError> {
    let claims = original.claims();
    if request.subject_token_type != SubjectTokenType::TxnToken {
        return Err(ExchangeError::new(
            ErrorCode::InvalidRequest,
            "a replacement needs a txn_token subject token",
        ));
    }
    let aud = match &claims.aud {
        Audience::One(a) => a,
        Audience::Many(_) => {
            return Err(ExchangeError::new(
                ErrorCode::InvalidGrant,
                "the subject token names more than one trust domain",
            ));
        }
    };
    if *aud != request.audience {
        return Err(ExchangeError::new(
            ErrorCode::InvalidTarget,
            "a replacement keeps the trust domain of the token it replaces",
        ));
    }
    let Some(txn) = &claims.txn else {
        return Err(ExchangeError::new(
            ErrorCode::InvalidGrant,
            "the subject token has no txn",
        ));
    };
    let Some(scope) = &claims.scope else {
        return Err(ExchangeError::new(
            ErrorCode::InvalidScope,
            "the subject token's scope is unknown",
        ));
    };
    if !request.scope.is_within(scope) {
        return Err(ExchangeError::new(
            ErrorCode::InvalidScope,
            "a replacement's scope is within the scope of the token it replaces",
        ));
    }
    if class > claims.cls {
        return Err(ExchangeError::new(
            ErrorCode::InvalidScope,
            "a replacement is never of a slower class than the token it replaces",
        ));
    }
    let mut rctx = claims.rctx.clone().unwrap_or_default();
    let mut chain = match rctx.remove(REQ_WL_CHAIN) {
        None => Vec::new(),
        Some(serde_json::Value::Array(chain)) => chain,
        Some(_) => {
            return Err(ExchangeError::new(
                ErrorCode::InvalidGrant,
                "the subject token's requester chain is malformed",
            ));
        }
    };
    if let Some(previous) = &claims.req_wl {
        chain.push(previous.clone().into());
    }
    if chain.len() > MAX_REPLACEMENTS {
        return Err(ExchangeError::new(
            ErrorCode::InvalidGrant,
            "the subject token has been replaced too many times",
        ));
    }
    if !chain.is_empty() {
        rctx.insert(REQ_WL_CHAIN.to_owned(), chain.into());
    }
    let mut mint = MintRequest::new(claims.sub.as_str(), class)
        .audience(aud.clone())
        .scope(request.scope.clone())
        .txn(*txn)
        .req_wl(requester);
    if !rctx.is_empty() {
        mint = mint.rctx(rctx);
    }
    if let Some(tctx) = &claims.tctx {
        mint = mint.tctx(tctx.clone());
    }
    if let Some(act) = &claims.act {
        mint = mint.act(act.clone());
    }
    Ok(mint)
}

/// The `rctx` of a first txn-token from a request's `request_context`: the service asserts
/// what it takes from it; [`REQ_WL_CHAIN`] is the service's own member and never taken from a
/// request.
pub fn request_rctx(request: &TxnTokenRequest) -> Option<JsonMap> {
    let mut rctx = request.request_context.clone()?;
    rctx.remove(REQ_WL_CHAIN);
    (!rctx.is_empty()).then_some(rctx)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use secmesh_core::claims::Scope;
    use secmesh_core::exchange::SubjectToken;

    use super::*;
    use crate::{Algorithm, Issuer, KeySet, SigningKey, Verifier};

    const GW: &str = "spiffe://mesh.test/gateway";
    const ORDERS: &str = "spiffe://mesh.test/orders";

    fn setup() -> (Issuer, Verifier) {
        let key = SigningKey::generate(Algorithm::EdDsa).unwrap();
        let keys = KeySet::single(key.verifying_key(Some("k1".into())));
        (
            Issuer::new(key, "k1", "https://sts.mesh.test").audience("mesh.test"),
            Verifier::new(keys).audience("mesh.test"),
        )
    }

    fn original(issuer: &Issuer, verifier: &Verifier, mint: MintRequest) -> Verified<Claims> {
        verifier.verify(&issuer.mint(&mint).unwrap()).unwrap()
    }

    fn ask(aud: &str, scope: &str) -> TxnTokenRequest {
        TxnTokenRequest::new(
            aud,
            Scope::new(scope).unwrap(),
            SubjectToken::new("redacted"),
            SubjectTokenType::TxnToken,
        )
    }

    fn medium() -> MintRequest {
        MintRequest::new("user:alice", ExpiryClass::Medium)
            .grant("read", "orders/**")
            .grant("*", "carts/{sub}")
            .req_wl(GW)
            .cnf_x5t_s256("thumb")
    }

    fn code(r: Result<MintRequest, ExchangeError>) -> ErrorCode {
        r.unwrap_err().code()
    }

    #[test]
    fn keeps_txn_sub_aud_narrows_and_appends_the_chain() {
        let (issuer, verifier) = setup();
        let first = original(&issuer, &verifier, medium());
        let mint = replacement(
            &first,
            &ask("mesh.test", "read:orders/42 update:carts/{sub}"),
            ORDERS,
            ExpiryClass::Fast,
        )
        .unwrap();
        let second = verifier.verify(&issuer.mint(&mint).unwrap()).unwrap();
        assert_eq!(second.sub, first.sub);
        assert_eq!(second.txn, first.txn);
        assert_eq!(second.aud, first.aud);
        assert_eq!(second.cls, ExpiryClass::Fast);
        assert_eq!(
            second.scope.as_ref().unwrap().as_str(),
            "read:orders/42 update:carts/{sub}"
        );
        assert_eq!(second.req_wl.as_deref(), Some(ORDERS));
        assert_eq!(second.cnf, None, "the binding is not carried");
        // Replaced again: the chain grows, oldest first.
        let mint = replacement(
            &second,
            &ask("mesh.test", "read:orders/42"),
            "w3",
            ExpiryClass::Fast,
        )
        .unwrap();
        let third = issuer.claims_for(&mint).unwrap();
        assert_eq!(
            third.rctx.unwrap()[REQ_WL_CHAIN],
            serde_json::json!([GW, ORDERS])
        );
        assert_eq!(third.txn, first.txn);
    }

    #[test]
    fn never_wider_never_slower_never_elsewhere() {
        let (issuer, verifier) = setup();
        let first = original(&issuer, &verifier, medium());
        for wider in [
            "read:orders/**",
            "read:payments/1",
            "create:orders/1",
            "*:orders/**",
            "read:**",
            "update:carts/user:bob",
            "read:orders/1 read:x",
        ] {
            let r = replacement(&first, &ask("mesh.test", wider), ORDERS, ExpiryClass::Fast);
            if wider == "read:orders/**" {
                assert!(r.is_ok(), "the same grant is within itself");
            } else {
                assert_eq!(code(r), ErrorCode::InvalidScope, "{wider}");
            }
        }
        assert_eq!(
            code(replacement(
                &first,
                &ask("mesh.test", "read:orders/1"),
                ORDERS,
                ExpiryClass::Slow
            )),
            ErrorCode::InvalidScope
        );
        assert_eq!(
            code(replacement(
                &first,
                &ask("other.test", "read:orders/1"),
                ORDERS,
                ExpiryClass::Fast
            )),
            ErrorCode::InvalidTarget
        );
        let mut not_txn = ask("mesh.test", "read:orders/1");
        not_txn.subject_token_type = SubjectTokenType::AccessToken;
        assert_eq!(
            code(replacement(&first, &not_txn, ORDERS, ExpiryClass::Fast)),
            ErrorCode::InvalidRequest
        );
        // An original without a scope is not unconstrained.
        let unscoped = original(
            &issuer,
            &verifier,
            MintRequest::new("user:alice", ExpiryClass::Fast),
        );
        assert_eq!(
            code(replacement(
                &unscoped,
                &ask("mesh.test", "read:orders/1"),
                ORDERS,
                ExpiryClass::Fast
            )),
            ErrorCode::InvalidScope
        );
    }

    #[test]
    fn the_chain_is_bounded_and_never_taken_from_a_request() {
        let (issuer, verifier) = setup();
        let mut token = original(&issuer, &verifier, medium());
        for i in 0..MAX_REPLACEMENTS {
            let mint = replacement(
                &token,
                &ask("mesh.test", "read:orders/1"),
                &format!("w{i}"),
                ExpiryClass::Fast,
            )
            .unwrap();
            token = verifier.verify(&issuer.mint(&mint).unwrap()).unwrap();
        }
        assert_eq!(
            code(replacement(
                &token,
                &ask("mesh.test", "read:orders/1"),
                "w-last",
                ExpiryClass::Fast
            )),
            ErrorCode::InvalidGrant
        );
        let mut ctx = JsonMap::new();
        ctx.insert(REQ_WL_CHAIN.into(), serde_json::json!(["forged"]));
        ctx.insert("req_ip".into(), "10.0.0.1".into());
        let rctx = request_rctx(&ask("mesh.test", "read:x").request_context(ctx)).unwrap();
        assert!(rctx.get(REQ_WL_CHAIN).is_none());
        assert_eq!(rctx["req_ip"], "10.0.0.1");
    }
}
