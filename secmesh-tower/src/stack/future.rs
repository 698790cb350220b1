//! The stack's response future.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::{HeaderMap, Response};
use pin_project::{pin_project, pinned_drop};
use secmesh_audit::{Durability, Submit};
use tokio::task::futures::TaskLocalFuture;
use tracing::instrument::Instrumented;

use super::responder::{SecureBody, deny};
use crate::audit::{Answer, Pending};
use crate::context::RequestContext;
use crate::deny::{DenyReason, Responder};
use crate::outcome::{Denied, Outcome};

/// What the stack does once a limit kept in another process has answered: authorize and call
/// the inner service, or answer the refusal. Only [`Secure`](super::Secure) makes one.
pub trait Resume<F, B> {
    /// Go on after the limit stage said `refused` (`None`: under every limit).
    fn resume(self, refused: Option<DenyReason>) -> Resumed<F, B>;
}

/// What [`Resume::resume`] gives: the inner future, or the refusal's response.
#[non_exhaustive]
pub enum Resumed<F, B> {
    /// Authorized: the inner future (with the request context set, in the request's span) and
    /// the outcome.
    Inner(Instrumented<TaskLocalFuture<RequestContext, F>>, Outcome),
    /// Refused: the answer.
    Denied(Response<SecureBody<B>>),
}

impl<F, B> std::fmt::Debug for Resumed<F, B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Resumed::Inner(_, outcome) => f.debug_tuple("Inner").field(outcome).finish(),
            Resumed::Denied(res) => f.debug_tuple("Denied").field(&res.status()).finish(),
        }
    }
}

/// No continuation (the type of a stack's future that never waits on a limit).
#[derive(Debug)]
pub enum NoResume {}

impl<F, B> Resume<F, B> for NoResume {
    fn resume(self, _: Option<DenyReason>) -> Resumed<F, B> {
        match self {}
    }
}

/// Response future of [`Secure`](super::Secure): the inner service's future (run with the
/// request context set), or the denial made in the stack; then, with an auditor, the `in`
/// event on its way to the log (waited for inside this future, never parking a thread). Writes
/// the event also when dropped before that (the client went away, or the handler panicked).
/// Boxes only the round trip of a limit kept in another process (Redis).
#[pin_project(PinnedDrop)]
pub struct ResponseFuture<F, B, R, D = NoResume> {
    #[pin]
    kind: Kind<F, B, D>,
    /// The outcome, to put on the inner service's response.
    outcome: Option<Outcome>,
    /// The event not yet finished, and how to answer once it is recorded.
    audit: Option<(Pending, Answer<R>)>,
    /// How to answer, once the event is recorded.
    answer: Option<Answer<R>>,
}

#[pin_project(project = KindProj)]
enum Kind<F, B, D> {
    /// Waiting for a limit kept in another process; then `resume`.
    Limiting {
        wait: Pin<Box<dyn Future<Output = Option<DenyReason>> + Send>>,
        resume: Option<D>,
    },
    /// Passed to the inner service.
    Inner {
        #[pin]
        fut: Instrumented<TaskLocalFuture<RequestContext, F>>,
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

impl<F, B, R: Responder, D> ResponseFuture<F, B, R, D> {
    /// Wait for the limit stage, then `resume`.
    pub(crate) fn limiting(
        wait: Pin<Box<dyn Future<Output = Option<DenyReason>> + Send>>,
        resume: D,
        audit: Option<(Pending, Answer<R>)>,
    ) -> Self {
        ResponseFuture {
            kind: Kind::Limiting {
                wait,
                resume: Some(resume),
            },
            outcome: None,
            audit,
            answer: None,
        }
    }

    pub(crate) fn inner(
        fut: Instrumented<TaskLocalFuture<RequestContext, F>>,
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
        Self::answered(response, audit)
    }

    /// An answer made in the stack: recorded first when audited.
    pub(crate) fn answered(
        response: Response<SecureBody<B>>,
        audit: Option<(Pending, Answer<R>)>,
    ) -> Self {
        let (kind, answer) = answered(response, audit);
        ResponseFuture {
            kind,
            outcome: None,
            audit: None,
            answer,
        }
    }
}

/// The state of an answer made in the stack: recording its event first when audited.
fn answered<F, B, R, D>(
    response: Response<SecureBody<B>>,
    audit: Option<(Pending, Answer<R>)>,
) -> (Kind<F, B, D>, Option<Answer<R>>) {
    let ready = |response| Kind::Ready {
        response: Some(response),
    };
    let Some((pending, answer)) = audit else {
        return (ready(response), None);
    };
    let auditor = pending.auditor.clone();
    let Some(ev) = pending.finish(Some((response.status(), response.extensions()))) else {
        // Aggregated: counted, written when its window ends.
        return (ready(response), None);
    };
    let submit = auditor.submit(ev, answer.durability);
    (
        Kind::Recording {
            response: Some(response),
            submit,
        },
        Some(answer),
    )
}

impl<F, B, R, D, E> Future for ResponseFuture<F, B, R, D>
where
    F: Future<Output = Result<Response<B>, E>>,
    R: Responder,
    D: Resume<F, B>,
{
    type Output = Result<Response<SecureBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.kind.as_mut().project() {
                KindProj::Limiting { wait, resume } => {
                    let refused = std::task::ready!(wait.as_mut().poll(cx));
                    let resume = resume
                        .take()
                        .expect("secure ResponseFuture polled after completion");
                    match resume.resume(refused) {
                        Resumed::Inner(fut, outcome) => {
                            if let Some((pending, _)) = this.audit.as_mut() {
                                pending.note(&outcome);
                            }
                            *this.outcome = Some(outcome);
                            this.kind.set(Kind::Inner { fut });
                        }
                        Resumed::Denied(response) => {
                            let (kind, answer) = answered(response, this.audit.take());
                            *this.answer = answer;
                            this.kind.set(kind);
                        }
                    }
                }
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
impl<F, B, R, D> PinnedDrop for ResponseFuture<F, B, R, D> {
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
