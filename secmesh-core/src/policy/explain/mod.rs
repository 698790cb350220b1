//! Explanations: for a deny, the rules that came closest and, for each, the first condition
//! that failed.
//!
//! [`Policy::decide`] stays lean: it finds the deciding rule through the index and says
//! nothing about the rules that did not match. [`Policy::explain`] is a separate call, made
//! only when someone asks (a deny to log, `secmesh policy check --explain`); it scans every
//! enforce-mode allow rule once (linear in the policy) and ranks them.
//!
//! - **allow**: nothing to explain; [`Explanation::closest`] is empty.
//! - **deny rule**: the deny rule decided; it is [`Explanation::rule`].
//! - **missing grant**: the first matching allow rule, with [`Failure::Grant`].
//! - **no rule**: up to [`MAX_CLOSEST`] allow rules, fewest failed conditions first, then most
//!   matched conditions, then file order; each with the first condition that failed, checked in
//!   the order subject, verb, object, caller, class, attributes.
//!
//! A rule's conditions are its subject, verb and object lists, plus its `callers`, its
//! `max_class` and each of its attributes when it sets them.
//!
//! # Example
//! ```
//! use secmesh_core::policy::{Condition, Failure, Policy, Reason, Request};
//! use secmesh_core::svo::{Object, Subject, Verb};
//!
//! let policy = Policy::from_toml(r#"
//! [[rule]]
//! id = "owners-read-own-orders"
//! effect = "allow"
//! subjects = ["user:*"]
//! verbs = ["read"]
//! objects = ["orders/{sub}/**"]
//! max_class = "fast"
//!
//! [[rule]]
//! id = "ops-read-all"
//! effect = "allow"
//! subjects = ["user:ops-*"]
//! verbs = ["*"]
//! objects = ["**"]
//! "#).unwrap();
//!
//! let alice: Subject = "user:alice".parse().unwrap();
//! let own: Object = "orders/user:alice/7".parse().unwrap();
//! let req = Request::new(&alice, &Verb::Read, &own); // no class given
//! assert_eq!(policy.decide(&req).reason(), Reason::NoRule);
//!
//! let why = policy.explain(&req);
//! let first = &why.closest()[0];
//! assert_eq!(first.rule(), "owners-read-own-orders");
//! assert_eq!(first.failure().condition(), Condition::Class);
//! assert!(matches!(first.failure(), Failure::Class { class: None, .. }));
//! assert_eq!((first.matched(), first.conditions()), (3, 4));
//! assert_eq!(why.closest()[1].failure().condition(), Condition::Subject);
//! println!("{why}");
//! ```

mod failure;
#[cfg(test)]
mod tests;

use std::fmt;

pub use failure::{Condition, Failure};

use super::engine::{Decision, Policy, Reason, Request};
use super::model::{Effect, Mode, Rule, RuleId};
use crate::class::ExpiryClass;

/// The most closest rules an explanation names.
pub const MAX_CLOSEST: usize = 3;

/// One rule that came close, with the first condition it failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Closest {
    rule: RuleId,
    index: usize,
    effect: Effect,
    matched: usize,
    conditions: usize,
    failure: Failure,
}

impl Closest {
    /// The rule's id.
    pub fn rule(&self) -> &str {
        self.rule.as_str()
    }

    /// The rule's id, shareable.
    pub fn rule_id(&self) -> &RuleId {
        &self.rule
    }

    /// The rule's position in file order, from 0.
    pub fn index(&self) -> usize {
        self.index
    }

    /// The rule's effect (always allow today: only allow rules are ranked).
    pub fn effect(&self) -> Effect {
        self.effect
    }

    /// How many of the rule's conditions the request met.
    pub fn matched(&self) -> usize {
        self.matched
    }

    /// How many conditions the rule has (subject, verb, object, and callers, max_class and
    /// each attribute when set).
    pub fn conditions(&self) -> usize {
        self.conditions
    }

    /// The first condition that failed.
    pub fn failure(&self) -> &Failure {
        &self.failure
    }
}

impl fmt::Display for Closest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "rule `{}` (#{}, {}, {} of {} conditions met): {}",
            self.rule,
            self.index + 1,
            self.effect,
            self.matched,
            self.conditions,
            self.failure
        )
    }
}

/// Why a request was decided the way it was, in more detail than a
/// [`Decision`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Explanation {
    effect: Effect,
    reason: Reason,
    rule: Option<RuleId>,
    closest: Vec<Closest>,
}

impl Explanation {
    /// Allow or deny (the same as the decision's).
    pub fn effect(&self) -> Effect {
        self.effect
    }

    /// The reason (the same as the decision's).
    pub fn reason(&self) -> Reason {
        self.reason
    }

    /// The deciding rule: the allow rule, or the deny rule that matched; `None` for "no rule"
    /// and "missing grant".
    pub fn rule(&self) -> Option<&str> {
        self.rule.as_ref().map(RuleId::as_str)
    }

    /// For "no rule": up to [`MAX_CLOSEST`] allow rules, closest first. For "missing grant":
    /// the allow rule that matched. Empty otherwise.
    pub fn closest(&self) -> &[Closest] {
        &self.closest
    }
}

impl fmt::Display for Explanation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.effect, self.reason)?;
        if let Some(r) = &self.rule {
            write!(f, " (rule `{r}`)")?;
        }
        match (self.reason, self.closest.is_empty()) {
            (Reason::NoRule, true) => f.write_str("; the policy has no allow rule"),
            (_, true) => Ok(()),
            (_, false) => {
                f.write_str("; closest:")?;
                for (i, c) in self.closest.iter().enumerate() {
                    write!(f, "\n  {}. {c}", i + 1)?;
                }
                Ok(())
            }
        }
    }
}

/// How a rule fared against a request: conditions met, failed, and the first failure.
struct Score {
    matched: usize,
    failed: usize,
    first: Option<FirstFailed>,
}

#[derive(Clone, Copy)]
enum FirstFailed {
    Subject,
    Verb,
    Object,
    Caller,
    Class,
    /// The index of the attribute condition in the rule.
    Attribute(usize),
}

fn score(rule: &Rule, req: &Request<'_>) -> Score {
    let subject = req.subject.as_str();
    let verb = req.verb.as_str();
    let object = req.object.as_str();
    let mut s = Score {
        matched: 0,
        failed: 0,
        first: None,
    };
    let mut check = |ok: bool, which: FirstFailed| {
        if ok {
            s.matched += 1;
        } else {
            s.failed += 1;
            s.first.get_or_insert(which);
        }
    };
    check(
        rule.subjects.iter().any(|g| g.matches(subject)),
        FirstFailed::Subject,
    );
    check(
        rule.verbs.iter().any(|v| v.matches(verb)),
        FirstFailed::Verb,
    );
    check(
        rule.objects.iter().any(|o| o.matches(object, subject)),
        FirstFailed::Object,
    );
    if let Some(callers) = &rule.callers {
        let ok = req
            .caller
            .is_some_and(|c| callers.iter().any(|g| g.matches(c)));
        check(ok, FirstFailed::Caller);
    }
    if let Some(max) = rule.max_class {
        check(
            req.class.is_some_and(|c| c.accepted_by(max)),
            FirstFailed::Class,
        );
    }
    for (i, (name, globs)) in rule.attributes.iter().enumerate() {
        let ok = req
            .attributes
            .iter()
            .any(|(n, v)| *n == &**name && globs.iter().any(|g| g.matches(v)));
        check(ok, FirstFailed::Attribute(i));
    }
    s
}

fn failure(rule: &Rule, req: &Request<'_>, first: FirstFailed) -> Failure {
    match first {
        FirstFailed::Subject => Failure::Subject {
            subject: req.subject.as_str().into(),
            subjects: rule.subjects.clone(),
        },
        FirstFailed::Verb => Failure::Verb {
            verb: req.verb.as_str().into(),
            verbs: rule.verbs.clone(),
        },
        FirstFailed::Object => Failure::Object {
            object: req.object.as_str().into(),
            objects: rule.objects.clone(),
        },
        FirstFailed::Caller => Failure::Caller {
            caller: req.caller.map(Into::into),
            callers: rule.callers.clone().unwrap_or_default(),
        },
        FirstFailed::Class => Failure::Class {
            class: req.class,
            // `Class` is only recorded for a rule with `max_class`.
            max_class: rule.max_class.unwrap_or(ExpiryClass::Fast),
        },
        FirstFailed::Attribute(i) => {
            let (name, globs) = rule
                .attributes
                .get(i)
                .map(|(n, g)| (n.clone(), g.clone()))
                .unwrap_or_default();
            let values = req
                .attributes
                .iter()
                .filter(|(n, _)| *n == &*name)
                .map(|(_, v)| Box::from(*v))
                .collect();
            Failure::Attribute {
                name,
                values,
                globs,
            }
        }
    }
}

impl Policy {
    /// Explain the decision [`decide`](Self::decide) makes for `req`: for a deny without a
    /// deciding deny rule, the allow rules that came closest and the first condition each
    /// failed (see the [module docs](self)).
    ///
    /// A separate call so that deciding never pays for it; it is linear in the number of
    /// rules. Explain with the same policy that decided (with a
    /// [`SharedPolicy`](super::SharedPolicy), take [`current`](super::SharedPolicy::current)
    /// once and use it for both).
    pub fn explain(&self, req: &Request<'_>) -> Explanation {
        self.explain_decision(req, &self.decide(req))
    }

    /// [`explain`](Self::explain) with the decision this policy already made for `req`.
    pub(crate) fn explain_decision(&self, req: &Request<'_>, decision: &Decision) -> Explanation {
        let mut out = Explanation {
            effect: decision.effect(),
            reason: decision.reason(),
            rule: decision.rule_id().cloned(),
            closest: Vec::new(),
        };
        let allow_rules = self
            .rules()
            .iter()
            .enumerate()
            .filter(|(_, r)| r.mode == Mode::Enforce && r.effect == Effect::Allow);
        match decision.reason() {
            Reason::AllowRule | Reason::DenyRule => {}
            Reason::MissingGrant => {
                // The first allow rule that matched: the one the grant check refused.
                if let Some((i, r)) = allow_rules.clone().find(|(_, r)| r.matches(req)) {
                    let conditions = score(r, req).matched;
                    out.closest.push(Closest {
                        rule: r.id.clone(),
                        index: i,
                        effect: r.effect,
                        matched: conditions,
                        conditions,
                        failure: Failure::Grant {
                            verb: req.verb.as_str().into(),
                            object: req.object.as_str().into(),
                        },
                    });
                }
            }
            Reason::NoRule => {
                // Keep the best MAX_CLOSEST by (fewest failed, most matched, file order)
                // while scanning; build the detailed failure only for those.
                let mut best: Vec<(usize, usize, usize, FirstFailed)> =
                    Vec::with_capacity(MAX_CLOSEST + 1);
                for (i, r) in allow_rules {
                    let s = score(r, req);
                    let Some(first) = s.first else {
                        // Cannot happen for "no rule" (the rule would have matched).
                        continue;
                    };
                    let key = (s.failed, usize::MAX - s.matched, i);
                    let at = best
                        .iter()
                        .position(|b| (b.0, b.1, b.2) > key)
                        .unwrap_or(best.len());
                    if at < MAX_CLOSEST {
                        best.insert(at, (key.0, key.1, key.2, first));
                        best.truncate(MAX_CLOSEST);
                    }
                }
                for (failed, inv_matched, i, first) in best {
                    let Some(r) = self.rules().get(i) else {
                        continue;
                    };
                    let matched = usize::MAX - inv_matched;
                    out.closest.push(Closest {
                        rule: r.id.clone(),
                        index: i,
                        effect: r.effect,
                        matched,
                        conditions: matched + failed,
                        failure: failure(r, req, first),
                    });
                }
            }
        }
        out
    }
}
