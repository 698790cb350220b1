//! One transaction's tree as waterfall rows, built as `secmesh audit trace` builds it: a
//! callee's `in` event under the caller's `out` event whose span is its parent span; `in`
//! events with no such caller are roots; `out` events no `in` answers are calls without an
//! answer, and those whose caller's `in` is missing are orphans. The events are sorted by
//! time and grouped by parent span in runs, found through maps that are reused from one
//! transaction to the next: linear in the events after the sort.

use std::collections::{HashMap, HashSet};

use secmesh_core::SpanId;

use super::aggregate::Ev;
use super::model::{Row, RowKind};

/// How deep a tree is followed (as `audit trace` does).
const MAX_DEPTH: u32 = 64;

/// Maps reused from one transaction's tree to the next.
#[derive(Default)]
pub(super) struct Scratch {
    ins: Vec<u32>,
    outs: Vec<u32>,
    out_spans: HashSet<SpanId>,
    /// Parent span -> the range of `outs` (sorted by parent, then time) it holds.
    outs_of: HashMap<Option<SpanId>, (u32, u32)>,
    /// Parent span -> the next unused and the end of its range in `ins` (callees).
    ins_of: HashMap<SpanId, (u32, u32)>,
    rows: Vec<(u32, RowKind, u32)>,
    omitted: usize,
    max: usize,
}

impl Scratch {
    /// The rows of one transaction's tree (depth first), as `audit trace` prints it, and how
    /// many were left out past `max`.
    pub(super) fn tree(
        &mut self,
        evs: &[Ev],
        events: &[u32],
        first: Option<i64>,
        max: usize,
    ) -> (Vec<Row>, usize) {
        self.ins.clear();
        self.outs.clear();
        self.out_spans.clear();
        self.outs_of.clear();
        self.ins_of.clear();
        self.rows.clear();
        self.omitted = 0;
        self.max = max;
        let ev = |i: u32| &evs[i as usize];
        for &i in events {
            if ev(i).out {
                self.outs.push(i);
                if let Some(s) = ev(i).span {
                    self.out_spans.insert(s);
                }
            } else {
                self.ins.push(i);
            }
        }
        // Time order (stable: file order among equal times), then grouped by parent.
        let time = |i: &u32| ev(*i).t.unwrap_or(i64::MIN);
        self.outs.sort_by_key(time);
        self.ins.sort_by_key(time);
        let mut roots = Vec::new();
        let mut callees = Vec::new();
        for &i in &self.ins {
            match ev(i).parent {
                Some(p) if self.out_spans.contains(&p) => callees.push(i),
                _ => roots.push(i),
            }
        }
        let mut outs = std::mem::take(&mut self.outs);
        outs.sort_by_key(|i| ev(*i).parent);
        ranges(
            &outs,
            |i| ev(i).parent,
            |k, r| {
                self.outs_of.insert(k, r);
            },
        );
        callees.sort_by_key(|i| ev(*i).parent);
        ranges(
            &callees,
            |i| ev(i).parent,
            |k, r| {
                if let Some(k) = k {
                    self.ins_of.insert(k, r);
                }
            },
        );
        for &r in &roots {
            self.hop(evs, &outs, &callees, r, 0);
        }
        // Calls whose caller's record is missing, in time order.
        let mut orphans: Vec<u32> = outs
            .iter()
            .copied()
            .filter(|i| self.outs_of.contains_key(&ev(*i).parent))
            .collect();
        orphans.sort_by_key(time);
        for i in orphans {
            self.push(0, RowKind::Orphan, i);
        }
        self.outs = outs;
        let start = first.unwrap_or(0);
        let rows = self
            .rows
            .iter()
            .map(|&(depth, kind, i)| {
                let e = ev(i);
                Row {
                    depth,
                    kind,
                    decision: e.decision,
                    start_us: e.t.map_or(0, |t| u64::try_from(t - start).unwrap_or(0)),
                    latency_us: e.latency_us,
                    status: e.status,
                    service: e.service,
                    verb: e.verb,
                    object: e.object,
                    rule: e.rule,
                    reason: e.reason,
                    sub: e.sub,
                    caller: e.caller,
                }
            })
            .collect();
        (rows, self.omitted)
    }

    fn push(&mut self, depth: u32, kind: RowKind, i: u32) {
        if self.rows.len() >= self.max {
            self.omitted += 1;
        } else {
            self.rows.push((depth, kind, i));
        }
    }

    fn hop(&mut self, evs: &[Ev], outs: &[u32], callees: &[u32], i: u32, depth: u32) {
        self.push(depth, RowKind::Handled, i);
        let span = evs[i as usize].span;
        if depth >= MAX_DEPTH || span.is_none() {
            return;
        }
        let Some((from, to)) = self.outs_of.remove(&span) else {
            return;
        };
        for &o in &outs[from as usize..to as usize] {
            let callee = evs[o as usize].span.and_then(|s| {
                let r = self.ins_of.get_mut(&s)?;
                (r.0 < r.1).then(|| {
                    r.0 += 1;
                    callees[r.0 as usize - 1]
                })
            });
            match callee {
                Some(c) => self.hop(evs, outs, callees, c, depth + 1),
                None => self.push(depth + 1, RowKind::Unanswered, o),
            }
        }
    }
}

/// Call `f` with each run of equal keys in `sorted`: the key and the run's range.
fn ranges<K: PartialEq + Copy>(
    sorted: &[u32],
    key: impl Fn(u32) -> K,
    mut f: impl FnMut(K, (u32, u32)),
) {
    let mut start = 0usize;
    while start < sorted.len() {
        let k = key(sorted[start]);
        let mut end = start + 1;
        while end < sorted.len() && key(sorted[end]) == k {
            end += 1;
        }
        f(
            k,
            (
                u32::try_from(start).unwrap_or(u32::MAX),
                u32::try_from(end).unwrap_or(u32::MAX),
            ),
        );
        start = end;
    }
}
