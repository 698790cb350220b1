//! The JWKS layer's response future: the inner service's, or a response built here.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::Response;
use pin_project::pin_project;

/// The inner service's future, or the JWKS / metadata response built in the layer. No boxing.
#[pin_project]
pub struct ResponseFuture<F, B> {
    #[pin]
    kind: Kind<F, B>,
}

#[pin_project(project = KindProj)]
enum Kind<F, B> {
    Inner {
        #[pin]
        fut: F,
    },
    Served {
        res: Option<Response<B>>,
    },
}

impl<F, B> ResponseFuture<F, B> {
    pub(super) fn inner(fut: F) -> Self {
        ResponseFuture {
            kind: Kind::Inner { fut },
        }
    }

    pub(super) fn served(res: Response<B>) -> Self {
        ResponseFuture {
            kind: Kind::Served { res: Some(res) },
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
            // Polling a completed future is outside the `Future` contract (as for `DenyOr`).
            KindProj::Served { res } => Poll::Ready(Ok(res
                .take()
                .expect("the JWKS response future was polled after completion"))),
        }
    }
}
