//! The compiled rule index: candidate rules by verb and by literal object prefix.
//!
//! Each rule is filed, once per (verb, object pattern), under its verb (or the any-verb tree)
//! and under the trie node reached by the pattern's leading literal segments. A decision walks
//! the request object's segments down the verb's tree and the any-verb tree, and only the rules
//! filed on that path are candidates; the rest cannot match. Candidate lists hold rule indices
//! in file order, so "the first matching allow" is the smallest matching index, found by
//! scanning each list only up to its first match. Within a node, rules whose subjects are all
//! exact (no `*`) are filed by subject, so per-subject rules cost one lookup, not a scan.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use super::engine::Request;
use super::model::{Effect, Rule};
use super::pattern::{ObjectPattern, VerbPattern};

/// FNV-1a: fast for the short keys here (verbs and path segments). The keys come from the
/// policy, so lookups with request data cannot degrade the table.
#[derive(Default)]
struct Fnv(u64);

impl Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        let mut h = if self.0 == 0 {
            0xcbf2_9ce4_8422_2325
        } else {
            self.0
        };
        for b in bytes {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        self.0 = h;
    }
}

type FnvMap<K, V> = HashMap<K, V, BuildHasherDefault<Fnv>>;

/// Candidate rules of one effect at one node, in file order.
#[derive(Debug, Default)]
struct Lists {
    /// Rules with at least one subject glob that is not exact.
    any_subject: Vec<u32>,
    /// Rules whose subject globs are all exact, under each of those subjects.
    by_subject: FnvMap<Box<str>, Vec<u32>>,
}

fn push(list: &mut Vec<u32>, idx: u32) {
    if list.last() != Some(&idx) {
        list.push(idx);
    }
}

impl Lists {
    /// File `rule`; `spread` is how many (verb, object) nodes it is filed at: its exact
    /// subjects multiply that, and past [`MAX_FILINGS`] it goes to `any_subject` instead.
    fn file(&mut self, rule: &Rule, idx: u32, spread: usize) {
        let exact: Option<Vec<&str>> = rule.subjects.iter().map(|g| g.exact()).collect();
        match exact {
            Some(subjects)
                if !subjects.is_empty() && subjects.len().saturating_mul(spread) <= MAX_FILINGS =>
            {
                for s in subjects {
                    push(self.by_subject.entry(s.into()).or_default(), idx);
                }
            }
            _ => push(&mut self.any_subject, idx),
        }
    }

    fn scan(&self, rules: &[Rule], req: &Request<'_>, best: &mut u32) {
        scan(&self.any_subject, rules, req, best);
        if !self.by_subject.is_empty()
            && let Some(list) = self.by_subject.get(req.subject.as_str())
        {
            scan(list, rules, req, best);
        }
    }
}

#[derive(Debug, Default)]
struct Node {
    children: FnvMap<Box<str>, Node>,
    deny: Lists,
    allow: Lists,
}

impl Node {
    fn file(
        &mut self,
        prefix: &mut dyn Iterator<Item = &str>,
        rule: &Rule,
        idx: u32,
        spread: usize,
    ) {
        let mut node = self;
        for seg in prefix {
            node = node.children.entry(seg.into()).or_default();
        }
        match rule.effect {
            Effect::Allow => node.allow.file(rule, idx, spread),
            Effect::Deny => node.deny.file(rule, idx, spread),
        }
    }

    fn scan(&self, rules: &[Rule], req: &Request<'_>, effect: Effect, best: &mut u32) {
        match effect {
            Effect::Allow => self.allow.scan(rules, req, best),
            Effect::Deny => self.deny.scan(rules, req, best),
        }
    }
}

/// The most places one rule is filed at: (verb, object pattern) pairs, times its subjects
/// when they are all exact. A rule with more (lists of up to 1024 verbs, objects and subjects
/// would make a billion) is filed once, at the root of the any-verb tree (or under no subject),
/// where every request looks, so that building the index stays linear in the size of the
/// policy; `matches` still decides.
const MAX_FILINGS: usize = 256;

/// The index over the rules of one mode.
#[derive(Debug, Default)]
pub(crate) struct Index {
    by_verb: FnvMap<Box<str>, Node>,
    any_verb: Node,
}

impl Index {
    /// Index the rules of `rules` (all of them, in file order) for which `keep` holds.
    pub(crate) fn build(rules: &[Rule], keep: impl Fn(&Rule) -> bool) -> Index {
        let mut index = Index::default();
        for (i, rule) in rules.iter().enumerate() {
            if !keep(rule) {
                continue;
            }
            // MAX_RULES keeps indices far below u32::MAX.
            let idx = u32::try_from(i).unwrap_or(u32::MAX);
            let spread = rule.verbs.len().saturating_mul(rule.objects.len());
            if spread > MAX_FILINGS {
                // Filed once where every request looks: a candidate for all of them, checked
                // in full by `matches`, instead of thousands of filings.
                index
                    .any_verb
                    .file(&mut std::iter::empty(), rule, idx, usize::MAX);
                continue;
            }
            for verb in &rule.verbs {
                let root = match verb {
                    VerbPattern::Any => &mut index.any_verb,
                    VerbPattern::Exact(v) => index.by_verb.entry(v.clone()).or_default(),
                };
                for object in &rule.objects {
                    root.file(&mut object.literal_prefix(), rule, idx, spread);
                }
            }
        }
        index
    }

    /// The index of the first rule in file order with `effect` that matches `req`.
    pub(crate) fn first_match(
        &self,
        rules: &[Rule],
        req: &Request<'_>,
        effect: Effect,
    ) -> Option<u32> {
        let mut best = u32::MAX;
        let object = req.object.as_str();
        let trees = [self.by_verb.get(req.verb.as_str()), Some(&self.any_verb)];
        for root in trees.into_iter().flatten() {
            let mut node = root;
            node.scan(rules, req, effect, &mut best);
            if object.is_empty() {
                continue;
            }
            for seg in object.split('/') {
                match node.children.get(seg) {
                    Some(n) => node = n,
                    None => break,
                }
                node.scan(rules, req, effect, &mut best);
            }
        }
        (best != u32::MAX).then_some(best)
    }
}

impl Lists {
    /// The candidate lists for a subject: the rules with a subject glob that is not exact, and
    /// (when the subject is one exact string) the rules filed under it.
    fn for_subject<'a>(&'a self, exact_subject: Option<&str>) -> [Option<&'a Vec<u32>>; 2] {
        let by = exact_subject.and_then(|s| self.by_subject.get(s));
        [Some(&self.any_subject), by]
    }
}

impl Index {
    /// The smallest rule index below `below` with `effect`, filed under a verb tree that can
    /// hold a rule covering `verb` (its own and the any-verb tree; the any-verb tree alone for
    /// `*`), at a node on the path of `object`'s literal prefix,
    /// for which `pred` holds. `exact_subject` is the subject when it is one exact string:
    /// rules whose subjects are all exact can only cover that, and are looked up by it.
    ///
    /// Every rule that covers a rule with that first verb, first object pattern and first
    /// subject is among the candidates, so lint asks `pred` (the full inclusion test) only of
    /// rules that share the path, not of every rule.
    pub(crate) fn first_candidate(
        &self,
        verb: &VerbPattern,
        object: &ObjectPattern,
        exact_subject: Option<&str>,
        effect: Effect,
        below: u32,
        mut pred: impl FnMut(u32) -> bool,
    ) -> Option<u32> {
        let mut best = below;
        let own = match verb {
            VerbPattern::Exact(v) => self.by_verb.get(&**v),
            VerbPattern::Any => None,
        };
        for root in [own, Some(&self.any_verb)].into_iter().flatten() {
            let mut node = Some(root);
            let mut path = object.literal_prefix();
            while let Some(n) = node {
                let lists = match effect {
                    Effect::Allow => &n.allow,
                    Effect::Deny => &n.deny,
                };
                for list in lists.for_subject(exact_subject).into_iter().flatten() {
                    for &i in list {
                        if i >= best {
                            break;
                        }
                        if pred(i) {
                            best = i;
                            break;
                        }
                    }
                }
                node = path.next().and_then(|seg| n.children.get(seg));
            }
        }
        (best < below).then_some(best)
    }
}

/// Lower `best` to the first rule of `list` (sorted) below it that matches.
fn scan(list: &[u32], rules: &[Rule], req: &Request<'_>, best: &mut u32) {
    for &i in list {
        if i >= *best {
            return;
        }
        if rules.get(i as usize).is_some_and(|r| r.matches(req)) {
            *best = i;
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::policy::{Effect, Policy, Request};
    use crate::svo::{Object, Subject, Verb};

    /// Rules with 1024 verbs, 1024 objects and 1024 exact subjects would be filed a billion
    /// times each; they are filed once and still decide exactly.
    #[test]
    fn rules_with_long_lists_are_filed_once_and_decide_exactly() {
        let list = |f: &dyn Fn(usize) -> String| {
            (0..1024)
                .map(|i| format!("'{}'", f(i)))
                .collect::<Vec<_>>()
                .join(",")
        };
        let verbs = list(&|i| format!("v{i}"));
        let objects = list(&|i| format!("o{i}/x"));
        let subjects = list(&|i| format!("user:u{i}"));
        let mut text = String::new();
        for r in 0..20 {
            let effect = if r == 19 { "deny" } else { "allow" };
            text.push_str(&format!(
                "[[rule]]\nid = 'r{r}'\neffect = '{effect}'\nsubjects = [{subjects}]\nverbs = [{verbs}]\nobjects = [{objects}]\ncallers = ['c{r}']\n\n"
            ));
        }
        // And one small rule filed the usual way.
        text.push_str("[[rule]]\nid = 'small'\neffect = 'allow'\nsubjects = ['user:u5']\nverbs = ['read']\nobjects = ['o5/**']\n");
        let policy = Policy::from_toml(&text).unwrap();
        let sub: Subject = "user:u1023".parse().unwrap();
        let verb: Verb = "v1023".parse().unwrap();
        let obj: Object = "o1023/x".parse().unwrap();
        let decide = |caller: &str, sub: &Subject, verb: &Verb, obj: &Object| {
            let d = policy.decide(&Request::new(sub, verb, obj).with_caller(caller));
            (d.effect(), d.rule().map(str::to_owned))
        };
        assert_eq!(
            decide("c7", &sub, &verb, &obj),
            (Effect::Allow, Some("r7".to_owned()))
        );
        assert_eq!(decide("c19", &sub, &verb, &obj).0, Effect::Deny);
        assert_eq!(decide("c20", &sub, &verb, &obj).0, Effect::Deny);
        let other: Object = "o1024/x".parse().unwrap();
        assert_eq!(decide("c7", &sub, &verb, &other).0, Effect::Deny);
        let u5: Subject = "user:u5".parse().unwrap();
        let read: Verb = "read".parse().unwrap();
        let o5: Object = "o5/a".parse().unwrap();
        assert_eq!(
            decide("c0", &u5, &read, &o5),
            (Effect::Allow, Some("small".to_owned()))
        );
        // Lint compares such rules at a million pattern tests a pair: it stops at its budget.
        let report = policy.lint_report();
        assert!(!report.is_complete() && report.work() <= crate::policy::lint::MAX_LINT_WORK);
    }
}
