//! Audit: an event at every boundary crossing, in and out.
//!
//! [`AuditLayer`] (server side, outermost) writes an `in` event when the response completes,
//! and also when the request future is dropped before that (the client went away, or the
//! handler panicked): who (subject, caller), what (verb, object), the decision and its rule or
//! reason (a denial's full reason, which the caller never sees), status, latency, txn, trace
//! and span ids, token `jti` and SHA-256 (never the token). The authenticate and authorize
//! layers inside it report what they found through a slot the audit layer puts in the request
//! extensions; without an audit layer they skip it.
//!
//! [`AuditOutLayer`] (client side, inside [`PropagateLayer`](crate::PropagateLayer)) writes an
//! `out` event when a call to another service completes; its span id is the one the callee
//! sees as its parent, which is how `secmesh audit trace` links the two.
//!
//! Events go to a [`secmesh_audit::Auditor`]: the request path never does I/O. With the
//! fail-closed queue policy a request that arrives while the queue is full is refused with 503
//! before any work is done, and a response whose event cannot be queued becomes a 503.
//!
//! # Example
//! ```
//! use http::{Request, Response, StatusCode};
//! use secmesh_audit::{Auditor, event::AuditEvent, sink::Sink};
//! use secmesh_tower::audit::AuditLayer;
//! use std::sync::{Arc, Mutex};
//! use tower::{service_fn, ServiceBuilder, ServiceExt};
//!
//! /// A sink that keeps events in memory.
//! #[derive(Clone, Default)]
//! struct Memory(Arc<Mutex<Vec<AuditEvent>>>);
//! impl Sink for Memory {
//!     fn write_batch(&mut self, events: &mut [AuditEvent]) -> std::io::Result<()> {
//!         self.0.lock().unwrap().extend(events.iter().cloned());
//!         Ok(())
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let memory = Memory::default();
//! let auditor = Auditor::builder(memory.clone()).spawn();
//! let svc = ServiceBuilder::new()
//!     .layer(AuditLayer::new(auditor.clone(), "orders"))
//!     .service(service_fn(|_req: Request<String>| async {
//!         Ok::<_, std::convert::Infallible>(Response::new(String::from("ok")))
//!     }));
//! let res = svc.oneshot(Request::get("/orders/7").body(String::new())?).await?;
//! assert_eq!(res.status(), StatusCode::OK);
//! auditor.shutdown();
//! let events = memory.0.lock().unwrap();
//! assert_eq!(events.len(), 1);
//! assert_eq!(events[0].service, "orders");
//! assert_eq!(events[0].status, Some(200));
//! # Ok(())
//! # }
//! ```

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Instant;

use http::{Request, Response, StatusCode};
use pin_project::{pin_project, pinned_drop};
use secmesh_audit::event::{AuditEvent, Decision as AuditDecision, Direction, Shadow};
use secmesh_audit::{AuditError, Auditor};
use secmesh_core::policy::Effect;
use secmesh_core::{PeerIdentity, SpanId, TraceParent};
use tower_layer::Layer;
use tower_service::Service;

use crate::context::RequestContext;
use crate::deny::Denial;

/// What the inner layers learned about a request, for its audit event.
#[derive(Debug, Default)]
pub(crate) struct Found {
    pub(crate) ctx: Option<RequestContext>,
    pub(crate) verb: Option<String>,
    pub(crate) object: Option<String>,
    pub(crate) caller: Option<String>,
    pub(crate) rule: Option<String>,
    pub(crate) reason: Option<String>,
    pub(crate) shadow: Option<Shadow>,
}

/// The slot the audit layer puts in the request extensions; inner layers fill it.
#[derive(Clone, Debug, Default)]
pub struct AuditSlot(pub(crate) Arc<Mutex<Found>>);

impl AuditSlot {
    /// Record `ctx` as the request's context in its `in` event, in place of the one the
    /// authenticate layer set: what an edge gateway does after it exchanges the caller's
    /// external token for an internal one, so that its event carries the transaction (`txn`,
    /// span) its outgoing calls continue. Take the slot from the request extensions (axum:
    /// `Extension<AuditSlot>`).
    pub fn set_context(&self, ctx: &RequestContext) {
        self.with(|f| f.ctx = Some(ctx.clone()));
    }

    pub(crate) fn with(&self, f: impl FnOnce(&mut Found)) {
        if let Ok(mut found) = self.0.lock() {
            f(&mut found);
        }
    }
}

/// Record the authenticated context into the request's audit slot, if there is one.
pub(crate) fn note_context<B>(req: &Request<B>, ctx: &RequestContext) {
    if let Some(slot) = req.extensions().get::<AuditSlot>() {
        slot.with(|f| f.ctx = Some(ctx.clone()));
    }
}

/// Record the authorization outcome into the request's audit slot, if there is one.
pub(crate) fn note_decision(
    extensions: &http::Extensions,
    verb: &str,
    object: &str,
    caller: Option<&str>,
    decision: Option<&secmesh_core::policy::Decision>,
) {
    if let Some(slot) = extensions.get::<AuditSlot>() {
        slot.with(|f| {
            f.verb = Some(verb.to_owned());
            f.object = Some(object.to_owned());
            f.caller = caller.map(str::to_owned);
            if let Some(d) = decision {
                f.rule = d.rule().map(str::to_owned);
                f.reason = Some(d.reason().as_str().to_owned());
                f.shadow = d.shadow().map(|s| Shadow {
                    decision: effect(s.effect()),
                    rule: s.rule().map(str::to_owned),
                });
            }
        });
    }
}

fn effect(e: Effect) -> AuditDecision {
    match e {
        Effect::Allow => AuditDecision::Allow,
        _ => AuditDecision::Deny,
    }
}

/// Fill an event from a request context.
fn from_context(ev: &mut AuditEvent, ctx: &RequestContext) {
    ev.trace_id = Some(ctx.trace_id());
    ev.span_id = Some(ctx.span_id());
    ev.parent_span_id = ctx.parent_span_id();
    ev.token_sha256 = ctx.token_hash().map(|h| h.to_string());
    if let Some(c) = ctx.claims() {
        ev.txn = c.txn;
        ev.sub = Some(c.sub.clone());
        ev.jti = Some(c.jti.clone());
        ev.cls = Some(c.cls);
        if ev.caller.is_none() {
            ev.caller = c.current_actor().map(str::to_owned);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Server side

/// Writes an `in` event for every request. Put it outermost. Cheap to clone.
#[derive(Clone, Debug)]
#[must_use]
pub struct AuditLayer {
    auditor: Auditor,
    service: Arc<str>,
}

impl AuditLayer {
    /// Audit requests to `service` into `auditor`.
    pub fn new(auditor: Auditor, service: impl Into<Arc<str>>) -> Self {
        AuditLayer {
            auditor,
            service: service.into(),
        }
    }
}

impl<S> Layer<S> for AuditLayer {
    type Service = Audit<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Audit {
            inner,
            auditor: self.auditor.clone(),
            service: self.service.clone(),
        }
    }
}

/// The server-side audit service; see the [module docs](self).
#[derive(Clone, Debug)]
pub struct Audit<S> {
    inner: S,
    auditor: Auditor,
    service: Arc<str>,
}

/// The pending `in` event of one request.
struct Pending {
    auditor: Auditor,
    event: AuditEvent,
    slot: AuditSlot,
    start: Instant,
}

impl Pending {
    fn finish(
        mut self,
        status: Option<StatusCode>,
        denial: Option<&Denial>,
    ) -> Result<(), AuditError> {
        let found = std::mem::take(&mut *self.slot.0.lock().unwrap_or_else(|p| p.into_inner()));
        let ev = &mut self.event;
        if let Some(ctx) = &found.ctx {
            from_context(ev, ctx);
        }
        if found.caller.is_some() {
            ev.caller = found.caller;
        }
        // Authorize's classification, when it ran; else the method and path recorded on arrival.
        if found.verb.is_some() {
            ev.verb = found.verb;
        }
        if found.object.is_some() {
            ev.object = found.object;
        }
        ev.shadow = found.shadow;
        ev.latency_us = Some(u64::try_from(self.start.elapsed().as_micros()).unwrap_or(u64::MAX));
        ev.status = status.map(|s| s.as_u16());
        match (denial, status) {
            (Some(d), _) => {
                ev.decision = AuditDecision::Deny;
                if let Denial::Forbidden { rule, .. } = d {
                    ev.rule = rule.clone();
                }
                ev.reason = Some(d.reason());
            }
            (None, Some(_)) => {
                ev.decision = AuditDecision::Allow;
                ev.rule = found.rule;
                ev.reason = found.reason.or_else(|| {
                    Some(
                        if found.ctx.is_some() {
                            "authenticated"
                        } else {
                            "not checked"
                        }
                        .into(),
                    )
                });
            }
            (None, None) => {
                ev.decision = AuditDecision::Error;
                ev.rule = found.rule;
                if ev.reason.is_none() {
                    ev.reason = Some(if std::thread::panicking() {
                        "the handler panicked".into()
                    } else {
                        "the client went away".into()
                    });
                }
            }
        }
        self.auditor.record(self.event)
    }
}

impl<S, ReqB, ResB> Service<Request<ReqB>> for Audit<S>
where
    S: Service<Request<ReqB>, Response = Response<ResB>>,
    ResB: Default,
{
    type Response = Response<ResB>;
    type Error = S::Error;
    type Future = AuditFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<ReqB>) -> Self::Future {
        if self.auditor.full_policy() == secmesh_audit::FullPolicy::FailClosed
            && self.auditor.is_full()
        {
            // Fail closed up front: the request is refused before any work is done for it.
            tracing::error!(target: "secmesh::audit", "audit queue full; refusing the request (fail-closed)");
            return AuditFuture {
                inner: None,
                pending: None,
            };
        }
        let slot = AuditSlot::default();
        req.extensions_mut().insert(slot.clone());
        let mut event = AuditEvent::now(&*self.service, Direction::In);
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
        // Until authorize classifies it, the request is named by its method and path.
        event.verb = Some(req.method().as_str().to_owned());
        event.object = Some(req.uri().path().to_owned());
        AuditFuture {
            inner: Some(self.inner.call(req)),
            pending: Some(Pending {
                auditor: self.auditor.clone(),
                event,
                slot,
                start: Instant::now(),
            }),
        }
    }
}

/// Response future of [`Audit`]: writes the event when the response is ready, or when it is
/// dropped before that.
#[pin_project(PinnedDrop)]
pub struct AuditFuture<F> {
    /// `None` when the request was refused up front (fail-closed, queue full).
    #[pin]
    inner: Option<F>,
    pending: Option<Pending>,
}

impl<F, B, E> Future for AuditFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
    B: Default,
{
    type Output = Result<Response<B>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let Some(inner) = this.inner.as_pin_mut() else {
            let mut res = Response::new(B::default());
            *res.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
            return Poll::Ready(Ok(res));
        };
        let out = std::task::ready!(inner.poll(cx));
        let Some(pending) = this.pending.take() else {
            return Poll::Ready(out);
        };
        let recorded = match &out {
            Ok(res) => pending.finish(Some(res.status()), res.extensions().get::<Denial>()),
            Err(_) => pending.finish(None, None),
        };
        match recorded {
            Err(AuditError::QueueFull) => {
                // Fail closed: no audit record, no answer.
                tracing::error!(target: "secmesh::audit", "audit queue full; refusing the response (fail-closed)");
                let mut res = Response::new(B::default());
                *res.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
                Poll::Ready(Ok(res))
            }
            Err(e) => {
                tracing::error!(target: "secmesh::audit", error = %e, "audit event not recorded");
                Poll::Ready(out)
            }
            Ok(()) => Poll::Ready(out),
        }
    }
}

#[pinned_drop]
impl<F> PinnedDrop for AuditFuture<F> {
    fn drop(self: Pin<&mut Self>) {
        if let Some(pending) = self.project().pending.take()
            && let Err(e) = pending.finish(None, None)
        {
            tracing::error!(target: "secmesh::audit", error = %e, "audit event not recorded");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Client side

/// Writes an `out` event for every call to another service. Put it inside the propagate layer
/// (nearer the wire) so that it sees the `traceparent` sent. Cheap to clone.
#[derive(Clone, Debug)]
#[must_use]
pub struct AuditOutLayer {
    auditor: Auditor,
    service: Arc<str>,
}

impl AuditOutLayer {
    /// Audit calls made by `service` into `auditor`.
    pub fn new(auditor: Auditor, service: impl Into<Arc<str>>) -> Self {
        AuditOutLayer {
            auditor,
            service: service.into(),
        }
    }
}

impl<S> Layer<S> for AuditOutLayer {
    type Service = AuditOut<S>;

    fn layer(&self, inner: S) -> Self::Service {
        AuditOut {
            inner,
            auditor: self.auditor.clone(),
            service: self.service.clone(),
        }
    }
}

/// The client-side audit service; see the [module docs](self).
#[derive(Clone, Debug)]
pub struct AuditOut<S> {
    inner: S,
    auditor: Auditor,
    service: Arc<str>,
}

impl<S, ReqB, ResB> Service<Request<ReqB>> for AuditOut<S>
where
    S: Service<Request<ReqB>, Response = Response<ResB>>,
{
    type Response = Response<ResB>;
    type Error = S::Error;
    type Future = AuditOutFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqB>) -> Self::Future {
        let mut event = AuditEvent::now(&*self.service, Direction::Out);
        if let Some(ctx) = RequestContext::current() {
            from_context(&mut event, &ctx);
            // The parent of the call is this service's span for the current request.
            event.parent_span_id = Some(ctx.span_id());
            event.caller = Some(self.service.to_string());
        }
        let sent: Option<SpanId> = req
            .headers()
            .get("traceparent")
            .and_then(|v| v.to_str().ok())
            .and_then(|s| s.parse::<TraceParent>().ok())
            .map(|tp| tp.parent_id());
        event.span_id = sent.or(event.span_id);
        event.verb = Some(req.method().as_str().to_owned());
        event.object = Some(req.uri().path().to_owned());
        event.target = req.uri().authority().map(|a| a.to_string());
        AuditOutFuture {
            inner: self.inner.call(req),
            pending: Some((self.auditor.clone(), event, Instant::now())),
        }
    }
}

/// Response future of [`AuditOut`].
#[pin_project(PinnedDrop)]
pub struct AuditOutFuture<F> {
    #[pin]
    inner: F,
    pending: Option<(Auditor, AuditEvent, Instant)>,
}

fn finish_out(
    (auditor, mut ev, start): (Auditor, AuditEvent, Instant),
    status: Option<StatusCode>,
) {
    ev.latency_us = Some(u64::try_from(start.elapsed().as_micros()).unwrap_or(u64::MAX));
    ev.status = status.map(|s| s.as_u16());
    ev.decision = match status {
        Some(s) if s == StatusCode::UNAUTHORIZED || s == StatusCode::FORBIDDEN => {
            AuditDecision::Deny
        }
        Some(_) => AuditDecision::Allow,
        None => AuditDecision::Error,
    };
    if status.is_none() {
        ev.reason = Some("the call failed or was abandoned".into());
    }
    if let Err(e) = auditor.record(ev) {
        tracing::error!(target: "secmesh::audit", error = %e, "audit event not recorded");
    }
}

impl<F, B, E> Future for AuditOutFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<B>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let out = std::task::ready!(this.inner.poll(cx));
        if let Some(p) = this.pending.take() {
            finish_out(p, out.as_ref().ok().map(Response::status));
        }
        Poll::Ready(out)
    }
}

#[pinned_drop]
impl<F> PinnedDrop for AuditOutFuture<F> {
    fn drop(self: Pin<&mut Self>) {
        if let Some(p) = self.project().pending.take() {
            finish_out(p, None);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use secmesh_audit::FullPolicy;
    use secmesh_audit::sink::Sink;
    use std::sync::mpsc;
    use tower::{ServiceBuilder, ServiceExt, service_fn};

    #[derive(Clone, Default)]
    struct Memory(
        Arc<Mutex<Vec<AuditEvent>>>,
        Arc<Mutex<Option<mpsc::Receiver<()>>>>,
    );

    impl Sink for Memory {
        fn write_batch(&mut self, events: &mut [AuditEvent]) -> std::io::Result<()> {
            if let Some(rx) = self.1.lock().unwrap().as_ref() {
                let _ = rx.recv();
            }
            self.0.lock().unwrap().extend(events.iter().cloned());
            Ok(())
        }
    }

    fn events_after(auditor: Auditor, memory: &Memory) -> Vec<AuditEvent> {
        auditor.shutdown();
        memory.0.lock().unwrap().clone()
    }

    #[tokio::test]
    async fn a_panicking_handler_and_a_vanished_client_are_recorded() {
        let memory = Memory::default();
        let auditor = Auditor::builder(memory.clone()).spawn();
        let panics = ServiceBuilder::new()
            .layer(AuditLayer::new(auditor.clone(), "svc"))
            .service(service_fn(|_req: Request<String>| async {
                if true {
                    panic!("handler bug");
                }
                Ok::<_, std::convert::Infallible>(Response::new(String::new()))
            }));
        let joined = tokio::spawn(panics.oneshot(Request::new(String::new()))).await;
        assert!(joined.is_err(), "the panic propagates");

        let slow = ServiceBuilder::new()
            .layer(AuditLayer::new(auditor.clone(), "svc"))
            .service(service_fn(|_req: Request<String>| async {
                tokio::time::sleep(std::time::Duration::from_secs(60)).await;
                Ok::<_, std::convert::Infallible>(Response::new(String::new()))
            }));
        let call = slow.oneshot(Request::new(String::new()));
        // The client goes away: the future is dropped before it completes.
        assert!(
            tokio::time::timeout(std::time::Duration::from_millis(10), call)
                .await
                .is_err()
        );

        let events = events_after(auditor, &memory);
        let reasons: Vec<_> = events.iter().map(|e| e.reason.clone().unwrap()).collect();
        assert_eq!(reasons, ["the handler panicked", "the client went away"]);
        assert!(events.iter().all(|e| e.decision == AuditDecision::Error));
    }

    #[tokio::test]
    async fn an_exchanged_context_is_what_the_in_event_records() {
        use secmesh_core::ExpiryClass;
        use secmesh_tokens::cache::TokenHash;
        use secmesh_tokens::{Algorithm, Issuer, KeySet, MintRequest, SigningKey, Verifier};

        let key = SigningKey::generate(Algorithm::EdDsa).unwrap();
        let verifier = Verifier::new(KeySet::single(key.verifying_key(Some("k".into()))));
        let issuer = Issuer::new(key, "k", "gw").audience("mesh");
        let internal = issuer
            .mint(&MintRequest::new("user:alice", ExpiryClass::Fast))
            .unwrap();
        let verified = Arc::new(verifier.verify(&internal).unwrap());
        let (txn, jti) = (verified.claims().txn, verified.claims().jti.clone());
        let ctx =
            RequestContext::authenticated(&internal, TokenHash::of(&internal), verified, None);
        let span = ctx.span_id();

        let memory = Memory::default();
        let auditor = Auditor::builder(memory.clone()).spawn();
        let svc = ServiceBuilder::new()
            .layer(AuditLayer::new(auditor.clone(), "gateway"))
            .service(service_fn(move |req: Request<String>| {
                // The edge exchanged the caller's token: its event carries the new transaction.
                req.extensions()
                    .get::<AuditSlot>()
                    .unwrap()
                    .set_context(&ctx);
                async { Ok::<_, std::convert::Infallible>(Response::new(String::new())) }
            }));
        svc.oneshot(Request::new(String::new())).await.unwrap();
        let events = events_after(auditor, &memory);
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].txn, txn);
        assert!(txn.is_some());
        assert_eq!(events[0].jti.as_deref(), Some(jti.as_str()));
        assert_eq!(events[0].span_id, Some(span));
        assert_eq!(events[0].sub.as_deref(), Some("user:alice"));
    }

    #[tokio::test]
    async fn a_full_fail_closed_queue_refuses_the_response() {
        let memory = Memory::default();
        let (tx, rx) = mpsc::channel();
        *memory.1.lock().unwrap() = Some(rx);
        let auditor = Auditor::builder(memory.clone())
            .capacity(1)
            .batch_size(1)
            .full_policy(FullPolicy::FailClosed)
            .spawn();
        let svc = ServiceBuilder::new()
            .layer(AuditLayer::new(auditor.clone(), "svc"))
            .service(service_fn(|_req: Request<String>| async {
                Ok::<_, std::convert::Infallible>(Response::new(String::from("secret result")))
            }));
        let mut statuses = Vec::new();
        for _ in 0..5 {
            let res = svc
                .clone()
                .oneshot(Request::new(String::new()))
                .await
                .unwrap();
            statuses.push(res.status().as_u16());
        }
        assert!(statuses.contains(&503), "{statuses:?}");
        // Hang up to open the sink for good (its writer holds the lock while it waits).
        drop(tx);
        auditor.shutdown();
    }
}
