//! Deciding: a [`Request`] against a compiled [`Policy`] gives a [`Decision`].
//!
//! The semantics are a contract:
//! 1. any matching enforce-mode deny rule: deny, naming that rule (the first in file order);
//! 2. else the first matching enforce-mode allow rule in file order: allow, naming that rule,
//!    unless the request carries grants and none covers (verb, object): deny, "missing grant";
//! 3. else deny, "no rule".
//!
//! Shadow-mode rules are evaluated the same way on their own (with the same grant check) and
//! reported beside the decision as a [`ShadowDecision`]; they never change it. A policy without
//! shadow rules reports no shadow decision.
//!
//! # Example
//! ```
//! use secmesh_core::policy::{Effect, Policy, Reason, Request, grant::parse_scope};
//! use secmesh_core::svo::{Object, Subject, Verb};
//! use secmesh_core::ExpiryClass;
//!
//! let policy = Policy::from_toml(r#"
//! [[rule]]
//! id = "owners-read-own-orders"
//! effect = "allow"
//! subjects = ["user:*"]
//! verbs = ["read"]
//! objects = ["orders/{sub}/**"]
//! max_class = "fast"
//! "#).unwrap();
//!
//! let alice: Subject = "user:alice".parse().unwrap();
//! let own: Object = "orders/user:alice/42".parse().unwrap();
//! let req = Request::new(&alice, &Verb::Read, &own).with_class(ExpiryClass::Fast);
//! let d = policy.decide(&req);
//! assert_eq!(d.effect(), Effect::Allow);
//! assert_eq!(d.rule(), Some("owners-read-own-orders"));
//!
//! // Without a class, a rule with `max_class` never matches.
//! let d = policy.decide(&Request::new(&alice, &Verb::Read, &own));
//! assert_eq!((d.effect(), d.reason()), (Effect::Deny, Reason::NoRule));
//!
//! // With grants, one must cover the request too.
//! let grants = parse_scope("read:invoices/**").unwrap();
//! let d = policy.decide(&req.with_grants(&grants));
//! assert_eq!((d.effect(), d.reason()), (Effect::Deny, Reason::MissingGrant));
//! ```

use std::fmt;

use super::grant::Grant;
use super::index::Index;
use super::limits::Limit;
use super::model::{Effect, Mode, Rule, RuleId};
use crate::class::ExpiryClass;
use crate::svo::{Object, Subject, Verb};

/// What is being decided: a subject performing a verb on an object, with the calling
/// workload, the token's expiry class and the token's grants when known.
#[derive(Clone, Copy, Debug)]
#[non_exhaustive]
pub struct Request<'a> {
    /// The token subject.
    pub subject: &'a Subject,
    /// The verb.
    pub verb: &'a Verb,
    /// The object.
    pub object: &'a Object,
    /// The calling workload (mTLS peer SPIFFE ID or current actor), when known.
    pub caller: Option<&'a str>,
    /// The token's expiry class, when known.
    pub class: Option<ExpiryClass>,
    /// The token's grants (its `scope`), when the token carries one.
    pub grants: Option<&'a [Grant]>,
    /// Subject attributes as (name, value) pairs, e.g. `("role", "admin")`; a name may repeat
    /// for a multi-valued attribute. Empty when none are known.
    pub attributes: &'a [(&'a str, &'a str)],
}

impl<'a> Request<'a> {
    /// A request with no caller, class or grants.
    pub fn new(subject: &'a Subject, verb: &'a Verb, object: &'a Object) -> Self {
        Request {
            subject,
            verb,
            object,
            caller: None,
            class: None,
            grants: None,
            attributes: &[],
        }
    }

    /// With the calling workload.
    #[must_use]
    pub fn with_caller(mut self, caller: &'a str) -> Self {
        self.caller = Some(caller);
        self
    }

    /// With the token's expiry class.
    #[must_use]
    pub fn with_class(mut self, class: ExpiryClass) -> Self {
        self.class = Some(class);
        self
    }

    /// With the token's grants.
    #[must_use]
    pub fn with_grants(mut self, grants: &'a [Grant]) -> Self {
        self.grants = Some(grants);
        self
    }

    /// With subject attributes, (name, value) pairs.
    #[must_use]
    pub fn with_attributes(mut self, attributes: &'a [(&'a str, &'a str)]) -> Self {
        self.attributes = attributes;
        self
    }
}

/// Why a decision came out the way it did.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Reason {
    /// An allow rule matched (and a grant covered the request, if grants were given).
    AllowRule,
    /// A deny rule matched.
    DenyRule,
    /// No rule matched.
    NoRule,
    /// An allow rule matched but no grant covers (verb, object).
    MissingGrant,
}

impl Reason {
    /// `allow rule`, `deny rule`, `no rule` or `missing grant`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Reason::AllowRule => "allow rule",
            Reason::DenyRule => "deny rule",
            Reason::NoRule => "no rule",
            Reason::MissingGrant => "missing grant",
        }
    }
}

impl Reason {
    /// A stable snake_case word for logs, metrics and audit events: `allow_rule`,
    /// `deny_rule`, `no_rule`, `missing_grant`.
    pub const fn code(self) -> &'static str {
        match self {
            Reason::AllowRule => "allow_rule",
            Reason::DenyRule => "deny_rule",
            Reason::NoRule => "no_rule",
            Reason::MissingGrant => "missing_grant",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The outcome of the shadow rules, reported beside the enforced decision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShadowDecision {
    effect: Effect,
    rule: Option<RuleId>,
    reason: Reason,
}

impl ShadowDecision {
    /// What the shadow rules would have decided.
    pub fn effect(&self) -> Effect {
        self.effect
    }

    /// The deciding shadow rule, if one decided.
    pub fn rule(&self) -> Option<&str> {
        match self.reason {
            Reason::MissingGrant => None,
            _ => self.rule.as_ref().map(RuleId::as_str),
        }
    }

    /// The shadow rule that matched: the deciding one, or for "missing grant" the allow rule
    /// the grants refused.
    pub fn matched_rule(&self) -> Option<&RuleId> {
        self.rule.as_ref()
    }

    /// Why.
    pub fn reason(&self) -> Reason {
        self.reason
    }
}

/// A decision: the effect, the rule or reason behind it, and the shadow outcome.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    effect: Effect,
    rule: Option<RuleId>,
    reason: Reason,
    shadow: Option<ShadowDecision>,
}

impl Decision {
    /// Allow or deny.
    pub fn effect(&self) -> Effect {
        self.effect
    }

    /// Whether the request is allowed.
    pub fn is_allowed(&self) -> bool {
        self.effect == Effect::Allow
    }

    /// The deciding rule's id: the allow or deny rule; `None` for "no rule" and "missing grant".
    pub fn rule(&self) -> Option<&str> {
        self.rule_id().map(RuleId::as_str)
    }

    /// The deciding rule's id, shareable.
    pub fn rule_id(&self) -> Option<&RuleId> {
        match self.reason {
            Reason::MissingGrant => None,
            _ => self.rule.as_ref(),
        }
    }

    /// The rule that matched, for an audit event: the deciding rule, or for "missing grant"
    /// the allow rule that matched before the grants refused the request; `None` for "no
    /// rule".
    pub fn matched_rule(&self) -> Option<&RuleId> {
        self.rule.as_ref()
    }

    /// Why.
    pub fn reason(&self) -> Reason {
        self.reason
    }

    /// The shadow rules' outcome, when the policy has shadow rules.
    pub fn shadow(&self) -> Option<&ShadowDecision> {
        self.shadow.as_ref()
    }
}

/// A compiled policy: its rules in file order and the indexes that decide over them.
#[derive(Debug)]
pub struct Policy {
    rules: Vec<Rule>,
    enforce: Index,
    shadow: Option<Index>,
    /// The first rule with an attribute condition, found once when the policy is built.
    attribute_rule: Option<usize>,
    /// The `[[limit]]` tables, in file order.
    limits: Vec<Limit>,
}

impl Default for Policy {
    fn default() -> Self {
        Policy::empty()
    }
}

impl Policy {
    /// A policy without rules: it denies everything ("no rule").
    pub fn empty() -> Policy {
        Policy::from_rules(Vec::new())
    }

    pub(crate) fn from_rules(rules: Vec<Rule>) -> Policy {
        let enforce = Index::build(&rules, |r| r.mode == Mode::Enforce);
        let shadow = rules
            .iter()
            .any(|r| r.mode == Mode::Shadow)
            .then(|| Index::build(&rules, |r| r.mode == Mode::Shadow));
        let attribute_rule = rules.iter().position(|r| r.attributes().next().is_some());
        Policy {
            rules,
            enforce,
            shadow,
            attribute_rule,
            limits: Vec::new(),
        }
    }

    pub(crate) fn with_limits(mut self, limits: Vec<Limit>) -> Policy {
        self.limits = limits;
        self
    }

    /// The rate limits declared beside the rules, in file order.
    pub fn limits(&self) -> &[Limit] {
        &self.limits
    }

    /// The id of the first rule (file order) with an attribute condition: a policy that can
    /// only match with attributes the service must supply.
    pub fn first_attribute_rule(&self) -> Option<&str> {
        self.attribute_rule.map(|i| self.rules[i].id())
    }

    /// The rules, in file order.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// The rule with id `id`.
    pub fn rule(&self, id: &str) -> Option<&Rule> {
        self.rules.iter().find(|r| r.id() == id)
    }

    /// Decide `req`.
    pub fn decide(&self, req: &Request<'_>) -> Decision {
        let (effect, rule, reason) = self.evaluate(&self.enforce, req);
        let shadow = self.shadow.as_ref().map(|ix| {
            let (effect, rule, reason) = self.evaluate(ix, req);
            ShadowDecision {
                effect,
                rule,
                reason,
            }
        });
        Decision {
            effect,
            rule,
            reason,
            shadow,
        }
    }

    fn evaluate(&self, index: &Index, req: &Request<'_>) -> (Effect, Option<RuleId>, Reason) {
        let id = |i: u32| self.rules.get(i as usize).map(|r| r.id.clone());
        if let Some(i) = index.first_match(&self.rules, req, Effect::Deny) {
            return (Effect::Deny, id(i), Reason::DenyRule);
        }
        let Some(i) = index.first_match(&self.rules, req, Effect::Allow) else {
            return (Effect::Deny, None, Reason::NoRule);
        };
        if let Some(grants) = req.grants {
            let (verb, object, subject) =
                (req.verb.as_str(), req.object.as_str(), req.subject.as_str());
            if !grants.iter().any(|g| g.covers_str(verb, object, subject)) {
                return (Effect::Deny, id(i), Reason::MissingGrant);
            }
        }
        (Effect::Allow, id(i), Reason::AllowRule)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::grant::parse_scope;

    const POLICY: &str = r#"
[[rule]]
id = "read-orders"
effect = "allow"
subjects = ["user:*"]
verbs = ["read"]
objects = ["orders/*"]

[[rule]]
id = "any-orders"
effect = "allow"
subjects = ["*"]
verbs = ["*"]
objects = ["orders/**"]

[[rule]]
id = "gateway-only"
effect = "allow"
subjects = ["user:*"]
verbs = ["update"]
objects = ["profiles/{sub}"]
callers = ["spiffe://mesh.test/gateway"]
max_class = "medium"

[[rule]]
id = "no-bob"
effect = "deny"
subjects = ["user:bob"]
verbs = ["*"]
objects = ["orders/**"]

[[rule]]
id = "no-bob-2"
effect = "deny"
subjects = ["user:b*"]
verbs = ["*"]
objects = ["**"]

[[rule]]
id = "shadow-allow"
effect = "allow"
subjects = ["*"]
verbs = ["read"]
objects = ["**"]
mode = "shadow"
"#;

    fn policy() -> Policy {
        Policy::from_toml(POLICY).unwrap()
    }

    fn decide(p: &Policy, sub: &str, verb: &str, obj: &str) -> Decision {
        let (s, v, o): (Subject, Verb, Object) = (
            sub.parse().unwrap(),
            verb.parse().unwrap(),
            obj.parse().unwrap(),
        );
        p.decide(&Request::new(&s, &v, &o))
    }

    #[test]
    fn first_allow_in_file_order() {
        let p = policy();
        let d = decide(&p, "user:alice", "read", "orders/1");
        assert_eq!((d.effect(), d.rule()), (Effect::Allow, Some("read-orders")));
        assert_eq!(d.reason(), Reason::AllowRule);
        let d = decide(&p, "user:alice", "read", "orders/1/items");
        assert_eq!(d.rule(), Some("any-orders"));
        let d = decide(&p, "svc:x", "delete", "orders");
        assert_eq!(d.rule(), Some("any-orders"));
    }

    #[test]
    fn deny_overrides_and_names_first_deny() {
        let p = policy();
        let d = decide(&p, "user:bob", "read", "orders/1");
        assert_eq!((d.effect(), d.rule()), (Effect::Deny, Some("no-bob")));
        assert_eq!(d.reason(), Reason::DenyRule);
        let d = decide(&p, "user:bill", "read", "orders/1");
        assert_eq!(d.rule(), Some("no-bob-2"));
    }

    #[test]
    fn no_rule() {
        let p = policy();
        let d = decide(&p, "user:alice", "read", "invoices/1");
        assert_eq!(
            (d.effect(), d.rule(), d.reason()),
            (Effect::Deny, None, Reason::NoRule)
        );
        let d = decide(&Policy::empty(), "user:alice", "read", "");
        assert_eq!(d.reason(), Reason::NoRule);
        assert!(d.shadow().is_none());
    }

    #[test]
    fn callers_and_class() {
        let p = policy();
        let (s, o): (Subject, Object) = (
            "user:alice".parse().unwrap(),
            "profiles/user:alice".parse().unwrap(),
        );
        let base = Request::new(&s, &Verb::Update, &o);
        let gw = "spiffe://mesh.test/gateway";
        assert_eq!(p.decide(&base).reason(), Reason::NoRule);
        assert_eq!(p.decide(&base.with_caller(gw)).reason(), Reason::NoRule);
        assert_eq!(
            p.decide(&base.with_class(ExpiryClass::Fast)).reason(),
            Reason::NoRule
        );
        for (class, ok) in [
            (ExpiryClass::Fast, true),
            (ExpiryClass::Medium, true),
            (ExpiryClass::Slow, false),
        ] {
            let d = p.decide(&base.with_caller(gw).with_class(class));
            assert_eq!(d.is_allowed(), ok, "{class}");
        }
        let d = p.decide(
            &base
                .with_caller("spiffe://mesh.test/other")
                .with_class(ExpiryClass::Fast),
        );
        assert!(!d.is_allowed());
        let other: Object = "profiles/user:bob".parse().unwrap();
        let d = p.decide(
            &Request::new(&s, &Verb::Update, &other)
                .with_caller(gw)
                .with_class(ExpiryClass::Fast),
        );
        assert!(!d.is_allowed());
    }

    #[test]
    fn grants() {
        let p = policy();
        let (s, o): (Subject, Object) =
            ("user:alice".parse().unwrap(), "orders/1".parse().unwrap());
        let req = Request::new(&s, &Verb::Read, &o);
        for (scope, allowed) in [
            ("read:orders/*", true),
            ("*:orders/**", true),
            ("read:orders/2 read:**", true),
            ("update:orders/*", false),
            ("read:invoices/*", false),
            ("", false),
        ] {
            let g = parse_scope(scope).unwrap();
            let d = p.decide(&req.with_grants(&g));
            assert_eq!(d.is_allowed(), allowed, "{scope}");
            if !allowed {
                assert_eq!((d.reason(), d.rule()), (Reason::MissingGrant, None));
                assert_eq!(d.matched_rule().map(RuleId::as_str), Some("read-orders"));
            } else {
                assert_eq!(d.matched_rule(), d.rule_id());
            }
        }
        // A deny rule still names itself when grants are missing too.
        let bob: Subject = "user:bob".parse().unwrap();
        let g = parse_scope("").unwrap();
        let d = p.decide(&Request::new(&bob, &Verb::Read, &o).with_grants(&g));
        assert_eq!(d.reason(), Reason::DenyRule);
    }

    #[test]
    fn attributes() {
        let p = Policy::from_toml(
            r#"
[[rule]]
id = "ops"
effect = "allow"
subjects = ["user:*"]
verbs = ["*"]
objects = ["ops/**"]
attributes = { role = ["ops*", "admin"], team = ["blue"] }
"#,
        )
        .unwrap();
        let (s, o): (Subject, Object) = ("user:a".parse().unwrap(), "ops/x".parse().unwrap());
        let req = Request::new(&s, &Verb::Read, &o);
        assert_eq!(p.decide(&req).reason(), Reason::NoRule);
        for (attrs, ok) in [
            (&[("role", "ops-lead"), ("team", "blue")][..], true),
            (
                &[("team", "blue"), ("role", "dev"), ("role", "admin")][..],
                true,
            ),
            (&[("role", "ops")][..], false),
            (&[("role", "dev"), ("team", "blue")][..], false),
            (&[("team", "blue"), ("Role", "admin")][..], false),
        ] {
            assert_eq!(
                p.decide(&req.with_attributes(attrs)).is_allowed(),
                ok,
                "{attrs:?}"
            );
        }
    }

    #[test]
    fn shadow_beside() {
        let p = policy();
        let d = decide(&p, "user:bob", "read", "orders/1");
        let s = d.shadow().unwrap();
        assert_eq!(
            (s.effect(), s.rule(), s.reason()),
            (Effect::Allow, Some("shadow-allow"), Reason::AllowRule)
        );
        let d = decide(&p, "user:bob", "delete", "x");
        let s = d.shadow().unwrap();
        assert_eq!(
            (s.effect(), s.rule(), s.reason()),
            (Effect::Deny, None, Reason::NoRule)
        );
        assert_eq!(p.rule("no-bob").unwrap().effect(), Effect::Deny);
        assert!(p.rule("missing").is_none());
    }
}
