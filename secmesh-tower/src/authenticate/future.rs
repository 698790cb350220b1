//! The authenticate layer's response future.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::Response;
use pin_project::pin_project;
use tokio::task::futures::TaskLocalFuture;

use crate::context::RequestContext;

/// Response future of [`Authenticate`](super::Authenticate): the inner service's future run
/// with the request context set, or the denial built in the layer.
#[pin_project]
pub struct ResponseFuture<F, B> {
    #[pin]
    kind: Kind<F, B>,
}

#[pin_project(project = KindProj)]
enum Kind<F, B> {
    Inner {
        #[pin]
        fut: TaskLocalFuture<RequestContext, F>,
    },
    Denied {
        res: Option<Response<B>>,
    },
}

impl<F, B> ResponseFuture<F, B> {
    pub(crate) fn inner(fut: TaskLocalFuture<RequestContext, F>) -> Self {
        ResponseFuture {
            kind: Kind::Inner { fut },
        }
    }

    pub(crate) fn denied(res: Response<B>) -> Self {
        ResponseFuture {
            kind: Kind::Denied { res: Some(res) },
        }
    }
}

impl<F, B, E> Future for ResponseFuture<F, B>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<B>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Inner { fut } => fut.poll(cx),
            KindProj::Denied { res } => Poll::Ready(Ok(res
                .take()
                .expect("ResponseFuture polled after completion"))),
        }
    }
}
