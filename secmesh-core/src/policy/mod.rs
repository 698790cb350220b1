//! The access-control policy engine: rules over subject, verb, object, caller and expiry class.
//!
//! A policy is a list of rules loaded from TOML or JSON ([`parse`]), compiled into an index
//! ([`Policy`]) and decided against a [`Request`] ([`engine`]). Deny overrides allow; the
//! first matching allow in file order decides; no matching allow means deny. When the request
//! carries the token's grants ([`grant`]), one must also cover the verb and object. Shadow
//! rules are evaluated beside and reported, never enforced. [`SharedPolicy`] makes decisions
//! lock-free and reloads atomic, keeping the last good policy when a reload fails. [`lint`]
//! finds rules that can never match or never decide. Rate limits are declared in the same file
//! ([`limits`]). A deny explains itself on request
//! ([`explain`]): the rules that came closest and the first condition each failed.
//!
//! ```toml
//! [[rule]]
//! id = "owners-read-own-orders"     # required, unique
//! effect = "allow"                  # allow | deny
//! subjects = ["user:*"]             # globs on the token subject: * matches any run
//! verbs = ["read"]                  # exact verbs, or "*"
//! objects = ["orders/{sub}/**"]     # object patterns: literal, *, trailing **, {sub}
//! callers = ["spiffe://mesh.test/gateway"]   # optional: globs on the calling workload
//! max_class = "fast"                # optional: the slowest expiry class accepted
//! attributes = { role = ["ops*"] }  # optional: subject attributes, each one a value must match
//! mode = "enforce"                  # enforce (default) | shadow
//! ```
//!
//! # Example
//! ```
//! use secmesh_core::policy::{Effect, Policy, Reason, Request};
//! use secmesh_core::svo::{Object, Subject, Verb};
//!
//! let policy = Policy::from_toml(r#"
//! [[rule]]
//! id = "read-orders"
//! effect = "allow"
//! subjects = ["user:*"]
//! verbs = ["read"]
//! objects = ["orders/**"]
//!
//! [[rule]]
//! id = "no-archive"
//! effect = "deny"
//! subjects = ["*"]
//! verbs = ["*"]
//! objects = ["orders/archive/**"]
//!
//! [[rule]]
//! id = "try-no-bob"
//! effect = "deny"
//! subjects = ["user:bob"]
//! verbs = ["*"]
//! objects = ["**"]
//! mode = "shadow"
//! "#).unwrap();
//!
//! let bob: Subject = "user:bob".parse().unwrap();
//! let order: Object = "orders/42".parse().unwrap();
//! let d = policy.decide(&Request::new(&bob, &Verb::Read, &order));
//! assert_eq!((d.effect(), d.rule()), (Effect::Allow, Some("read-orders")));
//! let shadow = d.shadow().unwrap();
//! assert_eq!((shadow.effect(), shadow.rule()), (Effect::Deny, Some("try-no-bob")));
//!
//! let old: Object = "orders/archive/2019".parse().unwrap();
//! let d = policy.decide(&Request::new(&bob, &Verb::Read, &old));
//! assert_eq!((d.effect(), d.reason(), d.rule()), (Effect::Deny, Reason::DenyRule, Some("no-archive")));
//! ```

pub mod engine;
pub mod explain;
pub mod grant;
mod index;
pub mod limits;
pub mod lint;
pub mod model;
pub mod parse;
pub mod pattern;
pub mod shared;

pub use engine::{Decision, Policy, Reason, Request, ShadowDecision};
pub use explain::{Closest, Condition, Explanation, Failure};
pub use grant::{Grant, GrantError, parse_scope};
pub use limits::{Limit, MAX_LIMITS, Per};
pub use lint::{Finding, FindingKind, LintReport};
pub use model::{Effect, Mode, Rule, RuleId};
pub use parse::{Format, PolicyError, Position};
pub use pattern::{Glob, ObjectPattern, PatternError, VerbPattern};
pub use shared::SharedPolicy;
