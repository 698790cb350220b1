//! Deciding: an [`ExchangeAsk`] against a compiled [`ExchangePolicy`] gives an
//! [`ExchangeDecision`]. The semantics are in the [module docs](super).

use std::fmt;

use super::ask::ExchangeAsk;
use super::index::Index;
use super::model::ExchangeRule;
use super::narrow::{literal_subject, narrow};
use crate::claims::Scope;
use crate::class::ExpiryClass;
use crate::exchange::{ErrorCode, ExchangeError};
use crate::policy::{Effect, Mode, RuleId};

/// Why an exchange decision came out the way it did.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ExchangeReason {
    /// Allow rules matched and granted (part of) the scope.
    AllowRule,
    /// A deny rule matched (`unauthorized_client`).
    DenyRule,
    /// No allow rule matches the workload, subject token and subject (`unauthorized_client`).
    NoRule,
    /// Allow rules match everything but the audience (`invalid_target`).
    AudienceNotAllowed,
    /// Allow rules matched, but none allows any of the requested grants (`invalid_scope`).
    ScopeNotAllowed,
    /// Allow rules matched, but none that allows the requested grants allows the expiry class
    /// asked for (`invalid_scope`).
    ClassNotAllowed,
}

impl ExchangeReason {
    /// A stable snake_case word for logs, metrics and audit events.
    pub const fn code(self) -> &'static str {
        match self {
            ExchangeReason::AllowRule => "allow_rule",
            ExchangeReason::DenyRule => "deny_rule",
            ExchangeReason::NoRule => "no_rule",
            ExchangeReason::AudienceNotAllowed => "audience_not_allowed",
            ExchangeReason::ScopeNotAllowed => "scope_not_allowed",
            ExchangeReason::ClassNotAllowed => "class_not_allowed",
        }
    }

    /// The error to answer a denial with (fixed text, never a value from the request);
    /// `None` for [`AllowRule`](Self::AllowRule).
    pub fn error(self) -> Option<ExchangeError> {
        let (code, text) = match self {
            ExchangeReason::AllowRule => return None,
            ExchangeReason::DenyRule => (
                ErrorCode::UnauthorizedClient,
                "the exchange policy denies this workload this exchange",
            ),
            ExchangeReason::NoRule => (
                ErrorCode::UnauthorizedClient,
                "the exchange policy allows this workload no such exchange",
            ),
            ExchangeReason::AudienceNotAllowed => (
                ErrorCode::InvalidTarget,
                "the exchange policy allows this workload no such audience",
            ),
            ExchangeReason::ScopeNotAllowed => (
                ErrorCode::InvalidScope,
                "the exchange policy allows none of the requested scope",
            ),
            ExchangeReason::ClassNotAllowed => (
                ErrorCode::InvalidScope,
                "txn_class: the exchange policy allows no class this slow for this scope",
            ),
        };
        Some(ExchangeError::new(code, text))
    }
}

impl fmt::Display for ExchangeReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// The outcome of the shadow rules, reported beside the enforced decision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShadowExchangeDecision {
    effect: Effect,
    reason: ExchangeReason,
    rule: Option<RuleId>,
    granted: Option<Scope>,
}

impl ShadowExchangeDecision {
    /// What the shadow rules would have decided.
    pub fn effect(&self) -> Effect {
        self.effect
    }

    /// Why.
    pub fn reason(&self) -> ExchangeReason {
        self.reason
    }

    /// The deciding shadow rule ([`ExchangeDecision::rule`]).
    pub fn rule(&self) -> Option<&str> {
        self.rule.as_ref().map(RuleId::as_str)
    }

    /// The scope the shadow rules would have granted.
    pub fn granted(&self) -> Option<&Scope> {
        self.granted.as_ref()
    }
}

/// A decision: the effect, the reason and rule behind it, what is granted, the shadow outcome.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExchangeDecision {
    effect: Effect,
    reason: ExchangeReason,
    rule: Option<RuleId>,
    matched: Option<RuleId>,
    granted: Option<Scope>,
    class: Option<ExpiryClass>,
    narrowed: bool,
    truncated: bool,
    examined: usize,
    shadow: Option<ShadowExchangeDecision>,
}

impl ExchangeDecision {
    /// Allow or deny.
    pub fn effect(&self) -> Effect {
        self.effect
    }

    /// Whether the exchange is allowed.
    pub fn is_allowed(&self) -> bool {
        self.effect == Effect::Allow
    }

    /// Why.
    pub fn reason(&self) -> ExchangeReason {
        self.reason
    }

    /// The deciding rule: for an allow the first rule (file order) a granted grant came from,
    /// for a deny rule that rule; `None` otherwise.
    pub fn rule(&self) -> Option<&str> {
        self.rule.as_ref().map(RuleId::as_str)
    }

    /// The deciding rule, shareable.
    pub fn rule_id(&self) -> Option<&RuleId> {
        self.rule.as_ref()
    }

    /// The rule that matched, for an audit event: the deciding rule, or for a scope or class
    /// refusal the first allow rule that matched, or for an audience refusal the first allow
    /// rule that matched all but the audience; `None` for "no rule".
    pub fn matched_rule(&self) -> Option<&RuleId> {
        self.matched.as_ref()
    }

    /// The scope to issue (allow only): within the request and within the policy.
    pub fn granted(&self) -> Option<&Scope> {
        self.granted.as_ref()
    }

    /// The expiry class to issue (allow only).
    pub fn class(&self) -> Option<ExpiryClass> {
        self.class
    }

    /// Whether the granted scope differs from the scope asked for: the response must then
    /// carry `scope` (RFC 8693 section 2.2.1).
    pub fn narrowed(&self) -> bool {
        self.narrowed
    }

    /// Whether a bound ([`MAX_GRANTS`](super::MAX_GRANTS) grants,
    /// [`MAX_NARROW_WORK`](super::MAX_NARROW_WORK) pair tests) left grants out of the granted
    /// scope. The grant is still sound, only narrower than it could be.
    pub fn truncated(&self) -> bool {
        self.truncated
    }

    /// How many rules the decision tested (enforce and shadow): a cost for metrics.
    pub fn rules_examined(&self) -> usize {
        self.examined
    }

    /// The shadow rules' outcome, when the policy has shadow rules.
    pub fn shadow(&self) -> Option<&ShadowExchangeDecision> {
        self.shadow.as_ref()
    }

    /// The RFC 6749 error to answer a denial with; `None` for an allow.
    pub fn error(&self) -> Option<ExchangeError> {
        self.reason.error()
    }
}

impl fmt::Display for ExchangeDecision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.effect, self.reason)?;
        if let Some(rule) = self.rule.as_ref().or(self.matched.as_ref()) {
            write!(f, " rule `{rule}`")?;
        }
        if let Some(class) = self.class {
            write!(f, " class {class}")?;
        }
        if self.narrowed {
            f.write_str(" scope narrowed")?;
        }
        Ok(())
    }
}

/// A compiled exchange policy: its rules in file order and the indexes that decide over them.
#[derive(Debug, Default)]
pub struct ExchangePolicy {
    rules: Vec<ExchangeRule>,
    enforce: Option<Index>,
    shadow: Option<Index>,
}

/// One evaluation over the rules of one mode.
struct Outcome {
    effect: Effect,
    reason: ExchangeReason,
    rule: Option<u32>,
    matched: Option<u32>,
    granted: Option<Scope>,
    truncated: bool,
}

impl Outcome {
    fn deny(reason: ExchangeReason, rule: Option<u32>, matched: Option<u32>) -> Outcome {
        Outcome {
            effect: Effect::Deny,
            reason,
            rule,
            matched,
            granted: None,
            truncated: false,
        }
    }
}

impl ExchangePolicy {
    /// A policy without rules: it denies every exchange ("no rule").
    pub fn empty() -> ExchangePolicy {
        ExchangePolicy::default()
    }

    pub(crate) fn from_rules(rules: Vec<ExchangeRule>) -> ExchangePolicy {
        let enforce = Index::build(&rules, Mode::Enforce);
        let shadow = Index::build(&rules, Mode::Shadow);
        ExchangePolicy {
            rules,
            enforce,
            shadow,
        }
    }

    /// The rules, in file order.
    pub fn rules(&self) -> &[ExchangeRule] {
        &self.rules
    }

    /// The number of rules.
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    /// Whether the policy has no rules.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The rule with id `id`.
    pub fn rule(&self, id: &str) -> Option<&ExchangeRule> {
        self.rules.iter().find(|r| r.id() == id)
    }

    /// The rule ids, in file order.
    pub fn rule_ids(&self) -> impl Iterator<Item = &str> {
        self.rules.iter().map(ExchangeRule::id)
    }

    pub(crate) fn index(&self, mode: Mode) -> Option<&Index> {
        match mode {
            Mode::Enforce => self.enforce.as_ref(),
            Mode::Shadow => self.shadow.as_ref(),
        }
    }

    /// Decide `ask`.
    pub fn decide(&self, ask: &ExchangeAsk<'_>) -> ExchangeDecision {
        let mut examined = 0;
        let class = ask.class.unwrap_or(ExpiryClass::Fast);
        let id = |i: Option<u32>| {
            i.and_then(|i| self.rules.get(i as usize))
                .map(|r| r.id.clone())
        };
        let out = self.evaluate(self.enforce.as_ref(), ask, class, &mut examined);
        let shadow = self.shadow.as_ref().map(|ix| {
            let s = self.evaluate(Some(ix), ask, class, &mut examined);
            ShadowExchangeDecision {
                effect: s.effect,
                reason: s.reason,
                rule: id(s.rule),
                granted: s.granted,
            }
        });
        let allowed = out.effect == Effect::Allow;
        ExchangeDecision {
            effect: out.effect,
            reason: out.reason,
            rule: id(out.rule),
            matched: id(out.matched),
            narrowed: out.granted.as_ref().is_some_and(|g| g != ask.scope),
            granted: out.granted,
            class: allowed.then_some(class),
            truncated: out.truncated,
            examined,
            shadow,
        }
    }

    fn evaluate(
        &self,
        index: Option<&Index>,
        ask: &ExchangeAsk<'_>,
        class: ExpiryClass,
        examined: &mut usize,
    ) -> Outcome {
        let Some(index) = index else {
            return Outcome::deny(ExchangeReason::NoRule, None, None);
        };
        let mut deny = None;
        let mut allows: Vec<u32> = Vec::new();
        let mut near: Option<u32> = None;
        index.for_each(ask.workload, |i| {
            *examined += 1;
            let Some(rule) = self.rules.get(i as usize) else {
                return true;
            };
            if !rule.matches_except_audience(ask) {
                return true;
            }
            match (rule.effect, rule.audience_matches(ask.audience)) {
                (Effect::Deny, true) => {
                    deny = Some(i);
                    return false;
                }
                (Effect::Allow, true) => allows.push(i),
                (Effect::Allow, false) => {
                    near.get_or_insert(i);
                }
                (Effect::Deny, false) => {}
            }
            true
        });
        if deny.is_some() {
            return Outcome::deny(ExchangeReason::DenyRule, deny, deny);
        }
        let Some(&first) = allows.first() else {
            return match near {
                Some(_) => Outcome::deny(ExchangeReason::AudienceNotAllowed, None, near),
                None => Outcome::deny(ExchangeReason::NoRule, None, None),
            };
        };
        let scopes = |only_class: bool| -> Vec<(u32, &[crate::policy::Grant])> {
            allows
                .iter()
                .filter_map(|&i| self.rules.get(i as usize).map(|r| (i, r)))
                .filter(|(_, r)| !only_class || class.accepted_by(r.max_class))
                .map(|(i, r)| (i, r.scopes.as_slice()))
                .collect()
        };
        let eligible = scopes(true);
        let requested = ask.scope.grants();
        let subject = literal_subject(ask.subject);
        let narrowed = narrow(requested, &eligible, subject);
        if narrowed.grants.is_empty() {
            // Would a faster class have been granted something?
            let class_bound = eligible.len() < allows.len()
                && !narrow(requested, &scopes(false), subject).grants.is_empty();
            let reason = if class_bound {
                ExchangeReason::ClassNotAllowed
            } else {
                ExchangeReason::ScopeNotAllowed
            };
            return Outcome::deny(reason, None, Some(first));
        }
        let text: Vec<String> = narrowed.grants.iter().map(|g| g.to_string()).collect();
        let Ok(granted) = Scope::new(text.join(" ")) else {
            return Outcome::deny(ExchangeReason::ScopeNotAllowed, None, Some(first));
        };
        Outcome {
            effect: Effect::Allow,
            reason: ExchangeReason::AllowRule,
            rule: narrowed.first_source,
            matched: narrowed.first_source,
            granted: Some(granted),
            truncated: narrowed.truncated,
        }
    }
}
