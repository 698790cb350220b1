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
//! Events go to a [`secmesh_audit::Auditor`]: the request path never does I/O, and never
//! parks its thread (a full queue under the block policy is waited for asynchronously).
//!
//! # Durability and a failing log
//!
//! - By default a response is released once its event is queued; a crash can lose the events
//!   of the last few milliseconds. [`AuditLayer::durable`] releases it only once its event is
//!   written and synced (group commit: one fsync serves every request answered meanwhile), so
//!   that no answered request lacks its event after a crash.
//! - Fail-closed (the auditor's [`FullPolicy::FailClosed`]): a request that arrives while the
//!   queue is full or the sink cannot write is refused up front, before any work is done, with
//!   [`Denial::Unavailable`] (503, gRPC UNAVAILABLE; answered by [`BareStatus`] or the
//!   [`DenialResponse`] given to [`AuditLayer::denial`]), and a response whose event cannot
//!   be queued becomes that refusal. It serves again by itself once the sink recovers (the
//!   auditor probes it). A durable layer under the block policy refuses the same way while
//!   the sink fails.
//! - Drop-and-count serves regardless; events that cannot be queued or written are counted
//!   ([`Auditor::dropped`], [`Auditor::write_errors`]) and reported in the log.
//!
//! # Unauthenticated floods
//!
//! Refusals without an authenticated subject (401, gRPC UNAUTHENTICATED) are aggregated per
//! source, so that a flood of them cannot fill the disk one event per request. The source is
//! the mTLS peer's SPIFFE ID, else the peer's IP address (from the TLS serving side or axum's
//! `ConnectInfo`), else `unknown`. Time is cut into fixed windows (default 1 s): the first
//! refusal from a source in a window is written as a normal event, the rest are counted and
//! written as one event "N further unauthenticated refusals from SOURCE in 1s" (decision
//! `deny`, status 401) when the window ends (on the next request, by a timer thread, or when
//! the layer is dropped). At most 1,024 sources are told apart per window; refusals from
//! further sources are counted under `other`. The events are ordinary chained records: the
//! chain verifies as always. See [`AuditLayer::aggregate_unauthenticated`] and
//! [`AuditLayer::no_aggregation`]. The counts of a window still open are lost in a crash, and
//! the counted refusals' own details (path, time within the window) are not kept.
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

mod aggregate;
mod future;

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use http::header::CONTENT_TYPE;
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode};
use pin_project::{pin_project, pinned_drop};
use secmesh_audit::event::{AuditEvent, Decision as AuditDecision, Direction, Shadow};
use secmesh_audit::{AuditError, Auditor, Durability, FullPolicy};
use secmesh_core::policy::Effect;
use secmesh_core::{PeerIdentity, SpanId, TraceParent};
use tower_layer::Layer;
use tower_service::Service;

use crate::context::RequestContext;
use crate::deny::{Denial, DenialResponse, GrpcStatus, is_grpc};
use aggregate::Aggregator;
use future::Answer;
pub use future::ResponseFuture;

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
        ev.sub = Some(c.sub.to_string());
        ev.jti = Some(c.jti.clone());
        ev.cls = Some(c.cls);
        if ev.caller.is_none() {
            ev.caller = c.current_actor().map(str::to_owned);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Server side

/// The audit layer's default answer to a request it refuses (503, or gRPC UNAVAILABLE for a
/// gRPC caller): the status with an empty body and the [`Denial`] in the extensions, for any
/// body type (axum's and tonic's alike). Use [`AuditLayer::denial`] to answer otherwise
/// (e.g. [`ProblemJson`](crate::ProblemJson)).
#[derive(Clone, Copy, Debug, Default)]
pub struct BareStatus;

impl<B: Default> DenialResponse<B> for BareStatus {
    fn response(&self, request_headers: &HeaderMap, denial: &Denial) -> Response<B> {
        if is_grpc(request_headers) {
            return GrpcStatus.response(request_headers, denial);
        }
        let mut res = Response::new(B::default());
        *res.status_mut() = denial.status();
        res.extensions_mut().insert(denial.clone());
        res
    }
}

/// Where unauthenticated refusals come from when the server does not say.
pub(crate) const UNKNOWN: &str = "unknown";

/// Writes an `in` event for every request. Put it outermost. Cheap to clone.
#[derive(Clone, Debug)]
#[must_use]
pub struct AuditLayer<D = BareStatus> {
    auditor: Auditor,
    service: Arc<str>,
    durability: Durability,
    aggregate: Option<Arc<Aggregator>>,
    denial: D,
}

impl AuditLayer {
    /// Audit requests to `service` into `auditor` (responses released once their event is
    /// queued; unauthenticated refusals aggregated per source and second).
    pub fn new(auditor: Auditor, service: impl Into<Arc<str>>) -> Self {
        let service = service.into();
        AuditLayer {
            aggregate: Some(Aggregator::new(
                auditor.clone(),
                service.clone(),
                Duration::from_secs(1),
                1024,
            )),
            auditor,
            service,
            durability: Durability::Queued,
            denial: BareStatus,
        }
    }
}

impl<D> AuditLayer<D> {
    /// Release each response only once its `in` event is written and synced (group commit:
    /// one sync serves all the requests answered meanwhile). A crash then never loses the
    /// event of an answered request. An event that cannot be made durable turns the response
    /// into a 503 (gRPC UNAVAILABLE), except under the drop-and-count queue policy, which
    /// serves and counts.
    pub fn durable(self) -> Self {
        self.durability(Durability::Durable)
    }

    /// When a response is released: once its event is queued (the default) or durable.
    pub fn durability(mut self, durability: Durability) -> Self {
        self.durability = durability;
        self
    }

    /// Aggregate unauthenticated refusals per source (peer address or SPIFFE ID) in windows
    /// of `window`, telling at most `max_sources` sources apart per window (see the [module
    /// docs](self)). The default is 1 s and 1,024 sources.
    pub fn aggregate_unauthenticated(mut self, window: Duration, max_sources: usize) -> Self {
        self.aggregate = Some(Aggregator::new(
            self.auditor.clone(),
            self.service.clone(),
            window,
            max_sources,
        ));
        self
    }

    /// Write an event for every unauthenticated refusal (no aggregation).
    pub fn no_aggregation(mut self) -> Self {
        self.aggregate = None;
        self
    }

    /// Answer refused requests with `denial` instead of [`BareStatus`].
    pub fn denial<D2>(self, denial: D2) -> AuditLayer<D2> {
        AuditLayer {
            auditor: self.auditor,
            service: self.service,
            durability: self.durability,
            aggregate: self.aggregate,
            denial,
        }
    }
}

impl<S, D: Clone> Layer<S> for AuditLayer<D> {
    type Service = Audit<S, D>;

    fn layer(&self, inner: S) -> Self::Service {
        Audit {
            inner,
            auditor: self.auditor.clone(),
            service: self.service.clone(),
            durability: self.durability,
            aggregate: self.aggregate.clone(),
            denial: self.denial.clone(),
        }
    }
}

/// The server-side audit service; see the [module docs](self).
#[derive(Clone, Debug)]
pub struct Audit<S, D = BareStatus> {
    inner: S,
    auditor: Auditor,
    service: Arc<str>,
    durability: Durability,
    aggregate: Option<Arc<Aggregator>>,
    denial: D,
}

impl<S, D> Audit<S, D> {
    /// Why to refuse a request before any work is done for it: its event could not be
    /// recorded as the configuration demands (fail-closed: a full queue or a failing sink;
    /// durable and not drop-and-count: a failing sink).
    fn refuse_up_front(&self) -> Option<AuditError> {
        let policy = self.auditor.full_policy();
        if policy == FullPolicy::FailClosed && self.auditor.is_full() {
            return Some(AuditError::QueueFull);
        }
        let strict = policy == FullPolicy::FailClosed
            || (self.durability == Durability::Durable && policy != FullPolicy::DropAndCount);
        (strict && !self.auditor.is_healthy()).then_some(AuditError::NotDurable)
    }

    fn answer(&self, content_type: Option<HeaderValue>) -> Answer<D>
    where
        D: Clone,
    {
        Answer {
            durability: self.durability,
            policy: self.auditor.full_policy(),
            denial: self.denial.clone(),
            content_type,
        }
    }
}

/// The pending `in` event of one request.
pub(crate) struct Pending {
    auditor: Auditor,
    event: AuditEvent,
    slot: AuditSlot,
    start: Instant,
    aggregate: Option<Arc<Aggregator>>,
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

impl Pending {
    /// The finished event, or `None` when it is an unauthenticated refusal counted by the
    /// aggregation instead.
    fn finish(mut self, status: Option<StatusCode>, denial: Option<&Denial>) -> Option<AuditEvent> {
        if let (Some(Denial::Unauthenticated { .. }), Some(agg)) = (denial, &self.aggregate)
            && !agg.admit(source(&self.event))
        {
            return None;
        }
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
        Some(self.event)
    }
}

impl<S, D, ReqB, ResB> Service<Request<ReqB>> for Audit<S, D>
where
    S: Service<Request<ReqB>, Response = Response<ResB>>,
    D: DenialResponse<ResB>,
{
    type Response = Response<ResB>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, ResB, D>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<ReqB>) -> Self::Future {
        let content_type = req.headers().get(CONTENT_TYPE).cloned();
        if let Some(audit) = self.refuse_up_front() {
            // Refused before any work is done for it. (The state change of the queue or sink
            // is logged once by the auditor, not here for every request.)
            tracing::debug!(target: "secmesh::audit", error = %audit, "refusing the request: audit unavailable");
            let res = self
                .denial
                .response(req.headers(), &Denial::Unavailable { audit });
            return ResponseFuture::refused(res, self.answer(content_type));
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
        let pending = Pending {
            auditor: self.auditor.clone(),
            event,
            slot,
            start: Instant::now(),
            aggregate: self.aggregate.clone(),
        };
        let answer = self.answer(content_type);
        ResponseFuture::inner(self.inner.call(req), pending, answer)
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
