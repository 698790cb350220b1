//! Trace reconstruction: one transaction's path through every service, from their logs.
//!
//! Events of the transaction are collected from all the files given. A callee's `in` event is
//! attached under the caller's `out` event whose `span_id` is the callee's `parent_span_id`
//! (the span the propagate layer sent in `traceparent`); an `in` event with no such caller is a
//! root (the edge). The result renders as an indented tree or serializes to JSON. Building is
//! O(n log n) in the number of events (a sort and hash lookups), rendering linear.
//!
//! # Example
//! ```
//! use secmesh_audit::event::{AuditEvent, Decision, Direction};
//! use secmesh_audit::trace::build;
//! use secmesh_core::{SpanId, TxnId};
//!
//! let txn: TxnId = "4bf92f3577b34da6a3ce929d0e0e4736".parse().unwrap();
//! let span = |s: &str| Some(s.parse::<SpanId>().unwrap());
//! let mut gw_in = AuditEvent::now("gateway", Direction::In);
//! gw_in.span_id = span("00000000000000a1");
//! let mut gw_out = AuditEvent::now("gateway", Direction::Out);
//! gw_out.span_id = span("00000000000000b1");
//! gw_out.parent_span_id = span("00000000000000a1");
//! let mut orders_in = AuditEvent::now("orders", Direction::In);
//! orders_in.span_id = span("00000000000000c1");
//! orders_in.parent_span_id = span("00000000000000b1");
//! orders_in.decision = Decision::Deny;
//! for e in [&mut gw_in, &mut gw_out, &mut orders_in] { e.txn = Some(txn); }
//!
//! let tree = build(txn, vec![gw_in, gw_out, orders_in]);
//! let text = tree.render();
//! assert!(text.starts_with("gateway"));
//! assert!(text.contains("\n    orders"), "{text}");
//! ```

use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt::Write as _;

use secmesh_core::TxnId;
use serde::Serialize;

use crate::event::{AuditEvent, Decision, Direction};

/// One service's handling of a request, with the calls it made.
#[derive(Clone, Debug, Serialize)]
pub struct Hop {
    /// The `in` event.
    #[serde(rename = "in")]
    pub inbound: AuditEvent,
    /// The calls made while handling it.
    pub calls: Vec<Call>,
}

/// One outgoing call and, when the callee logged it, its handling.
#[derive(Clone, Debug, Serialize)]
pub struct Call {
    /// The `out` event.
    #[serde(rename = "out")]
    pub outbound: AuditEvent,
    /// The callee's side.
    pub callee: Option<Hop>,
}

/// A transaction's path.
#[derive(Clone, Debug, Serialize)]
pub struct TraceTree {
    /// The transaction.
    pub txn: TxnId,
    /// Requests with no caller in the logs (the edge).
    pub roots: Vec<Hop>,
    /// Outgoing calls whose caller's `in` event is not in the logs.
    pub orphan_calls: Vec<Call>,
}

/// Build the tree of `txn` from events (any order, any services).
pub fn build(txn: TxnId, events: impl IntoIterator<Item = AuditEvent>) -> TraceTree {
    let mut ins: Vec<AuditEvent> = Vec::new();
    let mut outs: Vec<AuditEvent> = Vec::new();
    for ev in events.into_iter().filter(|e| e.txn == Some(txn)) {
        match ev.dir {
            Direction::In => ins.push(ev),
            Direction::Out => outs.push(ev),
        }
    }
    ins.sort_by(|a, b| a.time.cmp(&b.time));
    outs.sort_by(|a, b| a.time.cmp(&b.time));
    // out events by the span they belong to (their parent: the caller's in span).
    let mut outs_by_parent: HashMap<Option<secmesh_core::SpanId>, Vec<AuditEvent>> = HashMap::new();
    for o in outs {
        outs_by_parent.entry(o.parent_span_id).or_default().push(o);
    }
    // in events by their parent span (the caller's out span), in time order.
    let mut ins_by_parent: HashMap<secmesh_core::SpanId, VecDeque<AuditEvent>> = HashMap::new();
    let mut roots_in = Vec::new();
    let out_spans: HashSet<_> = outs_by_parent
        .values()
        .flatten()
        .filter_map(|o| o.span_id)
        .collect();
    for i in ins {
        match i.parent_span_id {
            Some(p) if out_spans.contains(&p) => ins_by_parent.entry(p).or_default().push_back(i),
            _ => roots_in.push(i),
        }
    }
    fn hop(
        inbound: AuditEvent,
        outs: &mut HashMap<Option<secmesh_core::SpanId>, Vec<AuditEvent>>,
        ins: &mut HashMap<secmesh_core::SpanId, VecDeque<AuditEvent>>,
        depth: usize,
    ) -> Hop {
        let mut calls = Vec::new();
        if depth < 64 && inbound.span_id.is_some() {
            for o in outs.remove(&inbound.span_id).unwrap_or_default() {
                let callee = o
                    .span_id
                    .and_then(|s| ins.get_mut(&s))
                    .and_then(VecDeque::pop_front)
                    .map(|i| hop(i, outs, ins, depth + 1));
                calls.push(Call {
                    outbound: o,
                    callee,
                });
            }
        }
        Hop { inbound, calls }
    }
    let roots = roots_in
        .into_iter()
        .map(|i| hop(i, &mut outs_by_parent, &mut ins_by_parent, 0))
        .collect();
    let orphan_calls = outs_by_parent
        .into_values()
        .flatten()
        .map(|o| Call {
            outbound: o,
            callee: None,
        })
        .collect();
    TraceTree {
        txn,
        roots,
        orphan_calls,
    }
}

fn describe(ev: &AuditEvent) -> String {
    let decision = match ev.decision {
        Decision::Allow => "allow",
        Decision::Deny => "deny",
        Decision::Error => "error",
    };
    let mut s = format!(
        "{} {} {}",
        ev.service,
        // An unclassified request (no policy verb/object) is named by its method and path.
        ev.verb.as_deref().or(ev.method.as_deref()).unwrap_or("-"),
        ev.object.as_deref().or(ev.path.as_deref()).unwrap_or("-")
    );
    let _ = write!(s, " -> {decision}");
    if let Some(r) = ev.rule.as_deref().or(ev.reason.as_deref()) {
        let _ = write!(s, " ({r})");
    }
    if let Some(st) = ev.status {
        let _ = write!(s, " {st}");
    }
    if let Some(l) = ev.latency_us {
        let _ = write!(s, " {:.1}ms", l as f64 / 1000.0);
    }
    if let Some(sub) = &ev.sub {
        let _ = write!(s, " sub={sub}");
    }
    if let Some(c) = &ev.caller {
        let _ = write!(s, " caller={c}");
    }
    s
}

impl TraceTree {
    /// The tree as indented text, one line per request handled.
    pub fn render(&self) -> String {
        fn walk(h: &Hop, depth: usize, out: &mut String) {
            let _ = writeln!(out, "{}{}", "    ".repeat(depth), describe(&h.inbound));
            for c in &h.calls {
                match &c.callee {
                    Some(callee) => walk(callee, depth + 1, out),
                    None => {
                        let _ = writeln!(
                            out,
                            "{}-> {} (no record from the callee)",
                            "    ".repeat(depth + 1),
                            describe(&c.outbound)
                        );
                    }
                }
            }
        }
        let mut out = String::new();
        for r in &self.roots {
            walk(r, 0, &mut out);
        }
        for c in &self.orphan_calls {
            let _ = writeln!(out, "? {} (caller's record missing)", describe(&c.outbound));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use secmesh_core::SpanId;

    /// One edge request fanning out to many calls, each answered: every callee is attached
    /// under its call (the shape that was quadratic).
    #[test]
    fn a_wide_transaction_is_attached_completely() {
        let txn: TxnId = "4bf92f3577b34da6a3ce929d0e0e4736".parse().unwrap();
        let span = |n: u64| format!("{n:016x}").parse::<SpanId>().unwrap();
        let n = 20_000u64;
        let mut events = Vec::new();
        let mut root = AuditEvent::now("gateway", Direction::In);
        root.span_id = Some(span(1));
        events.push(root);
        for i in 0..n {
            let mut out = AuditEvent::now("gateway", Direction::Out);
            out.span_id = Some(span(0x10_0000 + i));
            out.parent_span_id = Some(span(1));
            let mut inb = AuditEvent::now("orders", Direction::In);
            inb.span_id = Some(span(0x90_0000 + i));
            inb.parent_span_id = Some(span(0x10_0000 + i));
            events.push(inb);
            events.push(out);
        }
        for e in &mut events {
            e.txn = Some(txn);
        }
        let tree = build(txn, events);
        assert_eq!(tree.roots.len(), 1);
        assert!(tree.orphan_calls.is_empty());
        let calls = &tree.roots[0].calls;
        assert_eq!(calls.len() as u64, n);
        assert!(calls.iter().all(|c| {
            c.callee
                .as_ref()
                .is_some_and(|h| h.inbound.parent_span_id == c.outbound.span_id)
        }));
        assert_eq!(tree.render().lines().count() as u64, n + 1);
    }
}
