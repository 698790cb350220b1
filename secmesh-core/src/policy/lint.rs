//! Lint: rules that can never match, and rules that can never decide.
//!
//! - A rule with an empty `subjects`, `verbs`, `objects` or `callers` list never matches.
//! - An allow rule every request of which is also matched by a deny rule of the same mode is
//!   shadowed: deny overrides allow, so it can never allow.
//! - A rule every request of which is matched by an earlier rule of the same effect and mode
//!   never decides: the earlier one is always named instead.
//! - Advisory ([`FindingKind::is_advisory`]): a verb that no built-in classifier produces
//!   (HTTP `read`/`create`/`update`/`delete`, gRPC `call`) matches only requests of a custom
//!   classifier; declare such verbs with [`Policy::lint_report_with_verbs`].
//!
//! The inclusion test is conservative: it may miss a shadowed rule, it never reports one that
//! is not.
//!
//! Lint is not quadratic: rules are indexed the way the engine indexes them, and each rule is
//! tested only against the rules that could cover it (same verb or `*`, an object prefix on
//! its path, its subject or a subject glob), with a budget of [`MAX_LINT_WORK`] pattern tests
//! for policies whose rules all overlap ([`LintReport::is_complete`]).
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
use super::index::Index;
use super::model::{Effect, Mode, Rule, RuleId};
use super::pattern::VerbPattern;

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
    /// A verb that no built-in classifier produces
    /// ([`CLASSIFIED_VERBS`](crate::svo::CLASSIFIED_VERBS)): the rule matches it only for the
    /// requests of a custom classifier. Advisory: a typo (`reads`) or a custom verb.
    UnclassifiedVerb {
        /// The verb as the rule writes it.
        verb: Box<str>,
    },
}

impl FindingKind {
    /// Whether the finding is advisory (a warning about something that may be intended)
    /// rather than a rule that is dead: [`UnclassifiedVerb`](Self::UnclassifiedVerb).
    pub fn is_advisory(&self) -> bool {
        matches!(self, FindingKind::UnclassifiedVerb { .. })
    }
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
            FindingKind::UnclassifiedVerb { verb } => write!(
                f,
                "verb `{verb}` is produced by no built-in classifier ({}): only a custom \
                 classifier's requests can match it",
                crate::svo::CLASSIFIED_VERBS.join(", ")
            ),
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

/// The most work one lint does, in units of one pattern-to-pattern test (see
/// [`Policy::lint_report`]): an inclusion test of two rules costs the products of the
/// lengths of their lists (subjects, verbs, objects, callers, attributes), up to a million
/// for rules with lists of 1024 entries.
pub const MAX_LINT_WORK: usize = 20_000_000;

/// The most pattern-to-pattern tests an inclusion test of `d` and `r` makes.
fn cost(d: &Rule, r: &Rule) -> usize {
    let product = |a: usize, b: usize| a.saturating_mul(b);
    let callers = match (&d.callers, &r.callers) {
        (Some(a), Some(b)) => product(a.len(), b.len()),
        _ => 0,
    };
    let attributes: usize = d
        .attributes
        .iter()
        .map(|(_, g)| product(r.attributes.len(), g.len().max(1)))
        .fold(0, usize::saturating_add);
    [
        1,
        callers,
        attributes,
        product(d.verbs.len(), r.verbs.len()),
        product(d.objects.len(), r.objects.len()),
        product(d.subjects.len(), r.subjects.len()),
    ]
    .into_iter()
    .fold(0, usize::saturating_add)
}

/// The outcome of [`Policy::lint_report`]: the findings, and whether every coverage question
/// was answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LintReport {
    findings: Vec<Finding>,
    comparisons: usize,
    work: usize,
    complete: bool,
}

impl LintReport {
    /// The findings, in rule order.
    pub fn findings(&self) -> &[Finding] {
        &self.findings
    }

    /// The findings, in rule order.
    pub fn into_findings(self) -> Vec<Finding> {
        self.findings
    }

    /// How many rule-to-rule inclusion tests were made.
    pub fn comparisons(&self) -> usize {
        self.comparisons
    }

    /// The work spent on them, in pattern-to-pattern tests (at most the budget).
    pub fn work(&self) -> usize {
        self.work
    }

    /// Whether every rule was checked against every candidate that could cover it. When
    /// `false`, the budget of work ran out (a policy of very many rules that overlap
    /// on the same verbs, object prefixes and subjects): the findings are all true, but
    /// rules that never decide may be missing.
    pub fn is_complete(&self) -> bool {
        self.complete
    }
}

impl Policy {
    /// Lint the policy; findings come in rule order.
    pub fn lint(&self) -> Vec<Finding> {
        self.lint_report().into_findings()
    }

    /// Lint the policy with at most [`MAX_LINT_WORK`] units of work.
    ///
    /// Rules are indexed like the engine indexes them (by verb, by literal object prefix, by
    /// exact subject); a rule is tested only against the rules that share its first verb's
    /// tree, a node on its first object pattern's path and its first subject, which are the
    /// only ones that can cover it. Policies whose rules differ by verb, object prefix or
    /// subject lint in time linear in the number of rules; heavy overlap is bounded by the
    /// budget.
    pub fn lint_report(&self) -> LintReport {
        self.lint_with_budget(MAX_LINT_WORK)
    }

    /// [`lint_report`](Self::lint_report) with another budget of work (units of
    /// [`MAX_LINT_WORK`]).
    pub fn lint_with_budget(&self, max_work: usize) -> LintReport {
        self.lint_with(max_work, &[])
    }

    /// [`lint_report`](Self::lint_report), with `custom_verbs` declared as produced by the
    /// service's own classifiers: no [`UnclassifiedVerb`](FindingKind::UnclassifiedVerb)
    /// finding for them.
    pub fn lint_report_with_verbs(&self, custom_verbs: &[&str]) -> LintReport {
        self.lint_with(MAX_LINT_WORK, custom_verbs)
    }

    fn lint_with(&self, max_work: usize, custom_verbs: &[&str]) -> LintReport {
        let rules = self.rules();
        let live = |r: &Rule| never_matches(r).is_none();
        let enforce = Index::build(rules, |r| live(r) && r.mode == Mode::Enforce);
        let shadow = Index::build(rules, |r| live(r) && r.mode == Mode::Shadow);
        let mut comparisons = 0usize;
        let mut work = 0usize;
        let mut complete = true;
        let mut out = Vec::new();
        for (i, r) in rules.iter().enumerate() {
            let finding = |kind| Finding {
                rule: r.id.clone(),
                index: i,
                kind,
            };
            for v in &r.verbs {
                if let VerbPattern::Exact(v) = v
                    && !crate::svo::CLASSIFIED_VERBS.contains(&&**v)
                    && !custom_verbs.contains(&&**v)
                {
                    out.push(finding(FindingKind::UnclassifiedVerb { verb: v.clone() }));
                }
            }
            if let Some(why) = never_matches(r) {
                out.push(finding(FindingKind::NeverMatches { why }));
                continue;
            }
            let (Some(verb), Some(object), Some(subject)) =
                (r.verbs.first(), r.objects.first(), r.subjects.first())
            else {
                continue;
            };
            let index = match r.mode {
                Mode::Enforce => &enforce,
                Mode::Shadow => &shadow,
            };
            let mut first_covering = |effect: Effect, below: usize| {
                let below = u32::try_from(below).unwrap_or(u32::MAX);
                index.first_candidate(verb, object, subject.exact(), effect, below, |d| {
                    let Some(d) = rules.get(d as usize) else {
                        return false;
                    };
                    let w = work.saturating_add(cost(d, r));
                    if w > max_work {
                        complete = false;
                        return false;
                    }
                    work = w;
                    comparisons += 1;
                    covers(d, r)
                })
            };
            if r.effect == Effect::Allow
                && let Some(d) =
                    first_covering(Effect::Deny, rules.len()).and_then(|d| rules.get(d as usize))
            {
                out.push(finding(FindingKind::ShadowedByDeny { by: d.id.clone() }));
                continue;
            }
            if let Some(d) = first_covering(r.effect, i).and_then(|d| rules.get(d as usize)) {
                out.push(finding(FindingKind::NeverDecides { by: d.id.clone() }));
            }
        }
        LintReport {
            findings: out,
            comparisons,
            work,
            complete,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The quadratic lint this module replaced: every rule against every rule.
    fn lint_naive(policy: &Policy) -> Vec<Finding> {
        let rules = policy.rules();
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

    fn list(items: &[&str]) -> String {
        let quoted: Vec<String> = items.iter().map(|s| format!("'{s}'")).collect();
        format!("[{}]", quoted.join(", "))
    }

    prop_compose! {
        fn arb_rule()(
            effect in prop::sample::select(vec!["allow", "deny"]),
            shadow in prop::bool::weighted(0.2),
            subjects in prop::collection::vec(
                prop::sample::select(vec!["*", "user:*", "user:alice", "user:bob", "*:bob", "svc:a"]), 0..3),
            verbs in prop::collection::vec(prop::sample::select(vec!["*", "read", "update"]), 0..3),
            objects in prop::collection::vec(prop::sample::select(vec![
                "**", "a/**", "a/b", "a/*", "a/b/**", "a/b/c", "b/{sub}/**", "b/*/c", "*/b", "b",
            ]), 0..3),
            callers in prop::option::weighted(0.3, prop::collection::vec(
                prop::sample::select(vec!["*", "spiffe://m/*", "spiffe://m/x"]), 0..2)),
            class in prop::option::weighted(0.3, prop::sample::select(vec!["fast", "medium", "slow"])),
            role in prop::option::weighted(0.2, prop::collection::vec(
                prop::sample::select(vec!["*", "admin", "ops*"]), 0..2)),
        ) -> String {
            let mut body = format!(
                "effect = '{effect}'\nsubjects = {}\nverbs = {}\nobjects = {}\n",
                list(&subjects), list(&verbs), list(&objects)
            );
            if shadow {
                body.push_str("mode = 'shadow'\n");
            }
            if let Some(c) = callers {
                body.push_str(&format!("callers = {}\n", list(&c)));
            }
            if let Some(c) = class {
                body.push_str(&format!("max_class = '{c}'\n"));
            }
            if let Some(r) = role {
                body.push_str(&format!("attributes = {{ role = {} }}\n", list(&r)));
            }
            body
        }
    }

    proptest! {
        /// The indexed lint finds exactly what the quadratic one found.
        #[test]
        fn indexed_lint_equals_the_quadratic_one(
            bodies in prop::collection::vec(arb_rule(), 0..24)
        ) {
            let text: String = bodies
                .iter()
                .enumerate()
                .map(|(i, b)| format!("[[rule]]\nid = 'r{i}'\n{b}\n"))
                .collect();
            let policy = Policy::from_toml(&text).unwrap();
            let report = policy.lint_report();
            prop_assert!(report.is_complete());
            let naive = lint_naive(&policy);
            prop_assert_eq!(report.findings(), naive.as_slice());
        }
    }

    /// A policy of `n` rules: distinct subjects and objects, a deny every tenth rule, every
    /// hundredth rule (from #2) a copy of the allow before it (never decides) and every 250th
    /// (from #5) an allow under the deny five rules before (shadowed).
    fn generated(n: usize) -> String {
        let mut text = String::new();
        for i in 0..n {
            let effect = if i % 10 == 0 { "deny" } else { "allow" };
            let (sub, obj) = if i % 100 == 2 {
                (i - 1, format!("orders/{}/**", i - 1))
            } else if i % 250 == 5 {
                (i - 5, format!("orders/{}/x", i - 5))
            } else {
                (i, format!("orders/{i}/**"))
            };
            text.push_str(&format!(
                "[[rule]]\nid = 'r{i}'\neffect = '{effect}'\nsubjects = ['user:u{sub}', 'user:v{sub}']\nverbs = ['read']\nobjects = ['{obj}']\n\n"
            ));
        }
        text
    }

    #[test]
    fn large_policies_lint_in_linear_comparisons() {
        // Twice the parser's limit of rules: compiled from rules directly.
        let half = |start: usize| {
            let text = generated(20_000);
            let chunks: Vec<&str> = text.split("[[rule]]").skip(1).collect();
            Policy::from_toml(
                &chunks[start..start + 10_000]
                    .iter()
                    .map(|c| format!("[[rule]]{c}"))
                    .collect::<String>(),
            )
            .unwrap()
            .rules()
            .to_vec()
        };
        let mut rules = half(0);
        rules.extend(half(10_000));
        let policy = Policy::from_rules(rules);
        let report = policy.lint_report();
        assert!(report.is_complete());
        // Each rule is compared with the few that share its path, not with 20,000 others.
        assert!(report.comparisons() < 40_000, "{}", report.comparisons());
        let shadowed = report
            .findings()
            .iter()
            .filter(|f| matches!(f.kind(), FindingKind::ShadowedByDeny { .. }))
            .count();
        let never = report
            .findings()
            .iter()
            .filter(|f| matches!(f.kind(), FindingKind::NeverDecides { .. }))
            .count();
        assert_eq!(
            (shadowed, never),
            (80, 200),
            "{:?}",
            &report.findings()[..4]
        );
        // The same answer as the quadratic lint on a prefix small enough for it.
        let small = Policy::from_toml(&generated(1_200)).unwrap();
        assert_eq!(small.lint(), lint_naive(&small));
    }

    #[test]
    fn overlapping_rules_stop_at_the_budget() {
        // Every rule on the same path, none covering another (distinct callers).
        let text: String = (0..300)
            .map(|i| {
                format!(
                    "[[rule]]\nid = 'r{i}'\neffect = 'allow'\nsubjects = ['*']\nverbs = ['read']\nobjects = ['**']\ncallers = ['spiffe://m/c{i}']\n\n"
                )
            })
            .collect();
        let policy = Policy::from_toml(&text).unwrap();
        let full = policy.lint_report();
        assert!(full.is_complete() && full.findings().is_empty());
        assert_eq!(full.comparisons(), 300 * 299 / 2);
        // Each test costs 5 units: one per list pair and one for the rule.
        assert_eq!(full.work(), 5 * 300 * 299 / 2);
        let cut = policy.lint_with_budget(1000);
        assert!(!cut.is_complete());
        assert_eq!((cut.comparisons(), cut.work()), (200, 1000));
        assert!(cut.findings().is_empty());
        // Long lists cost what they cost: rules of 1024 subjects that all share the path and
        // all differ in their last subject stop at the budget, not after 10^11 glob tests.
        let subjects: Vec<String> = (0..1023).map(|i| format!("'user:s{i}'")).collect();
        let subjects = subjects.join(",");
        let text: String = (0..200)
            .map(|i| {
                format!(
                    "[[rule]]\nid = 'r{i}'\neffect = 'allow'\nsubjects = [{subjects},'user:x{i}']\nverbs = ['read']\nobjects = ['**']\n\n"
                )
            })
            .collect();
        let policy = Policy::from_toml(&text).unwrap();
        let cut = policy.lint_with_budget(20_000_000);
        assert!(!cut.is_complete());
        assert!(cut.comparisons() < 20, "{}", cut.comparisons());
    }

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

    #[test]
    fn warns_on_verbs_no_classifier_produces() {
        let policy = Policy::from_toml(
            r#"
[[rule]]
id = "http"
effect = "allow"
subjects = ["*"]
verbs = ["read", "create", "update", "delete", "*"]
objects = ["a/**"]

[[rule]]
id = "grpc"
effect = "allow"
subjects = ["*"]
verbs = ["call"]
objects = ["inventory.v1.Inventory/*"]

[[rule]]
id = "typo"
effect = "allow"
subjects = ["*"]
verbs = ["reads", "approve"]
objects = ["b/**"]
"#,
        )
        .unwrap();
        let found = policy.lint();
        let verbs: Vec<(&str, &FindingKind)> = found.iter().map(|f| (f.rule(), f.kind())).collect();
        assert_eq!(
            verbs,
            [
                (
                    "typo",
                    &FindingKind::UnclassifiedVerb {
                        verb: "reads".into()
                    }
                ),
                (
                    "typo",
                    &FindingKind::UnclassifiedVerb {
                        verb: "approve".into()
                    }
                ),
            ]
        );
        assert!(found.iter().all(|f| f.kind().is_advisory()));
        assert!(found[0].to_string().starts_with(
            "rule `typo` (#3): verb `reads` is produced by no built-in classifier (read, create, \
             update, delete, call)"
        ));
        let declared = policy.lint_report_with_verbs(&["approve"]);
        assert_eq!(declared.findings().len(), 1);
        assert_eq!(
            declared.findings()[0].kind(),
            &FindingKind::UnclassifiedVerb {
                verb: "reads".into()
            }
        );
    }
}
