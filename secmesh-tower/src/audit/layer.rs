//! The server side: [`AuditLayer`] and its service.

use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::header::CONTENT_TYPE;
use http::{HeaderValue, Request, Response};
use secmesh_audit::{AuditError, Auditor, Durability, FullPolicy};
use tower_layer::Layer;
use tower_service::Service;

use super::aggregate::Aggregator;
use super::event::Pending;
use super::future::{Answer, ResponseFuture};
use crate::deny::{DenialResponse, DenyReason};
use crate::outcome::Denied;

/// The audit layer's default answer to a request it refuses: 503, or gRPC UNAVAILABLE for a
/// gRPC caller (the default [`Responder`](crate::deny::Responder)'s status and headers), with
/// an empty body, for any body type (axum's and tonic's alike). Use [`AuditLayer::denial`] to
/// answer otherwise (e.g. [`ProblemJson`](crate::ProblemJson)).
pub use crate::deny::GrpcStatus as BareStatus;

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
    /// docs](crate::audit)). The default is 1 s and 1,024 sources.
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

/// The server-side audit service; see the [module docs](crate::audit).
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
        refuse_up_front(&self.auditor, self.durability)
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

/// Why to refuse a request before any work is done for it: its event could not be recorded
/// as the configuration demands (fail-closed: a full queue or a failing sink; durable and not
/// drop-and-count: a failing sink).
pub(crate) fn refuse_up_front(auditor: &Auditor, durability: Durability) -> Option<AuditError> {
    let policy = auditor.full_policy();
    if policy == FullPolicy::FailClosed && auditor.is_full() {
        return Some(AuditError::QueueFull);
    }
    let strict = policy == FullPolicy::FailClosed
        || (durability == Durability::Durable && policy != FullPolicy::DropAndCount);
    (strict && !auditor.is_healthy()).then_some(AuditError::NotDurable)
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

    fn call(&mut self, req: Request<ReqB>) -> Self::Future {
        let content_type = req.headers().get(CONTENT_TYPE).cloned();
        if let Some(audit) = self.refuse_up_front() {
            // Refused before any work is done for it, and not recorded: the log cannot take it.
            let denied = Denied::new(DenyReason::AuditUnavailable(audit));
            let res = crate::future::deny_response(&self.denial, req.headers(), denied);
            return ResponseFuture::refused(res, self.answer(content_type));
        }
        let pending =
            Pending::arriving(&self.auditor, &self.service, self.aggregate.as_ref(), &req);
        let answer = self.answer(content_type);
        ResponseFuture::inner(self.inner.call(req), pending, answer)
    }
}
