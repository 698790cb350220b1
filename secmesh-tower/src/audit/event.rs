//! The `in` event of one request, built from its [`Outcome`] alone.

use std::sync::Arc;
use std::time::Instant;

use http::{Extensions, Request, StatusCode};
use secmesh_audit::Auditor;
use secmesh_audit::event::{AuditEvent, Decision as AuditDecision, Direction, Shadow};
use secmesh_audit::pool::EventBox;
use secmesh_core::PeerIdentity;
use secmesh_core::policy::{Effect, ShadowDecision};

use super::aggregate::Aggregator;
use crate::context::RequestContext;
use crate::outcome::Outcome;

/// Where unauthenticated refusals come from when the server does not say.
pub(crate) const UNKNOWN: &str = "unknown";

fn effect(e: Effect) -> AuditDecision {
    match e {
        Effect::Allow => AuditDecision::Allow,
        _ => AuditDecision::Deny,
    }
}

fn shadow(s: &ShadowDecision) -> Shadow {
    Shadow {
        decision: effect(s.effect()),
        rule: s.rule().map(str::to_owned),
    }
}

/// `s` in one of the box's reused buffers (see [`EventBox::string`]).
fn put(ev: &mut EventBox, s: Option<&str>) -> Option<String> {
    s.map(|s| ev.string(s))
}

/// `v` formatted into one of the box's reused buffers.
fn shown(ev: &mut EventBox, v: &impl std::fmt::Display) -> String {
    use std::fmt::Write as _;
    let mut s = ev.string("");
    let _ = write!(s, "{v}");
    s
}

/// Fill an event from a request context (its strings in the box's reused buffers).
pub(crate) fn from_context(ev: &mut EventBox, ctx: &RequestContext) {
    ev.trace_id = Some(ctx.trace_id());
    ev.span_id = Some(ctx.span_id());
    ev.parent_span_id = ctx.parent_span_id();
    ev.token_sha256 = ctx.token_hash().map(|h| shown(ev, &h));
    if let Some(c) = ctx.claims() {
        ev.txn = c.txn;
        ev.sub = Some(ev.string(c.sub.as_str()));
        ev.jti = Some(ev.string(&c.jti));
        ev.cls = Some(c.cls);
        if ev.caller.is_none() {
            ev.caller = put(ev, c.current_actor());
        }
    }
}

/// What the outcome said, for the decision once the response is known.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Noted {
    Allowed,
    Denied { unauthenticated: bool },
}

/// Fill an event from a request's outcome.
fn apply(ev: &mut EventBox, outcome: &Outcome) -> Noted {
    if let Some(ctx) = outcome.ctx() {
        from_context(ev, ctx);
    }
    match outcome {
        Outcome::Denied(d) => {
            if let Some(v) = &d.verb {
                ev.verb = Some(ev.string(v.as_str()));
            }
            if let Some(o) = &d.object {
                ev.object = Some(ev.string(o.as_str()));
            }
            if d.caller.is_some() {
                ev.caller.clone_from(&d.caller);
            }
            ev.shadow = d.shadow.as_ref().map(shadow);
            ev.rule = put(ev, d.reason.rule());
            ev.reason = Some(d.reason.to_string());
            ev.reason_kind = Some(ev.string(d.reason.kind()));
            Noted::Denied {
                unauthenticated: d.reason.is_unauthenticated(),
            }
        }
        Outcome::Permitted(_, p) => {
            ev.verb = Some(ev.string(p.verb().as_str()));
            ev.object = Some(ev.string(p.object().as_str()));
            if let Some(c) = p.caller() {
                ev.caller = Some(ev.string(c));
            }
            ev.rule = put(ev, p.rule());
            ev.shadow = p.decision().and_then(|d| d.shadow()).map(shadow);
            ev.reason = Some(match p.decision() {
                Some(d) => ev.string(d.reason().as_str()),
                None => ev.string("grant"),
            });
            Noted::Allowed
        }
        Outcome::Authenticated(_) => {
            ev.reason = Some(ev.string("authenticated"));
            Noted::Allowed
        }
        Outcome::Anonymous(_) => {
            ev.reason = Some(ev.string("anonymous"));
            Noted::Allowed
        }
    }
}

/// The pending `in` event of one request.
pub(crate) struct Pending {
    pub(crate) auditor: Auditor,
    event: EventBox,
    noted: Option<Noted>,
    start: Instant,
    aggregate: Option<Arc<Aggregator>>,
}

impl Pending {
    /// The event of a request arriving now at `service`: method, path, peer.
    pub(crate) fn arriving<B>(
        auditor: &Auditor,
        service: &str,
        aggregate: Option<&Arc<Aggregator>>,
        req: &Request<B>,
    ) -> Pending {
        let mut event = EventBox::new(service, Direction::In);
        if let Some(peer) = req.extensions().get::<PeerIdentity>() {
            event.caller = Some(shown(&mut event, &peer.spiffe_id));
        }
        #[cfg(feature = "tls")]
        if let Some(info) = req.extensions().get::<crate::tls::PeerInfo>() {
            event.peer = Some(info.remote_addr.to_string());
        }
        #[cfg(feature = "axum")]
        if event.peer.is_none()
            && let Some(info) = req
                .extensions()
                .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        {
            event.peer = Some(info.0.to_string());
        }
        event.method = Some(event.string(req.method().as_str()));
        event.path = Some(event.string(req.uri().path()));
        Pending {
            auditor: auditor.clone(),
            event,
            noted: None,
            start: Instant::now(),
            aggregate: aggregate.cloned(),
        }
    }

    /// Record the request's outcome (the server stack does this when it decides).
    pub(crate) fn note(&mut self, outcome: &Outcome) {
        self.noted = Some(apply(&mut self.event, outcome));
    }

    /// The finished event, given the response's status and extensions (`None`: no response),
    /// or `None` when it is an unauthenticated refusal counted by the aggregation instead.
    ///
    /// The outcome comes from [`note`](Self::note), else from the response's extensions. A
    /// [`RequestContext`] the handler put in the response extensions replaces the context:
    /// what an edge does after it exchanges the caller's token for an internal one, so that
    /// its event carries the transaction its outgoing calls continue.
    pub(crate) fn finish(
        mut self,
        response: Option<(StatusCode, &Extensions)>,
    ) -> Option<EventBox> {
        if self.noted.is_none()
            && let Some(outcome) = response.and_then(|(_, ext)| ext.get::<Outcome>())
        {
            self.noted = Some(apply(&mut self.event, outcome));
        }
        if let (
            Some(Noted::Denied {
                unauthenticated: true,
            }),
            Some(agg),
        ) = (self.noted, &self.aggregate)
            && !agg.admit(source(&self.event))
        {
            return None;
        }
        if let Some(ctx) = response.and_then(|(_, ext)| ext.get::<RequestContext>()) {
            from_context(&mut self.event, ctx);
        }
        let ev = &mut self.event;
        ev.latency_us = Some(u64::try_from(self.start.elapsed().as_micros()).unwrap_or(u64::MAX));
        ev.status = response.map(|(s, _)| s.as_u16());
        match (self.noted, response) {
            (Some(Noted::Denied { .. }), _) => ev.decision = AuditDecision::Deny,
            (_, Some(_)) => {
                ev.decision = AuditDecision::Allow;
                if ev.reason.is_none() {
                    ev.reason = Some("not checked".into());
                }
            }
            (_, None) => {
                ev.decision = AuditDecision::Error;
                ev.reason = Some(if std::thread::panicking() {
                    "the handler panicked".into()
                } else {
                    "the client went away".into()
                });
            }
        }
        Some(self.event)
    }
}

/// The source of a request for aggregation: the mTLS peer's SPIFFE ID, else the peer's IP.
fn source(ev: &AuditEvent) -> String {
    if let Some(id) = &ev.caller {
        return id.clone();
    }
    match &ev.peer {
        Some(p) => p
            .parse::<std::net::SocketAddr>()
            .map_or_else(|_| p.clone(), |a| a.ip().to_string()),
        None => UNKNOWN.to_owned(),
    }
}
