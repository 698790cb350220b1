//! The server-side audit layer's response future.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::header::CONTENT_TYPE;
use http::{HeaderMap, HeaderValue, Response};
use pin_project::{pin_project, pinned_drop};
use secmesh_audit::{AuditError, Durability, FullPolicy, Submit};

use super::{BareStatus, Pending};
use crate::deny::{DenialResponse, DenyReason};
use crate::outcome::Denied;

/// How a finished request is answered once its event is recorded (or not).
pub(crate) struct Answer<D> {
    pub(crate) durability: Durability,
    pub(crate) policy: FullPolicy,
    pub(crate) denial: D,
    /// The request's content type, to answer a gRPC caller in gRPC.
    pub(crate) content_type: Option<HeaderValue>,
}

impl<D> Answer<D> {
    /// The request headers that choose the answer's form (gRPC or HTTP).
    pub(crate) fn headers(&self) -> HeaderMap {
        let mut headers = HeaderMap::new();
        if let Some(ct) = &self.content_type {
            headers.insert(CONTENT_TYPE, ct.clone());
        }
        headers
    }

    /// Whether to release the response given how recording its event went; else the reason
    /// to refuse it.
    pub(crate) fn release(&self, recorded: Result<(), AuditError>) -> Result<(), AuditError> {
        match recorded {
            Ok(()) => Ok(()),
            // Drop-and-count serves whatever happens to the log (and counts the loss).
            Err(AuditError::NotDurable) if self.policy == FullPolicy::DropAndCount => Ok(()),
            Err(e @ (AuditError::QueueFull | AuditError::NotDurable)) => Err(e),
            Err(e) if self.durability == Durability::Durable => Err(e),
            Err(e) => {
                tracing::error!(target: "secmesh::audit", error = %e, "audit event not recorded");
                Ok(())
            }
        }
    }

    pub(crate) fn refuse<B>(&self, audit: AuditError) -> Response<B>
    where
        D: DenialResponse<B>,
    {
        let denied = Denied::new(DenyReason::AuditUnavailable(audit));
        crate::future::deny_response(&self.denial, &self.headers(), denied)
    }
}

/// Response future of [`Audit`](super::Audit): runs the inner service, then records the `in`
/// event and, when the layer is [durable](super::AuditLayer::durable), holds the response
/// until the event is synced. Writes the event also when it is dropped before that (the client
/// went away, or the handler panicked). No boxing.
#[pin_project(PinnedDrop)]
pub struct ResponseFuture<F, B, D = BareStatus> {
    #[pin]
    kind: Kind<F, B>,
    pending: Option<Pending>,
    answer: Answer<D>,
}

#[pin_project(project = KindProj)]
enum Kind<F, B> {
    /// Passed to the inner service.
    Inner {
        #[pin]
        fut: F,
    },
    /// Answered; waiting for the event to be queued (or made durable).
    Recording {
        response: Option<Response<B>>,
        #[pin]
        submit: Submit,
    },
    /// Refused here, before the inner service ran.
    Refused { response: Option<Response<B>> },
}

impl<F, B, D> ResponseFuture<F, B, D> {
    pub(crate) fn inner(fut: F, pending: Pending, answer: Answer<D>) -> Self {
        ResponseFuture {
            kind: Kind::Inner { fut },
            pending: Some(pending),
            answer,
        }
    }

    pub(crate) fn refused(response: Response<B>, answer: Answer<D>) -> Self {
        ResponseFuture {
            kind: Kind::Refused {
                response: Some(response),
            },
            pending: None,
            answer,
        }
    }
}

impl<F, B, D, E> Future for ResponseFuture<F, B, D>
where
    F: Future<Output = Result<Response<B>, E>>,
    D: DenialResponse<B>,
{
    type Output = Result<Response<B>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.kind.as_mut().project() {
                KindProj::Inner { fut } => {
                    let out = std::task::ready!(fut.poll(cx));
                    let Some(pending) = this.pending.take() else {
                        return Poll::Ready(out);
                    };
                    let auditor = pending.auditor.clone();
                    let res = match out {
                        Ok(res) => res,
                        Err(e) => {
                            if let Some(ev) = pending.finish(None) {
                                auditor.submit(ev, Durability::Queued).detach();
                            }
                            return Poll::Ready(Err(e));
                        }
                    };
                    let Some(ev) = pending.finish(Some((res.status(), res.extensions()))) else {
                        // Aggregated: counted, written when its window ends.
                        return Poll::Ready(Ok(res));
                    };
                    let submit = auditor.submit(ev, this.answer.durability);
                    this.kind.set(Kind::Recording {
                        response: Some(res),
                        submit,
                    });
                }
                KindProj::Recording { response, submit } => {
                    let recorded = std::task::ready!(submit.poll(cx));
                    let res = response
                        .take()
                        .expect("audit ResponseFuture polled after completion");
                    return Poll::Ready(Ok(match this.answer.release(recorded) {
                        Ok(()) => res,
                        Err(audit) => this.answer.refuse(audit),
                    }));
                }
                KindProj::Refused { response } => {
                    return Poll::Ready(Ok(response
                        .take()
                        .expect("audit ResponseFuture polled after completion")));
                }
            }
        }
    }
}

#[pinned_drop]
impl<F, B, D> PinnedDrop for ResponseFuture<F, B, D> {
    fn drop(self: Pin<&mut Self>) {
        // Not answered: the client went away or the handler panicked. (A `Submit` still
        // waiting hands its event over when it drops.)
        if let Some(pending) = self.project().pending.take() {
            let auditor = pending.auditor.clone();
            if let Some(ev) = pending.finish(None) {
                auditor.submit(ev, Durability::Queued).detach();
            }
        }
    }
}
