//! The compiled rule index: candidate rules by verb and by literal object prefix.
//!
//! Each rule is filed, once per (verb, object pattern), under its verb (or the any-verb tree)
//! and under the trie node reached by the pattern's leading literal segments. A decision walks
//! the request object's segments down the verb's tree and the any-verb tree, and only the rules
//! filed on that path are candidates; the rest cannot match. Candidate lists hold rule indices
//! in file order, so "the first matching allow" is the smallest matching index, found by
//! scanning each list only up to its first match.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use super::engine::Request;
use super::model::{Effect, Rule};
use super::pattern::VerbPattern;

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

#[derive(Debug, Default)]
struct Node {
    children: FnvMap<Box<str>, Node>,
    deny: Vec<u32>,
    allow: Vec<u32>,
}

impl Node {
    fn file(&mut self, prefix: &mut dyn Iterator<Item = &str>, effect: Effect, idx: u32) {
        let mut node = self;
        for seg in prefix {
            node = node.children.entry(seg.into()).or_default();
        }
        let list = match effect {
            Effect::Allow => &mut node.allow,
            Effect::Deny => &mut node.deny,
        };
        if list.last() != Some(&idx) {
            list.push(idx);
        }
    }
}

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
            for verb in &rule.verbs {
                let root = match verb {
                    VerbPattern::Any => &mut index.any_verb,
                    VerbPattern::Exact(v) => index.by_verb.entry(v.clone()).or_default(),
                };
                for object in &rule.objects {
                    root.file(&mut object.literal_prefix(), rule.effect, idx);
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
            scan(node, rules, req, effect, &mut best);
            if object.is_empty() {
                continue;
            }
            for seg in object.split('/') {
                match node.children.get(seg) {
                    Some(n) => node = n,
                    None => break,
                }
                scan(node, rules, req, effect, &mut best);
            }
        }
        (best != u32::MAX).then_some(best)
    }
}

fn scan(node: &Node, rules: &[Rule], req: &Request<'_>, effect: Effect, best: &mut u32) {
    let list = match effect {
        Effect::Allow => &node.allow,
        Effect::Deny => &node.deny,
    };
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
