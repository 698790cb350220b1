//! The exchange policy of the Txn-Token Service: which workloads may exchange which subject
//! tokens for txn-tokens, for which audiences, scopes and expiry classes.
//!
//! A workload (authenticated by mTLS, its SPIFFE ID) presents a subject token and asks for a
//! txn-token ([`exchange::TxnTokenRequest`](crate::exchange::TxnTokenRequest)). Once the
//! service has verified the subject token, it decides the exchange with this policy: an
//! [`ExchangeAsk`] against an [`ExchangePolicy`] gives an [`ExchangeDecision`]: allow with the
//! scope and class to issue, or deny with a typed [`ExchangeReason`] and the RFC 6749 error to
//! answer with ([`ExchangeDecision::error`]). The file reads like the access policy's
//! ([`parse`]); [`SharedExchangePolicy`] reloads it without a restart; [`lint`] finds dead and
//! redundant rules. No I/O.
//!
//! ```toml
//! [[exchange]]
//! id = "gateway-exchanges-user-tokens"   # required, unique
//! effect = "allow"                        # allow | deny
//! workloads = ["spiffe://mesh.test/gateway"]          # globs on the requesting workload
//! subject_token_types = ["access_token", "id_token"]  # short names, full URIs, or "*"
//! issuers = ["https://idp.mesh.test"]     # optional: exact issuers of the subject token
//! subject_scopes = ["orders"]             # optional: words the subject token's own scope carries
//! subjects = ["user:*"]                   # optional: globs on the subject of the txn-token
//! audiences = ["mesh.test"]               # exact audiences (trust domains), or "*"
//! scopes = ["read:orders/{sub}/**"]       # allow only, required: the grants it may issue
//! max_class = "fast"                      # allow only, optional (fast): the slowest class
//! mode = "enforce"                        # enforce (default) | shadow
//! ```
//!
//! Short token type names: `access_token`, `id_token`, `jwt`, `txn_token`, `self_signed`,
//! `unsigned_json`. Globs: `*` matches any run of characters ([`Glob`](crate::policy::Glob)).
//! A rule with `issuers` matches only an ask with one of them (an internal subject token, with
//! no issuer, never); a rule without `issuers` accepts any issuer the service verified. A rule
//! with `subject_scopes` matches only when the external subject token's own `scope` (the IdP's
//! OAuth scope words) carries every one of them: what the subject token allows is a condition
//! of the rules that grant (an internal token carries no such words, so never).
//!
//! # Semantics (a contract)
//!
//! Enforce-mode rules decide; the first step that applies gives the decision:
//! 1. **Deny wins.** A deny rule whose conditions (workloads, subject token types, issuers,
//!    subjects, audiences) all match: deny, [`ExchangeReason::DenyRule`], naming the first
//!    such rule in file order (`unauthorized_client`).
//! 2. **Some allow rule must match.** The allow rules whose conditions all match are the
//!    *matching* rules. None, but some allow rule matches everything but the audience:
//!    [`ExchangeReason::AudienceNotAllowed`] (`invalid_target`: this workload may ask, not for
//!    this audience). None at all: [`ExchangeReason::NoRule`] (`unauthorized_client`).
//! 3. **Class.** The class asked for (`fast` when none is asked) must be accepted by a
//!    matching rule's `max_class`; only those rules (the *eligible* ones) contribute scope, so
//!    a rule that allows `slow` for a narrow scope never makes a wide scope slow.
//! 4. **Scope (down-scoping).** The granted scope is the requested scope intersected with the
//!    union of the eligible rules' `scopes`: per requested grant `r` and policy grant `p`, `r`
//!    within `p` keeps `r`; else `p` within `r` keeps `p` (narrowed); else nothing; then
//!    deduplicated, in request order. "Within" is [`Scope::is_within`]'s conservative
//!    inclusion, so every granted grant is within the request and within the policy. Nothing
//!    granted: [`ExchangeReason::ClassNotAllowed`] when the matching rules would have granted
//!    something at a faster class, else [`ExchangeReason::ScopeNotAllowed`] (both
//!    `invalid_scope`).
//! 5. Else allow, [`ExchangeReason::AllowRule`], with the granted scope, the class, and the
//!    first rule (file order) a granted grant came from.
//!    [`ExchangeDecision::narrowed`] says whether the granted scope differs from the request
//!    (the response must then echo `scope`).
//!
//! `{sub}` stands for the ask's subject taken literally, as the authorizer will read it for
//! the issued token: `read:orders/user:alice/42` is within `read:orders/{sub}/**` for
//! `user:alice` (and granted as asked), not for `user:bob`; `{sub}` is also within the same
//! `{sub}`. A subject that would read as pattern syntax (`*`, `/`, `{`, `}`, space) is never
//! put into a pattern, so it widens nothing: its `{sub}` covers only `{sub}`. The granted
//! scope holds at most [`MAX_GRANTS`] grants, and one decision tests at most
//! [`MAX_NARROW_WORK`] grant pairs; past a bound, grants are left out, never widened
//! ([`ExchangeDecision::truncated`]).
//!
//! Shadow-mode rules are evaluated the same way on their own and reported beside the decision
//! ([`ExchangeDecision::shadow`]); they never change it. Error descriptions are fixed texts:
//! nothing of the request is echoed. The decision's `Display` names the effect, the reason
//! code, the rule id and the class, for logs.
//!
//! Candidate rules are found by the requesting workload (exact workloads by lookup, globs by
//! scan), so a policy of many per-workload rules decides in a few rule tests
//! ([`ExchangeDecision::rules_examined`]).
//!
//! # Example
//! ```
//! use secmesh_core::claims::Scope;
//! use secmesh_core::exchange::{ErrorCode, SubjectTokenType};
//! use secmesh_core::exchange_policy::{ExchangeAsk, ExchangePolicy, ExchangeReason};
//! use secmesh_core::ExpiryClass;
//!
//! let policy = ExchangePolicy::from_toml(r#"
//! [[exchange]]
//! id = "gateway-user-tokens"
//! effect = "allow"
//! workloads = ["spiffe://mesh.test/gateway"]
//! subject_token_types = ["access_token", "id_token"]
//! issuers = ["https://idp.mesh.test"]
//! subjects = ["user:*"]
//! audiences = ["mesh.test"]
//! scopes = ["read:orders/{sub}/**", "create:orders/{sub}/*/dispute"]
//!
//! [[exchange]]
//! id = "no-blocked-users"
//! effect = "deny"
//! workloads = ["*"]
//! subject_token_types = ["*"]
//! subjects = ["user:blocked-*"]
//! audiences = ["*"]
//! "#).unwrap();
//!
//! let (gateway, idp) = ("spiffe://mesh.test/gateway", "https://idp.mesh.test");
//! let asked: Scope = "read:orders/{sub}/** delete:orders/{sub}/**".parse().unwrap();
//! let access = SubjectTokenType::AccessToken;
//! let ask = ExchangeAsk::new(gateway, &access, "user:alice", "mesh.test", &asked)
//!     .with_issuer(idp);
//!
//! // Allowed, narrowed to what the policy grants, fast.
//! let d = policy.decide(&ask);
//! assert_eq!((d.reason(), d.rule()), (ExchangeReason::AllowRule, Some("gateway-user-tokens")));
//! assert_eq!(d.granted().unwrap().as_str(), "read:orders/{sub}/**");
//! assert!(d.narrowed());
//! assert_eq!(d.class(), Some(ExpiryClass::Fast));
//!
//! // A wider ask is narrowed to the policy's grants within it.
//! let wide: Scope = "*:**".parse().unwrap();
//! let d = policy.decide(&ExchangeAsk::new(gateway, &access, "user:alice", "mesh.test", &wide)
//!     .with_issuer(idp));
//! assert_eq!(d.granted().unwrap().as_str(),
//!     "read:orders/{sub}/** create:orders/{sub}/*/dispute");
//!
//! // Deny wins.
//! let blocked = ExchangeAsk::new(gateway, &access, "user:blocked-bob", "mesh.test", &asked)
//!     .with_issuer(idp);
//! let d = policy.decide(&blocked);
//! assert_eq!((d.reason(), d.rule()), (ExchangeReason::DenyRule, Some("no-blocked-users")));
//! assert_eq!(d.error().unwrap().code(), ErrorCode::UnauthorizedClient);
//!
//! // Another audience, a slower class, a scope outside the policy, another issuer.
//! let elsewhere = ExchangeAsk::new(gateway, &access, "user:alice", "other.test", &asked)
//!     .with_issuer(idp);
//! assert_eq!(policy.decide(&elsewhere).error().unwrap().code(), ErrorCode::InvalidTarget);
//! let slow = ask.with_class(ExpiryClass::Slow);
//! assert_eq!(policy.decide(&slow).reason(), ExchangeReason::ClassNotAllowed);
//! let invoices: Scope = "read:invoices/**".parse().unwrap();
//! let d = policy.decide(&ExchangeAsk::new(gateway, &access, "user:alice", "mesh.test", &invoices)
//!     .with_issuer(idp));
//! assert_eq!(d.reason(), ExchangeReason::ScopeNotAllowed);
//! assert_eq!(d.error().unwrap().code(), ErrorCode::InvalidScope);
//! let d = policy.decide(&ask.with_issuer("https://evil.test"));
//! assert_eq!(d.reason(), ExchangeReason::NoRule);
//! ```
//!
//! [`Scope::is_within`]: crate::claims::Scope::is_within

pub mod ask;
pub mod decide;
mod index;
pub mod lint;
pub mod model;
mod narrow;
pub mod parse;
pub mod shared;

#[cfg(test)]
mod tests;

pub use ask::ExchangeAsk;
pub use decide::{ExchangeDecision, ExchangePolicy, ExchangeReason, ShadowExchangeDecision};
pub use lint::{ExchangeFinding, ExchangeFindingKind, ExchangeLintReport, MAX_LINT_WORK};
pub use model::{AudiencePattern, ExchangeRule, TokenTypePattern};
pub use narrow::{MAX_NARROW_WORK, literal_subject};
pub use parse::{ExchangePolicyError, MAX_GRANTS};
pub use shared::SharedExchangePolicy;
