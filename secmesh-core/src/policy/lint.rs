//! Lint: rules that can never match, and rules that can never decide.
//!
//! - A rule with an empty `subjects`, `verbs`, `objects` or `callers` list never matches.
//! - An allow rule every request of which is also matched by a deny rule of the same mode is
//!   shadowed: deny overrides allow, so it can never allow.
//! - A rule every request of which is matched by an earlier rule of the same effect and mode
//!   never decides: the earlier one is always named instead.
//!
//! The inclusion test is conservative: it may miss a shadowed rule, it never reports one that
//! is not.
//!
//! # Example
//! ```
//! use secmesh_core::policy::{FindingKind, Policy};
//!
//! let policy = Policy::from_toml(r#"
//! [[rule]]
//! id = "no-admin"
//! effect = "deny"
//! subjects = ["*"]
//! verbs = ["*"]
//! objects = ["admin/**"]
//!
//! [[rule]]
//! id = "admins"
//! effect = "allow"
//! subjects = ["user:*"]
//! verbs = ["read"]
//! objects = ["admin/users/*"]
//!
//! [[rule]]
//! id = "nothing"
//! effect = "allow"
//! subjects = []
//! verbs = ["read"]
//! objects = ["x"]
//! "#).unwrap();
//! let findings = policy.lint();
//! assert_eq!(findings.len(), 2);
//! assert_eq!(findings[0].rule(), "admins");
//! assert!(matches!(findings[0].kind(), FindingKind::ShadowedByDeny { by } if by.as_str() == "no-admin"));
//! assert!(matches!(findings[1].kind(), FindingKind::NeverMatches { .. }));
//! ```

use std::fmt;

use super::engine::Policy;
use super::model::{Effect, Rule, RuleId};

/// What lint found about a rule.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum FindingKind {
    /// The rule can never match; `why` names the empty list.
    NeverMatches {
        /// The reason, e.g. "empty `verbs`".
        why: &'static str,
    },
    /// An allow rule whose every request a deny rule also matches.
    ShadowedByDeny {
        /// The deny rule.
        by: RuleId,
    },
    /// A rule whose every request an earlier rule of the same effect and mode matches.
    NeverDecides {
        /// The earlier rule.
        by: RuleId,
    },
}

/// One lint finding.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    rule: RuleId,
    index: usize,
    kind: FindingKind,
}

impl Finding {
    /// The rule's id.
    pub fn rule(&self) -> &str {
        self.rule.as_str()
    }

    /// The rule's position in file order, from 0.
    pub fn index(&self) -> usize {
        self.index
    }

    /// What was found.
    pub fn kind(&self) -> &FindingKind {
        &self.kind
    }
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "rule `{}` (#{}): ", self.rule, self.index + 1)?;
        match &self.kind {
            FindingKind::NeverMatches { why } => write!(f, "can never match: {why}"),
            FindingKind::ShadowedByDeny { by } => {
                write!(f, "shadowed by deny rule `{by}`: can never allow")
            }
            FindingKind::NeverDecides { by } => {
                write!(f, "covered by earlier rule `{by}`: never decides")
            }
        }
    }
}

fn never_matches(r: &Rule) -> Option<&'static str> {
    if r.subjects.is_empty() {
        Some("empty `subjects`")
    } else if r.verbs.is_empty() {
        Some("empty `verbs`")
    } else if r.objects.is_empty() {
        Some("empty `objects`")
    } else if r.callers.as_ref().is_some_and(Vec::is_empty) {
        Some("empty `callers`")
    } else if r.attributes.iter().any(|(_, g)| g.is_empty()) {
        Some("an empty list in `attributes`")
    } else {
        None
    }
}

fn all_covered<T>(mine: &[T], theirs: &[T], covers: impl Fn(&T, &T) -> bool) -> bool {
    theirs.iter().all(|t| mine.iter().any(|m| covers(m, t)))
}

/// Whether every request `r` matches, `d` matches too (conservatively).
fn covers(d: &Rule, r: &Rule) -> bool {
    let class_ok = match (d.max_class, r.max_class) {
        (None, _) => true,
        (Some(_), None) => false,
        (Some(dm), Some(rm)) => rm <= dm,
    };
    let callers_ok = match (&d.callers, &r.callers) {
        (None, _) => true,
        (Some(_), None) => false,
        (Some(dc), Some(rc)) => all_covered(dc, rc, |a, b| a.covers(b)),
    };
    // Every attribute `d` requires, `r` requires too, with values `d` accepts.
    let attributes_ok = d.attributes.iter().all(|(name, dg)| {
        r.attributes
            .iter()
            .any(|(n, rg)| n == name && all_covered(dg, rg, |a, b| a.covers(b)))
    });
    class_ok
        && callers_ok
        && attributes_ok
        && all_covered(&d.verbs, &r.verbs, |a, b| a.covers(b))
        && all_covered(&d.objects, &r.objects, |a, b| a.covers(b))
        && all_covered(&d.subjects, &r.subjects, |a, b| a.covers(b))
}

impl Policy {
    /// Lint the policy; findings come in rule order.
    pub fn lint(&self) -> Vec<Finding> {
        let rules = self.rules();
        let mut out = Vec::new();
        for (i, r) in rules.iter().enumerate() {
            let finding = |kind| Finding {
                rule: r.id.clone(),
                index: i,
                kind,
            };
            if let Some(why) = never_matches(r) {
                out.push(finding(FindingKind::NeverMatches { why }));
                continue;
            }
            let live = |d: &&Rule| d.mode == r.mode && never_matches(d).is_none();
            if r.effect == Effect::Allow
                && let Some(d) = rules
                    .iter()
                    .filter(live)
                    .find(|d| d.effect == Effect::Deny && covers(d, r))
            {
                out.push(finding(FindingKind::ShadowedByDeny { by: d.id.clone() }));
                continue;
            }
            if let Some(d) = rules[..i]
                .iter()
                .filter(live)
                .find(|d| d.effect == r.effect && covers(d, r))
            {
                out.push(finding(FindingKind::NeverDecides { by: d.id.clone() }));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lint(text: &str) -> Vec<String> {
        Policy::from_toml(text)
            .unwrap()
            .lint()
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    fn rule(id: &str, effect: &str, body: &str) -> String {
        format!("[[rule]]\nid = \"{id}\"\neffect = \"{effect}\"\n{body}\n")
    }

    #[test]
    fn clean_policy() {
        let text = rule(
            "a",
            "allow",
            "subjects=['user:*']\nverbs=['read']\nobjects=['orders/*']",
        ) + &rule(
            "b",
            "deny",
            "subjects=['user:bob']\nverbs=['read']\nobjects=['orders/*']",
        );
        assert!(lint(&text).is_empty());
    }

    #[test]
    fn never_match() {
        for body in [
            "subjects=[]\nverbs=['read']\nobjects=['a']",
            "subjects=['*']\nverbs=[]\nobjects=['a']",
            "subjects=['*']\nverbs=['read']\nobjects=[]",
            "subjects=['*']\nverbs=['read']\nobjects=['a']\ncallers=[]",
            "subjects=['*']\nverbs=['read']\nobjects=['a']\nattributes={role=[]}",
        ] {
            let found = lint(&rule("a", "allow", body));
            assert_eq!(found.len(), 1);
            assert!(found[0].contains("can never match"), "{found:?}");
        }
    }

    #[test]
    fn shadowed_and_redundant() {
        let text = rule(
            "allow-1",
            "allow",
            "subjects=['user:*']\nverbs=['read']\nobjects=['a/**']",
        ) + &rule(
            "allow-2",
            "allow",
            "subjects=['user:alice']\nverbs=['read']\nobjects=['a/b/*']\nmax_class='fast'",
        ) + &rule(
            "deny",
            "deny",
            "subjects=['*']\nverbs=['*']\nobjects=['a/b/**']\ncallers=['spiffe://x/*']",
        ) + &rule(
            "allow-3",
            "allow",
            "subjects=['*']\nverbs=['update']\nobjects=['a/b/c']\ncallers=['spiffe://x/y']",
        ) + &rule(
            "allow-4",
            "allow",
            "subjects=['*']\nverbs=['update']\nobjects=['a/b/c']\ncallers=['spiffe://x/y']\nmode='shadow'",
        );
        let found = lint(&text);
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(found[0].starts_with("rule `allow-2` (#2): covered by earlier rule `allow-1`"));
        assert!(found[1].starts_with("rule `allow-3` (#4): shadowed by deny rule `deny`"));
    }

    #[test]
    fn attributes_narrow_coverage() {
        let deny = |attrs: &str| {
            rule(
                "deny",
                "deny",
                &format!("subjects=['*']\nverbs=['*']\nobjects=['**']\nattributes={attrs}"),
            )
        };
        let allow = |attrs: &str| {
            rule(
                "allow",
                "allow",
                &format!("subjects=['*']\nverbs=['read']\nobjects=['a']\nattributes={attrs}"),
            )
        };
        assert_eq!(
            lint(&(deny("{role=['*']}") + &allow("{role=['x'], team=['y']}"))).len(),
            1
        );
        assert_eq!(
            lint(&(deny("{role=['x*']}") + &allow("{role=['xy']}"))).len(),
            1
        );
        assert!(lint(&(deny("{role=['x']}") + &allow("{}"))).is_empty());
        assert!(lint(&(deny("{role=['x']}") + &allow("{role=['x', 'y']}"))).is_empty());
        assert!(lint(&(deny("{role=['x'], team=['y']}") + &allow("{role=['x']}"))).is_empty());
    }

    #[test]
    fn conditions_narrow_coverage() {
        // The deny needs a caller and a fast class; the allow does not: not shadowed.
        let text = rule(
            "deny",
            "deny",
            "subjects=['*']\nverbs=['*']\nobjects=['**']\ncallers=['*']\nmax_class='fast'",
        ) + &rule(
            "allow",
            "allow",
            "subjects=['*']\nverbs=['read']\nobjects=['a']",
        );
        assert!(lint(&text).is_empty());
        let text = rule(
            "deny",
            "deny",
            "subjects=['*']\nverbs=['*']\nobjects=['**']\nmax_class='medium'",
        ) + &rule(
            "allow",
            "allow",
            "subjects=['*']\nverbs=['read']\nobjects=['a']\nmax_class='fast'",
        );
        assert_eq!(lint(&text).len(), 1);
    }
}
