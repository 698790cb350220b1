//! The stack's response future.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::{HeaderMap, Response};
use pin_project::{pin_project, pinned_drop};
use secmesh_audit::{Durability, Submit};
use tokio::task::futures::TaskLocalFuture;

use super::responder::{SecureBody, deny};
use crate::audit::{Answer, Pending};
use crate::context::RequestContext;
use crate::deny::Responder;
use crate::outcome::{Denied, Outcome};

/// Response future of [`Secure`](super::Secure): the inner service's future (run with the
/// request context set), or the denial made in the stack; then, with an auditor, the `in`
/// event on its way to the log (waited for inside this future, never parking a thread). Writes
/// the event also when dropped before that (the client went away, or the handler panicked).
/// No boxing.
#[pin_project(PinnedDrop)]
pub struct ResponseFuture<F, B, R> {
    #[pin]
    kind: Kind<F, B>,
    /// The outcome, to put on the inner service's response.
    outcome: Option<Outcome>,
    /// The event not yet finished, and how to answer once it is recorded.
    audit: Option<(Pending, Answer<R>)>,
    /// How to answer, once the event is recorded.
    answer: Option<Answer<R>>,
}

#[pin_project(project = KindProj)]
enum Kind<F, B> {
    /// Passed to the inner service.
    Inner {
        #[pin]
        fut: TaskLocalFuture<RequestContext, F>,
    },
    /// Answered; waiting for the event to be queued (or made durable).
    Recording {
        response: Option<Response<SecureBody<B>>>,
        #[pin]
        submit: Submit,
    },
    /// Answered, nothing to wait for.
    Ready {
        response: Option<Response<SecureBody<B>>>,
    },
}

impl<F, B, R: Responder> ResponseFuture<F, B, R> {
    pub(crate) fn inner(
        fut: TaskLocalFuture<RequestContext, F>,
        outcome: Outcome,
        audit: Option<(Pending, Answer<R>)>,
    ) -> Self {
        ResponseFuture {
            kind: Kind::Inner { fut },
            outcome: Some(outcome),
            audit,
            answer: None,
        }
    }

    pub(crate) fn ready(response: Response<SecureBody<B>>) -> Self {
        ResponseFuture {
            kind: Kind::Ready {
                response: Some(response),
            },
            outcome: None,
            audit: None,
            answer: None,
        }
    }

    /// A refusal made in the stack: answered now, recorded first when audited.
    pub(crate) fn denied(
        responder: &R,
        request_headers: &HeaderMap,
        denied: Denied,
        audit: Option<(Pending, Answer<R>)>,
    ) -> Self {
        let response = deny(responder, request_headers, denied);
        let Some((pending, answer)) = audit else {
            return Self::ready(response);
        };
        let auditor = pending.auditor.clone();
        let Some(ev) = pending.finish(Some((response.status(), response.extensions()))) else {
            // Aggregated: counted, written when its window ends.
            return Self::ready(response);
        };
        ResponseFuture {
            kind: Kind::Recording {
                response: Some(response),
                submit: auditor.submit(ev, answer.durability),
            },
            outcome: None,
            audit: None,
            answer: Some(answer),
        }
    }
}

impl<F, B, R, E> Future for ResponseFuture<F, B, R>
where
    F: Future<Output = Result<Response<B>, E>>,
    R: Responder,
{
    type Output = Result<Response<SecureBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.kind.as_mut().project() {
                KindProj::Inner { fut } => {
                    let res = match std::task::ready!(fut.poll(cx)) {
                        Ok(res) => res,
                        Err(e) => {
                            if let Some((pending, _)) = this.audit.take() {
                                let auditor = pending.auditor.clone();
                                if let Some(ev) = pending.finish(None) {
                                    auditor.submit(ev, Durability::Queued).detach();
                                }
                            }
                            return Poll::Ready(Err(e));
                        }
                    };
                    let mut res = res.map(|body| SecureBody::Inner { body });
                    if let Some(outcome) = this.outcome.take()
                        && res.extensions().get::<Outcome>().is_none()
                    {
                        res.extensions_mut().insert(outcome);
                    }
                    let Some((pending, answer)) = this.audit.take() else {
                        return Poll::Ready(Ok(res));
                    };
                    let auditor = pending.auditor.clone();
                    let Some(ev) = pending.finish(Some((res.status(), res.extensions()))) else {
                        return Poll::Ready(Ok(res));
                    };
                    let submit = auditor.submit(ev, answer.durability);
                    *this.answer = Some(answer);
                    this.kind.set(Kind::Recording {
                        response: Some(res),
                        submit,
                    });
                }
                KindProj::Recording { response, submit } => {
                    let recorded = std::task::ready!(submit.poll(cx));
                    let res = response
                        .take()
                        .expect("secure ResponseFuture polled after completion");
                    let refused = this
                        .answer
                        .as_ref()
                        .and_then(|a| a.release(recorded).err().map(|e| (a, e)));
                    return Poll::Ready(Ok(match refused {
                        None => res,
                        Some((answer, audit)) => answer.refuse(audit),
                    }));
                }
                KindProj::Ready { response } => {
                    return Poll::Ready(Ok(response
                        .take()
                        .expect("secure ResponseFuture polled after completion")));
                }
            }
        }
    }
}

#[pinned_drop]
impl<F, B, R> PinnedDrop for ResponseFuture<F, B, R> {
    fn drop(self: Pin<&mut Self>) {
        // Not answered: the client went away or the handler panicked. (A `Submit` still
        // waiting hands its event over when it drops.)
        if let Some((pending, _)) = self.project().audit.take() {
            let auditor = pending.auditor.clone();
            if let Some(ev) = pending.finish(None) {
                auditor.submit(ev, Durability::Queued).detach();
            }
        }
    }
}
