//! The client side: an `out` event for every call to another service.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use http::{Request, Response, StatusCode};
use pin_project::{pin_project, pinned_drop};
use secmesh_audit::event::{Decision as AuditDecision, Direction};
use secmesh_audit::pool::EventBox;
use secmesh_audit::{Auditor, Durability, Submit};
use secmesh_core::{SpanId, TraceParent};
use tower_layer::Layer;
use tower_service::Service;

use super::event::from_context;
use crate::context::RequestContext;

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

/// The client-side audit service; see the [module docs](crate::audit).
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
    type Future = AuditOutFuture<S::Future, ResB>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqB>) -> Self::Future {
        let mut event = EventBox::new(&self.service, Direction::Out);
        if let Some(ctx) = RequestContext::current() {
            from_context(&mut event, &ctx);
            // The parent of the call is this service's span for the current request.
            event.parent_span_id = Some(ctx.span_id());
            event.caller = Some(event.string(&self.service));
        }
        let sent: Option<SpanId> = req
            .headers()
            .get("traceparent")
            .and_then(|v| v.to_str().ok())
            .and_then(|s| s.parse::<TraceParent>().ok())
            .map(|tp| tp.parent_id());
        event.span_id = sent.or(event.span_id);
        event.method = Some(event.string(req.method().as_str()));
        event.path = Some(event.string(req.uri().path()));
        event.target = req.uri().authority().map(|a| a.to_string());
        AuditOutFuture {
            kind: OutKind::Call {
                fut: self.inner.call(req),
            },
            pending: Some((self.auditor.clone(), event, Instant::now())),
        }
    }
}

/// Response future of [`AuditOut`]: the call, then its `out` event on its way to the queue.
/// Under [`FullPolicy::Block`](secmesh_audit::FullPolicy::Block) a full queue is waited for
/// here, inside the future (the task yields; no runtime thread is parked).
#[pin_project(PinnedDrop)]
pub struct AuditOutFuture<F, B> {
    #[pin]
    kind: OutKind<F, B>,
    pending: Option<(Auditor, EventBox, Instant)>,
}

// The call's future is usually the larger; the recording state lives only briefly.
#[allow(clippy::large_enum_variant)]
#[pin_project(project = OutKindProj)]
enum OutKind<F, B> {
    Call {
        #[pin]
        fut: F,
    },
    Recording {
        response: Option<Response<B>>,
        #[pin]
        submit: Submit,
    },
}

fn finish_out(
    (auditor, mut ev, start): (Auditor, EventBox, Instant),
    status: Option<StatusCode>,
) -> Submit {
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
    auditor.submit(ev, Durability::Queued)
}

impl<F, B, E> Future for AuditOutFuture<F, B>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<B>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.kind.as_mut().project() {
                OutKindProj::Call { fut } => {
                    let out = std::task::ready!(fut.poll(cx));
                    let Some(p) = this.pending.take() else {
                        return Poll::Ready(out);
                    };
                    match out {
                        Ok(res) => {
                            let submit = finish_out(p, Some(res.status()));
                            this.kind.set(OutKind::Recording {
                                response: Some(res),
                                submit,
                            });
                        }
                        Err(e) => {
                            finish_out(p, None).detach();
                            return Poll::Ready(Err(e));
                        }
                    }
                }
                OutKindProj::Recording { response, submit } => {
                    if let Err(e) = std::task::ready!(submit.poll(cx)) {
                        tracing::error!(target: "secmesh::audit", error = %e, "audit event not recorded");
                    }
                    return Poll::Ready(Ok(response
                        .take()
                        .expect("AuditOutFuture polled after completion")));
                }
            }
        }
    }
}

#[pinned_drop]
impl<F, B> PinnedDrop for AuditOutFuture<F, B> {
    fn drop(self: Pin<&mut Self>) {
        if let Some(p) = self.project().pending.take() {
            finish_out(p, None).detach();
        }
    }
}
