//! Lint: exchange rules that can never match or never add anything, and rules worth a second
//! look.
//!
//! - A rule with an empty `workloads`, `subject_token_types`, `audiences`, `issuers` or
//!   `subjects` list never matches; an allow rule with empty `scopes` never grants.
//! - An allow rule whose every ask a deny rule of the same mode also matches is shadowed: deny
//!   wins, so it can never allow.
//! - A deny rule whose every ask an earlier deny rule of the same mode matches never decides.
//! - An allow rule whose conditions another allow rule of the same mode covers, whose grants
//!   are all within that rule's grants and whose `max_class` is no slower adds nothing (of two
//!   identical rules, the later one is reported).
//! - Advisory ([`ExchangeFindingKind::is_advisory`]): a token type URI that is none of the
//!   draft's types (a typo or an agreed private type), an allow rule for any workload
//!   (`workloads = ["*"]`), a grant of `**` from the root (every object).
//!
//! The inclusion tests are conservative: a finding is never wrong, a rule may be missed. Each
//! rule is tested only against the rules that could cover it (the same exact workload, or a
//! workload glob), within a budget of [`MAX_LINT_WORK`] pair tests
//! ([`ExchangeLintReport::is_complete`]).
//!
//! # Example
//! ```
//! use secmesh_core::exchange_policy::{ExchangeFindingKind, ExchangePolicy};
//!
//! let policy = ExchangePolicy::from_toml(r#"
//! [[exchange]]
//! id = "no-batch"
//! effect = "deny"
//! workloads = ["spiffe://mesh.test/batch-*"]
//! subject_token_types = ["*"]
//! audiences = ["*"]
//!
//! [[exchange]]
//! id = "batch-ledger"
//! effect = "allow"
//! workloads = ["spiffe://mesh.test/batch-ledger"]
//! subject_token_types = ["self_signed"]
//! audiences = ["mesh.test"]
//! scopes = ["read:ledger/**"]
//! "#).unwrap();
//! let report = policy.lint();
//! assert!(report.is_complete());
//! let f = &report.findings()[0];
//! assert_eq!(f.rule(), "batch-ledger");
//! assert!(matches!(f.kind(), ExchangeFindingKind::ShadowedByDeny { by } if by.as_str() == "no-batch"));
//! ```

use std::fmt;

use super::decide::ExchangePolicy;
use super::index::{Index, can_match, types_cover};
use super::model::{AudiencePattern, ExchangeRule};
use crate::policy::{Effect, Glob, Grant, RuleId};

/// The most rule pairs lint tests.
pub const MAX_LINT_WORK: usize = 1 << 20;

/// What lint found about a rule.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ExchangeFindingKind {
    /// The rule never matches (or an allow rule never grants); `why` names the empty list.
    NeverMatches {
        /// E.g. "empty `workloads`".
        why: &'static str,
    },
    /// An allow rule whose every ask a deny rule also matches.
    ShadowedByDeny {
        /// The deny rule.
        by: RuleId,
    },
    /// A deny rule whose every ask an earlier deny rule matches.
    NeverDecides {
        /// The earlier rule.
        by: RuleId,
    },
    /// An allow rule that another allow rule makes redundant: the other matches every ask it
    /// matches, with grants that cover all of its grants and a class no faster.
    ScopesWithin {
        /// The other rule.
        by: RuleId,
    },
    /// Advisory: a subject token type URI that is none of the draft's types.
    UnknownTokenType {
        /// The URI.
        uri: Box<str>,
    },
    /// Advisory: an allow rule for any workload (`workloads = ["*"]`).
    AnyWorkload,
    /// Advisory: a grant of `**` from the root, e.g. `read:**`.
    RootDoubleStar {
        /// The grant.
        grant: Box<str>,
    },
}

impl ExchangeFindingKind {
    /// Whether the finding is a warning about something that may be intended, rather than a
    /// rule that is dead or redundant.
    pub fn is_advisory(&self) -> bool {
        matches!(
            self,
            ExchangeFindingKind::UnknownTokenType { .. }
                | ExchangeFindingKind::AnyWorkload
                | ExchangeFindingKind::RootDoubleStar { .. }
        )
    }
}

/// One lint finding.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExchangeFinding {
    rule: RuleId,
    index: usize,
    kind: ExchangeFindingKind,
}

impl ExchangeFinding {
    /// The rule's id.
    pub fn rule(&self) -> &str {
        self.rule.as_str()
    }

    /// The rule's position in file order, from 0.
    pub fn index(&self) -> usize {
        self.index
    }

    /// What was found.
    pub fn kind(&self) -> &ExchangeFindingKind {
        &self.kind
    }
}

impl fmt::Display for ExchangeFinding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "exchange rule `{}` (#{}): ", self.rule, self.index + 1)?;
        match &self.kind {
            ExchangeFindingKind::NeverMatches { why } => write!(f, "can never match: {why}"),
            ExchangeFindingKind::ShadowedByDeny { by } => {
                write!(f, "shadowed by deny rule `{by}`: can never allow")
            }
            ExchangeFindingKind::NeverDecides { by } => {
                write!(f, "covered by earlier deny rule `{by}`: never decides")
            }
            ExchangeFindingKind::ScopesWithin { by } => write!(
                f,
                "rule `{by}` matches every exchange it matches and allows all it grants: \
                 it adds nothing"
            ),
            ExchangeFindingKind::UnknownTokenType { uri } => write!(
                f,
                "subject token type `{uri}` is none of the draft's types (a typo?)"
            ),
            ExchangeFindingKind::AnyWorkload => {
                f.write_str("allows any workload (`workloads = [\"*\"]`)")
            }
            ExchangeFindingKind::RootDoubleStar { grant } => {
                write!(f, "grant `{grant}` covers every object")
            }
        }
    }
}

/// What lint found, and whether it looked at every rule pair it meant to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExchangeLintReport {
    findings: Vec<ExchangeFinding>,
    complete: bool,
    work: usize,
}

impl ExchangeLintReport {
    /// The findings, by rule in file order.
    pub fn findings(&self) -> &[ExchangeFinding] {
        &self.findings
    }

    /// Whether every candidate pair was tested ([`MAX_LINT_WORK`] was not reached).
    pub fn is_complete(&self) -> bool {
        self.complete
    }

    /// The rule pairs tested.
    pub fn work(&self) -> usize {
        self.work
    }
}

fn globs_cover(wide: &[Glob], narrow: &[Glob]) -> bool {
    narrow.iter().all(|n| wide.iter().any(|w| w.covers(n)))
}

fn opt_globs_cover(wide: Option<&[Glob]>, narrow: Option<&[Glob]>) -> bool {
    match (wide, narrow) {
        (None, _) => true,
        (Some(w), Some(n)) => globs_cover(w, n),
        (Some(_), None) => false,
    }
}

/// Whether `wide` matches every ask `narrow` matches (conservative).
fn conditions_cover(wide: &ExchangeRule, narrow: &ExchangeRule) -> bool {
    let audiences = wide.audiences.contains(&AudiencePattern::Any)
        || narrow.audiences.iter().all(|a| wide.audiences.contains(a));
    let issuers = match (&wide.issuers, &narrow.issuers) {
        (None, _) => true,
        (Some(w), Some(n)) => n.iter().all(|i| w.contains(i)),
        (Some(_), None) => false,
    };
    // A rule requiring subject scope words matches only asks carrying them: it covers a rule
    // that requires at least the same words.
    let words = match (&wide.subject_scopes, &narrow.subject_scopes) {
        (None, _) => true,
        (Some(w), Some(n)) => w.iter().all(|x| n.contains(x)),
        (Some(_), None) => false,
    };
    audiences
        && issuers
        && words
        && types_cover(&wide.subject_token_types, &narrow.subject_token_types)
        && opt_globs_cover(wide.subjects.as_deref(), narrow.subjects.as_deref())
        && globs_cover(&wide.workloads, &narrow.workloads)
}

fn grants_within(narrow: &[Grant], wide: &[Grant]) -> bool {
    narrow.iter().all(|n| {
        wide.iter()
            .any(|w| w.verb().covers(n.verb()) && w.object().covers(n.object()))
    })
}

/// Whether allow rule `other` makes allow rule `rule` redundant.
fn adds_nothing(rule: &ExchangeRule, other: &ExchangeRule) -> bool {
    rule.max_class <= other.max_class
        && conditions_cover(other, rule)
        && grants_within(&rule.scopes, &other.scopes)
}

fn never_matches(rule: &ExchangeRule) -> Option<&'static str> {
    if rule.workloads.is_empty() {
        Some("empty `workloads`")
    } else if rule.subject_token_types.is_empty() {
        Some("empty `subject_token_types`")
    } else if rule.audiences.is_empty() {
        Some("empty `audiences`")
    } else if rule.issuers.as_ref().is_some_and(Vec::is_empty) {
        Some("empty `issuers`")
    } else if rule.subjects.as_ref().is_some_and(Vec::is_empty) {
        Some("empty `subjects`")
    } else if rule.subject_scopes.as_ref().is_some_and(Vec::is_empty) {
        Some("empty `subject_scopes`")
    } else if rule.effect == Effect::Allow && rule.scopes.is_empty() {
        Some("empty `scopes`: grants nothing")
    } else {
        None
    }
}

impl ExchangePolicy {
    /// Lint the policy; see the [lint module](super::lint).
    pub fn lint(&self) -> ExchangeLintReport {
        let rules = self.rules();
        let mut findings = Vec::new();
        let mut work = 0usize;
        let mut complete = true;
        for (i, rule) in rules.iter().enumerate() {
            let mut found = |kind| {
                findings.push(ExchangeFinding {
                    rule: rule.id.clone(),
                    index: i,
                    kind,
                })
            };
            if let Some(why) = never_matches(rule) {
                found(ExchangeFindingKind::NeverMatches { why });
                continue;
            }
            if let Some(by) = self.covered_by(i, rule, &mut work, &mut complete) {
                found(by);
            }
            for t in rule.subject_token_types.iter().filter(|t| !t.is_known()) {
                found(ExchangeFindingKind::UnknownTokenType {
                    uri: t.as_str().into(),
                });
            }
            if rule.effect == Effect::Allow && rule.workloads.iter().any(|g| g.as_str() == "*") {
                found(ExchangeFindingKind::AnyWorkload);
            }
            for g in rule.scopes.iter().filter(|g| g.object().as_str() == "**") {
                found(ExchangeFindingKind::RootDoubleStar {
                    grant: g.to_string().into(),
                });
            }
        }
        ExchangeLintReport {
            findings,
            complete,
            work,
        }
    }

    /// The first rule that makes rule `i` dead or redundant.
    fn covered_by(
        &self,
        i: usize,
        rule: &ExchangeRule,
        work: &mut usize,
        complete: &mut bool,
    ) -> Option<ExchangeFindingKind> {
        let rules = self.rules();
        let index: &Index = self.index(rule.mode)?;
        let (mine, wild) = index.coverers(rule);
        for &j in mine.iter().chain(wild) {
            let j = j as usize;
            let Some(other) = rules.get(j).filter(|_| j != i) else {
                continue;
            };
            if *work >= MAX_LINT_WORK {
                *complete = false;
                return None;
            }
            *work += 1;
            if other.mode != rule.mode || !can_match(other) {
                continue;
            }
            match (rule.effect, other.effect) {
                (Effect::Allow, Effect::Deny) if conditions_cover(other, rule) => {
                    return Some(ExchangeFindingKind::ShadowedByDeny {
                        by: other.id.clone(),
                    });
                }
                (Effect::Deny, Effect::Deny) if j < i && conditions_cover(other, rule) => {
                    return Some(ExchangeFindingKind::NeverDecides {
                        by: other.id.clone(),
                    });
                }
                (Effect::Allow, Effect::Allow)
                    if adds_nothing(rule, other) && (j < i || !adds_nothing(other, rule)) =>
                {
                    return Some(ExchangeFindingKind::ScopesWithin {
                        by: other.id.clone(),
                    });
                }
                _ => {}
            }
        }
        None
    }
}
