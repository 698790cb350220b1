//! The events folded into the model in one pass, then every embedded transaction's tree built
//! from indexes: linear in the events (plus a sort of each transaction's few events and of
//! the transactions by time).
//!
//! Each event kept for the trees is a small fixed record ([`Ev`]) whose strings are indexes
//! into one string table; transactions are numbered as they are first seen, and their events
//! are grouped with a counting sort at the end, so no transaction's events are ever searched
//! for. A tree is built as `secmesh audit trace` builds it (a callee's `in` event under the
//! caller's `out` event whose span is its parent span; the rest are roots or calls without an
//! answer), with maps reused from one transaction to the next.

use std::collections::{BTreeMap, HashMap};

use secmesh_audit::event::{Decision, Direction};
use secmesh_core::{SpanId, TxnId};

use super::line::EventLine;
use super::model::{Counts, Denial, Edge, Limits, Model, Node, Strings, Txn, parse_time_us};
use super::tree::Scratch;

/// The service name of the audit queue's own events (drop and loss reports): not a node.
const QUEUE_SERVICE: &str = "secmesh-audit";

/// An event kept for the trees: strings as indexes, the time parsed once.
#[derive(Clone, Copy, Debug)]
pub(super) struct Ev {
    /// Microseconds since the epoch; `None` when the time cannot be read.
    pub(super) t: Option<i64>,
    pub(super) latency_us: u64,
    pub(super) span: Option<SpanId>,
    pub(super) parent: Option<SpanId>,
    /// The transaction's number.
    pub(super) txn: u32,
    pub(super) status: u16,
    pub(super) decision: Decision,
    pub(super) out: bool,
    pub(super) service: u32,
    pub(super) verb: u32,
    pub(super) object: u32,
    pub(super) rule: u32,
    pub(super) reason: u32,
    pub(super) sub: u32,
    pub(super) caller: u32,
}

/// A transaction seen: its id, its first time, its events.
struct TxnSeen {
    id: TxnId,
    first: Option<i64>,
    events: u32,
}

pub(crate) struct Aggregate {
    strings: Strings,
    events: u64,
    /// Requests handled, per service (string index).
    handled: HashMap<u32, Counts>,
    /// (caller as logged, callee service) -> counts; 0 is "no caller".
    calls: HashMap<(u32, u32), Counts>,
    /// out span -> the service that made the call.
    out_spans: HashMap<SpanId, u32>,
    /// caller identity -> a few parent spans of its calls (to learn which service it is).
    caller_spans: HashMap<u32, Vec<SpanId>>,
    kept: Vec<Ev>,
    txn_index: HashMap<TxnId, u32>,
    txns: Vec<TxnSeen>,
    capped: bool,
    /// Denials: time, then the row with string indexes into `strings`.
    denials: Vec<(Option<i64>, Denial)>,
    denials_total: u64,
    max_denials: usize,
    max_trace_events: usize,
}

impl Aggregate {
    pub(crate) fn new(limits: &Limits) -> Aggregate {
        Aggregate {
            strings: Strings::default(),
            events: 0,
            handled: HashMap::new(),
            calls: HashMap::new(),
            out_spans: HashMap::new(),
            caller_spans: HashMap::new(),
            kept: Vec::new(),
            txn_index: HashMap::new(),
            txns: Vec::new(),
            capped: false,
            denials: Vec::new(),
            denials_total: 0,
            max_denials: limits.max_denials,
            max_trace_events: limits.max_trace_events,
        }
    }

    pub(crate) fn add(&mut self, ev: EventLine<'_>) {
        self.events += 1;
        if ev.service == QUEUE_SERVICE {
            return;
        }
        let s = &mut self.strings;
        let service = s.id(&ev.service);
        let caller = s.opt(ev.caller.as_deref());
        let t = parse_time_us(&ev.time);
        match ev.dir {
            Direction::Out => {
                if let Some(span) = ev.span_id {
                    self.out_spans.insert(span, service);
                }
            }
            Direction::In => {
                self.handled.entry(service).or_default().add(ev.decision);
                if let (Some(p), true) = (ev.parent_span_id, caller != 0) {
                    let spans = self.caller_spans.entry(caller).or_default();
                    if spans.len() < 16 {
                        spans.push(p);
                    }
                }
                self.calls
                    .entry((caller, service))
                    .or_default()
                    .add(ev.decision);
                if ev.decision == Decision::Deny {
                    self.denial(&ev, t, service, caller);
                }
            }
        }
        let Some(id) = ev.txn else { return };
        if self.kept.len() >= self.max_trace_events {
            self.capped = true;
            return;
        }
        let next = u32::try_from(self.txns.len()).unwrap_or(u32::MAX);
        let txn = *self.txn_index.entry(id).or_insert(next);
        if txn == next {
            self.txns.push(TxnSeen {
                id,
                first: t,
                events: 0,
            });
        }
        if let Some(seen) = self.txns.get_mut(txn as usize) {
            seen.events += 1;
            seen.first = match (seen.first, t) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
        }
        let s = &mut self.strings;
        self.kept.push(Ev {
            t,
            latency_us: ev.latency_us.unwrap_or(0),
            span: ev.span_id,
            parent: ev.parent_span_id,
            txn,
            status: ev.status.unwrap_or(0),
            decision: ev.decision,
            out: ev.dir == Direction::Out,
            service,
            verb: s.opt(ev.verb.as_deref()),
            object: s.opt(ev.object.as_deref()),
            rule: s.opt(ev.rule.as_deref()),
            reason: s.opt(ev.reason.as_deref()),
            sub: s.opt(ev.sub.as_deref()),
            caller,
        });
    }

    fn denial(&mut self, ev: &EventLine<'_>, t: Option<i64>, service: u32, caller: u32) {
        self.denials_total += 1;
        // Keep the most recent: when full, drop the older half at once (amortized).
        if self.denials.len() >= self.max_denials.saturating_mul(2).max(1) {
            self.trim_denials();
        }
        let s = &mut self.strings;
        let row = Denial {
            at_us: 0,
            service,
            sub: s.opt(ev.sub.as_deref()),
            caller,
            verb: s.opt(ev.verb.as_deref()),
            object: s.opt(ev.object.as_deref()),
            reason: s.opt(ev.reason.as_deref()),
            rule: s.opt(ev.rule.as_deref()),
            txn: ev.txn,
        };
        self.denials.push((t, row));
    }

    fn trim_denials(&mut self) {
        self.denials
            .sort_by_key(|d| std::cmp::Reverse(d.0.unwrap_or(i64::MIN)));
        self.denials.truncate(self.max_denials);
    }

    /// The graph: nodes and edges.
    fn graph(&mut self, limits: &Limits) -> (Vec<Node>, Vec<Edge>) {
        let name = |i: u32| self.strings.get(i).to_owned();
        // Which service each caller identity is: the service whose out event's span is the
        // parent of the caller's calls (callers taken by name, so the result is stable).
        let mut callers: Vec<(String, &Vec<SpanId>)> = self
            .caller_spans
            .iter()
            .map(|(c, spans)| (name(*c), spans))
            .collect();
        callers.sort_by(|a, b| a.0.cmp(&b.0));
        let mut id_of: BTreeMap<String, String> = BTreeMap::new();
        let mut service_of: HashMap<String, String> = HashMap::new();
        for (caller, spans) in callers {
            if let Some(svc) = spans.iter().find_map(|s| self.out_spans.get(s)) {
                let svc = name(*svc);
                id_of.entry(svc.clone()).or_insert_with(|| caller.clone());
                service_of.insert(caller, svc);
            }
        }
        // Nodes: every service that logged (by name), then callers without a log, then the
        // outside.
        let mut handled: Vec<(String, Counts)> =
            self.handled.iter().map(|(s, c)| (name(*s), *c)).collect();
        handled.sort_by(|a, b| a.0.cmp(&b.0));
        let mut nodes: Vec<Node> = Vec::new();
        let mut index: HashMap<Who, usize> = HashMap::new();
        for (name, counts) in handled {
            index.insert(Who::Service(name.clone()), nodes.len());
            nodes.push(Node {
                id: id_of.get(&name).cloned(),
                name,
                kind: "service",
                handled: counts,
            });
        }
        let mut calls: Vec<((Option<String>, String), Counts)> = self
            .calls
            .iter()
            .map(|((c, s), n)| (((*c != 0).then(|| name(*c)), name(*s)), *n))
            .collect();
        calls.sort_by(|a, b| a.0.cmp(&b.0));
        let mut edges: BTreeMap<(usize, usize), Counts> = BTreeMap::new();
        let mut other_callers = 0usize;
        for ((caller, callee), counts) in calls {
            let from_key = match &caller {
                None => Who::Outside,
                Some(c) => match service_of.get(c) {
                    Some(svc) if index.contains_key(&Who::Service(svc.clone())) => {
                        Who::Service(svc.clone())
                    }
                    _ if index.contains_key(&Who::Caller(c.clone())) => Who::Caller(c.clone()),
                    _ if other_callers < limits.max_callers => {
                        other_callers += 1;
                        Who::Caller(c.clone())
                    }
                    _ => Who::Caller("(other callers)".to_owned()),
                },
            };
            let from = *index.entry(from_key.clone()).or_insert_with(|| {
                nodes.push(match &from_key {
                    Who::Outside => Node {
                        name: "(outside)".to_owned(),
                        id: None,
                        kind: "outside",
                        handled: Counts::default(),
                    },
                    Who::Caller(c) | Who::Service(c) => Node {
                        name: c.clone(),
                        id: c.starts_with("spiffe://").then(|| c.clone()),
                        kind: "caller",
                        handled: Counts::default(),
                    },
                });
                nodes.len() - 1
            });
            let Some(&to) = index.get(&Who::Service(callee)) else {
                continue;
            };
            let e = edges.entry((from, to)).or_default();
            e.allow += counts.allow;
            e.deny += counts.deny;
            e.error += counts.error;
        }
        let edges = edges
            .into_iter()
            .map(|((from, to), counts)| Edge { from, to, counts })
            .collect();
        (nodes, edges)
    }

    /// The most recent transactions, each with its tree.
    fn transactions(&self, limits: &Limits) -> Vec<Txn> {
        // The most recent first (ties: the higher id first).
        let mut order: Vec<u32> = (0..u32::try_from(self.txns.len()).unwrap_or(u32::MAX)).collect();
        let key = |i: &u32| {
            let t = &self.txns[*i as usize];
            std::cmp::Reverse((t.first.unwrap_or(i64::MIN), t.id))
        };
        if order.len() > limits.max_txns {
            order.select_nth_unstable_by_key(limits.max_txns, key);
            order.truncate(limits.max_txns);
        }
        order.sort_unstable_by_key(key);
        // Group the kept events of the embedded transactions (a counting sort).
        let mut slot = vec![u32::MAX; self.txns.len()];
        let mut offsets = Vec::with_capacity(order.len() + 1);
        let mut total = 0u32;
        for (k, &i) in order.iter().enumerate() {
            slot[i as usize] = u32::try_from(k).unwrap_or(u32::MAX);
            offsets.push(total);
            total += self.txns[i as usize].events;
        }
        offsets.push(total);
        let mut fill = offsets.clone();
        let mut grouped = vec![0u32; total as usize];
        for (e, ev) in self.kept.iter().enumerate() {
            let k = slot[ev.txn as usize];
            if k != u32::MAX {
                let at = &mut fill[k as usize];
                grouped[*at as usize] = u32::try_from(e).unwrap_or(u32::MAX);
                *at += 1;
            }
        }
        let mut scratch = Scratch::default();
        order
            .iter()
            .enumerate()
            .map(|(k, &i)| {
                let seen = &self.txns[i as usize];
                let events = &grouped[offsets[k] as usize..offsets[k + 1] as usize];
                let (rows, rows_omitted) =
                    scratch.tree(&self.kept, events, seen.first, limits.max_hops);
                Txn {
                    id: seen.id,
                    // Made relative to the model's base in `finish`.
                    start_us: seen.first.unwrap_or(i64::MIN),
                    rows,
                    rows_omitted,
                }
            })
            .collect()
    }

    pub(crate) fn finish(mut self, limits: &Limits) -> Model {
        let (nodes, edges) = self.graph(limits);
        let mut txns = self.transactions(limits);
        self.trim_denials();
        let mut denials: Vec<Denial> = Vec::with_capacity(self.denials.len());
        // Times relative to the earliest shown.
        let base = txns
            .iter()
            .map(|t| t.start_us)
            .filter(|t| *t != i64::MIN)
            .chain(self.denials.iter().filter_map(|d| d.0))
            .min()
            .unwrap_or(0);
        for t in &mut txns {
            t.start_us = if t.start_us == i64::MIN {
                0
            } else {
                t.start_us.saturating_sub(base)
            };
        }
        for (t, mut d) in std::mem::take(&mut self.denials) {
            d.at_us = t.map_or(-1, |t| t.saturating_sub(base));
            denials.push(d);
        }
        let strings = compact_strings(&self.strings, &mut txns, &mut denials);
        Model {
            audit_dir: String::new(),
            key_source: None,
            events: self.events,
            unreadable: 0,
            time_base_us: base,
            strings,
            nodes,
            edges,
            txns_total: self.txns.len(),
            txns,
            trace_events_capped: self.capped,
            denials,
            denials_total: self.denials_total,
            policies: Vec::new(),
            integrity: Vec::new(),
            generated: secmesh_audit::event::now_rfc3339(),
            warnings: Vec::new(),
        }
    }
}

/// Only the strings the embedded rows use, the most used first (their indexes are the
/// shortest in the page); the rows' indexes rewritten.
fn compact_strings(all: &Strings, txns: &mut [Txn], denials: &mut [Denial]) -> Strings {
    fn each(txns: &mut [Txn], denials: &mut [Denial], mut f: impl FnMut(&mut u32)) {
        for r in txns.iter_mut().flat_map(|t| t.rows.iter_mut()) {
            for i in [
                &mut r.service,
                &mut r.verb,
                &mut r.object,
                &mut r.rule,
                &mut r.reason,
                &mut r.sub,
                &mut r.caller,
            ] {
                f(i);
            }
        }
        for d in denials {
            for i in [
                &mut d.service,
                &mut d.sub,
                &mut d.caller,
                &mut d.verb,
                &mut d.object,
                &mut d.reason,
                &mut d.rule,
            ] {
                f(i);
            }
        }
    }
    let mut uses = vec![0u32; all.len()];
    each(txns, denials, |i| {
        if let Some(n) = uses.get_mut(*i as usize) {
            *n = n.saturating_add(1);
        }
    });
    let mut used: Vec<u32> = (1..u32::try_from(all.len()).unwrap_or(u32::MAX))
        .filter(|i| uses[*i as usize] > 0)
        .collect();
    used.sort_by_key(|i| (std::cmp::Reverse(uses[*i as usize]), *i));
    let mut out = Strings::default();
    let mut new_index = vec![0u32; all.len()];
    for i in used {
        new_index[i as usize] = out.id(all.get(i));
    }
    each(txns, denials, |i| {
        *i = new_index.get(*i as usize).copied().unwrap_or(0);
    });
    out
}

/// Node key while aggregating: a service by name, a caller by identity, or the outside.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Who {
    Service(String),
    Caller(String),
    Outside,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use secmesh_audit::event::AuditEvent;

    use super::*;
    use crate::report::model::{RowKind, to_script_json};

    const HOSTILE: &str = "</script><script>alert(1)</script>\u{2028}";

    fn span(n: u64) -> Option<SpanId> {
        Some(format!("{n:016x}").parse().unwrap())
    }

    /// One transaction gateway -> orders -> payments (payments denies), plus an unanswered
    /// call from payments and a call whose caller's record is missing.
    fn events() -> Vec<AuditEvent> {
        let txn: TxnId = "4bf92f3577b34da6a3ce929d0e0e4736".parse().unwrap();
        let mk =
            |service: &str, dir, s: u64, parent: Option<u64>, us: u32, caller: Option<&str>| {
                let mut e = AuditEvent::now(service, dir);
                e.time = format!("2026-12-03T10:00:00.{us:06}Z");
                e.txn = Some(txn);
                e.span_id = span(s);
                e.parent_span_id = parent.and_then(span);
                e.sub = Some(HOSTILE.to_owned());
                e.caller = caller.map(str::to_owned);
                e.verb = Some("read".into());
                e.object = Some(format!("{service}/1"));
                e.latency_us = Some(100);
                e
            };
        let mut pay = mk(
            "payments",
            Direction::In,
            5,
            Some(4),
            40,
            Some("spiffe://t/orders"),
        );
        pay.decision = Decision::Deny;
        pay.rule = Some("no-<b>".into());
        vec![
            // Out of order on purpose: the tree is built from times and spans.
            mk(
                "orders",
                Direction::In,
                3,
                Some(2),
                20,
                Some("spiffe://t/gateway"),
            ),
            mk("gateway", Direction::In, 1, None, 0, None),
            mk("gateway", Direction::Out, 2, Some(1), 10, Some("gateway")),
            mk("orders", Direction::Out, 4, Some(3), 30, Some("orders")),
            pay,
            mk("payments", Direction::Out, 6, Some(5), 50, Some("payments")),
            mk(
                "inventory",
                Direction::Out,
                8,
                Some(7),
                60,
                Some("inventory"),
            ),
        ]
    }

    fn model(limits: &Limits) -> Model {
        let mut agg = Aggregate::new(limits);
        for e in &events() {
            agg.add(EventLine::from(e));
        }
        agg.finish(limits)
    }

    #[test]
    fn counts_nodes_edges_and_denials() {
        let m = model(&Limits::default());
        assert_eq!((m.events, m.denials_total, m.txns_total), (7, 1, 1));
        let names: Vec<_> = m.nodes.iter().map(|n| (n.name.as_str(), n.kind)).collect();
        assert_eq!(
            names,
            [
                ("gateway", "service"),
                ("orders", "service"),
                ("payments", "service"),
                ("(outside)", "outside")
            ]
        );
        assert_eq!(m.nodes[0].id.as_deref(), Some("spiffe://t/gateway"));
        let edges: Vec<_> = m
            .edges
            .iter()
            .map(|e| (e.from, e.to, e.counts.allow, e.counts.deny))
            .collect();
        assert_eq!(edges, [(0, 1, 1, 0), (1, 2, 0, 1), (3, 0, 1, 0)]);
        let d = m.denials[0];
        assert_eq!(m.strings.get(d.rule), "no-<b>");
        assert_eq!((d.at_us, m.time_base_us % 1_000_000), (40, 0));
    }

    #[test]
    fn a_three_hop_tree_with_an_unanswered_call_and_an_orphan() {
        let m = model(&Limits::default());
        let t = &m.txns[0];
        let rows: Vec<_> = t
            .rows
            .iter()
            .map(|r| (r.depth, r.kind, m.strings.get(r.service), r.start_us))
            .collect();
        assert_eq!(
            rows,
            [
                (0, RowKind::Handled, "gateway", 0),
                (1, RowKind::Handled, "orders", 20),
                (2, RowKind::Handled, "payments", 40),
                (3, RowKind::Unanswered, "payments", 50),
                (0, RowKind::Orphan, "inventory", 60),
            ]
        );
        assert_eq!(
            (t.hops(), t.denied(), t.span_us(), t.start_us),
            (3, true, 160, 0)
        );
        assert_eq!(t.rows[2].code(), 2 * 16 + 1);

        // Capped: the rows past the limit are counted, not shown.
        let m = model(&Limits {
            max_hops: 2,
            ..Limits::default()
        });
        assert_eq!((m.txns[0].rows.len(), m.txns[0].rows_omitted), (2, 3));
    }

    /// The page's blob: the strings it names round-trip through the table, the most used
    /// first, and the hostile subject cannot close the script element.
    #[test]
    fn the_string_table_round_trips_and_hostile_text_stays_data() {
        let m = model(&Limits::default());
        let json = to_script_json(&m).unwrap();
        assert!(!json.contains(['<', '>', '&', '\u{2028}']), "{json}");
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        let strings: Vec<&str> = v["strings"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap())
            .collect();
        assert_eq!(strings.len(), m.strings.len());
        assert_eq!(strings[0], "");
        // Used by every row and the denial: the verb and the subject come first (equal uses:
        // in the order first seen).
        assert_eq!(&strings[1..3], ["read", HOSTILE]);
        let txn = v["txns"][0].as_array().unwrap();
        assert_eq!(txn[0], "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(txn.len(), 3 + 5 * 11);
        for (k, r) in m.txns[0].rows.iter().enumerate() {
            let at = |i: usize| txn[3 + k * 11 + i].as_u64().unwrap() as usize;
            assert_eq!(at(0) as u64, r.code());
            assert_eq!(strings[at(4)], m.strings.get(r.service));
            assert_eq!(strings[at(6)], m.strings.get(r.object));
            assert_eq!(strings[at(9)], HOSTILE);
        }
        let denial = v["denials"][0].as_array().unwrap();
        assert_eq!(strings[denial[7].as_u64().unwrap() as usize], "no-<b>");
        assert_eq!(denial[8], "4bf92f3577b34da6a3ce929d0e0e4736");
    }
}
