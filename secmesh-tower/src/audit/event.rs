//! The `in` event of one request, built from its [`Outcome`] alone.

use std::sync::Arc;
use std::time::Instant;

use http::{Extensions, Request, StatusCode};
use secmesh_audit::Auditor;
use secmesh_audit::event::{AuditEvent, Decision as AuditDecision, Direction, Shadow};
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

/// Fill an event from a request context.
pub(crate) fn from_context(ev: &mut AuditEvent, ctx: &RequestContext) {
    ev.trace_id = Some(ctx.trace_id());
    ev.span_id = Some(ctx.span_id());
    ev.parent_span_id = ctx.parent_span_id();
    ev.token_sha256 = ctx.token_hash().map(|h| h.to_string());
    if let Some(c) = ctx.claims() {
        ev.txn = c.txn;
        ev.sub = Some(c.sub.to_string());
        ev.jti = Some(c.jti.clone());
        ev.cls = Some(c.cls);
        if ev.caller.is_none() {
            ev.caller = c.current_actor().map(str::to_owned);
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
fn apply(ev: &mut AuditEvent, outcome: &Outcome) -> Noted {
    if let Some(ctx) = outcome.ctx() {
        from_context(ev, ctx);
    }
    match outcome {
        Outcome::Denied(d) => {
            if let Some(v) = &d.verb {
                ev.verb = Some(v.as_str().to_owned());
            }
            if let Some(o) = &d.object {
                ev.object = Some(o.as_str().to_owned());
            }
            if d.caller.is_some() {
                ev.caller.clone_from(&d.caller);
            }
            ev.shadow = d.shadow.as_ref().map(shadow);
            ev.rule = d.reason.rule().map(str::to_owned);
            ev.reason = Some(d.reason.to_string());
            ev.reason_kind = Some(d.reason.kind().to_owned());
            Noted::Denied {
                unauthenticated: d.reason.is_unauthenticated(),
            }
        }
        Outcome::Permitted(_, p) => {
            ev.verb = Some(p.verb().as_str().to_owned());
            ev.object = Some(p.object().as_str().to_owned());
            if let Some(c) = p.caller() {
                ev.caller = Some(c.to_owned());
            }
            ev.rule = p.rule().map(str::to_owned);
            ev.shadow = p.decision().and_then(|d| d.shadow()).map(shadow);
            ev.reason = Some(match p.decision() {
                Some(d) => d.reason().as_str().to_owned(),
                None => "grant".to_owned(),
            });
            Noted::Allowed
        }
        Outcome::Authenticated(_) => {
            ev.reason = Some("authenticated".to_owned());
            Noted::Allowed
        }
        Outcome::Anonymous(_) => {
            ev.reason = Some("anonymous".to_owned());
            Noted::Allowed
        }
    }
}

/// The pending `in` event of one request.
pub(crate) struct Pending {
    pub(crate) auditor: Auditor,
    event: AuditEvent,
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
        let mut event = AuditEvent::now(service, Direction::In);
        if let Some(peer) = req.extensions().get::<PeerIdentity>() {
            event.caller = Some(peer.spiffe_id.to_string());
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
        event.method = Some(req.method().as_str().to_owned());
        event.path = Some(req.uri().path().to_owned());
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
    ) -> Option<AuditEvent> {
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
