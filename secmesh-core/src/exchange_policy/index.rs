//! Candidate rules by requesting workload.
//!
//! A rule whose `workloads` globs are all exact is filed under each of them; the others (a
//! glob with `*`) go to one list every ask scans. An ask scans the list under its workload and
//! that list, merged in file order, so a policy of many per-workload rules costs one lookup and
//! a few rules per decision, not a scan of the file.

use std::collections::HashMap;

use super::model::{ExchangeRule, TokenTypePattern};
use crate::policy::Mode;

/// The rules of one mode, by workload.
#[derive(Debug, Default)]
pub(crate) struct Index {
    by_workload: HashMap<Box<str>, Vec<u32>>,
    wild: Vec<u32>,
}

impl Index {
    /// Index the rules of `mode`; `None` when there are none.
    pub(crate) fn build(rules: &[ExchangeRule], mode: Mode) -> Option<Index> {
        let mut ix = Index::default();
        let mut any = false;
        for (i, rule) in rules.iter().enumerate() {
            let Ok(i) = u32::try_from(i) else { break };
            if rule.mode != mode || !can_match(rule) {
                continue;
            }
            any = true;
            let exact: Option<Vec<&str>> = rule.workloads.iter().map(|g| g.exact()).collect();
            match exact {
                Some(workloads) => {
                    for w in workloads {
                        let list = ix.by_workload.entry(w.into()).or_default();
                        if list.last() != Some(&i) {
                            list.push(i);
                        }
                    }
                }
                None => ix.wild.push(i),
            }
        }
        any.then_some(ix)
    }

    /// Call `f` with each candidate rule for `workload`, in file order, until it says stop.
    pub(crate) fn for_each(&self, workload: &str, mut f: impl FnMut(u32) -> bool) {
        let mine: &[u32] = self.by_workload.get(workload).map_or(&[], |v| v);
        let (mut a, mut b) = (mine.iter().peekable(), self.wild.iter().peekable());
        loop {
            let next = match (a.peek(), b.peek()) {
                (Some(&&x), Some(&&y)) if x < y => a.next(),
                (Some(_), Some(_)) => b.next(),
                (Some(_), None) => a.next(),
                (None, Some(_)) => b.next(),
                (None, None) => return,
            };
            if let Some(&i) = next
                && !f(i)
            {
                return;
            }
        }
    }

    /// The candidates for any workload a rule with `workloads` covers: the wild list, and the
    /// list of its first workload when all of them are exact (a rule covering it must cover
    /// that one). For lint.
    pub(crate) fn coverers(&self, rule: &ExchangeRule) -> (&[u32], &[u32]) {
        let all_exact = rule.workloads.iter().all(|g| g.exact().is_some());
        let first = rule.workloads.first().and_then(|g| g.exact());
        let mine = match (all_exact, first) {
            (true, Some(w)) => self.by_workload.get(w).map_or(&[][..], |v| v),
            _ => &[],
        };
        (mine, &self.wild)
    }
}

/// Whether a rule can match at all: every list it requires is non-empty.
pub(crate) fn can_match(rule: &ExchangeRule) -> bool {
    !rule.workloads.is_empty()
        && !rule.subject_token_types.is_empty()
        && !rule.audiences.is_empty()
        && rule.issuers.as_ref().is_none_or(|i| !i.is_empty())
        && rule.subject_scopes.as_ref().is_none_or(|w| !w.is_empty())
        && rule.subjects.as_ref().is_none_or(|s| !s.is_empty())
}

/// Whether every type `narrow` matches, `wide` matches.
pub(crate) fn types_cover(wide: &[TokenTypePattern], narrow: &[TokenTypePattern]) -> bool {
    wide.contains(&TokenTypePattern::Any) || narrow.iter().all(|t| wide.contains(t))
}
