//! The response future the secmesh layers share: the inner service's future, or a denial
//! built in the layer. Each layer names it as its own `ResponseFuture`.
//!
//! # Example
//! ```
//! use http::{Request, Response, StatusCode};
//! use secmesh_tokens::{Algorithm, KeySet, SigningKey, Verifier};
//! use secmesh_tower::authenticate::AuthenticateLayer;
//! use secmesh_tower::future::DenyOr;
//! use tower::{Layer, Service, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let key = SigningKey::generate(Algorithm::EdDsa)?;
//! let verifier = Verifier::new(KeySet::single(key.verifying_key(Some("k1".into()))));
//! let inner = service_fn(|_: Request<String>| async {
//!     Ok::<_, std::convert::Infallible>(Response::new(String::new()))
//! });
//! let mut svc = AuthenticateLayer::from_verifier(verifier, 16).layer(inner);
//! // The layer's response future is a named, unboxed type.
//! let fut = svc.ready().await?.call(Request::new(String::new()));
//! let _: &DenyOr<_, String> = &fut;
//! assert_eq!(fut.await?.status(), StatusCode::UNAUTHORIZED);
//! # Ok(()) }
//! ```

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::{HeaderMap, Response};
use pin_project::pin_project;

use crate::deny::DenialResponse;
use crate::outcome::{Denied, Outcome};

/// The response for a refusal in an à-la-carte layer: logged at INFO, answered by `denial`,
/// with the [`Outcome`] in its extensions.
pub(crate) fn deny_response<B, D: DenialResponse<B>>(
    denial: &D,
    request_headers: &HeaderMap,
    denied: Denied,
) -> Response<B> {
    denied.log();
    let mut res = denial.response(request_headers, &denied.reason);
    res.extensions_mut().insert(Outcome::denied(denied));
    res
}

/// The inner service's future, or the denial built in the layer. No boxing.
#[pin_project]
pub struct DenyOr<F, B> {
    #[pin]
    kind: Kind<F, B>,
    /// The outcome to put on the inner service's response (when it has none), for an audit
    /// layer outside.
    tag: Option<Outcome>,
}

#[pin_project(project = KindProj)]
enum Kind<F, B> {
    Inner {
        #[pin]
        fut: F,
    },
    Denied {
        res: Option<Response<B>>,
    },
}

impl<F, B> DenyOr<F, B> {
    pub(crate) fn tagged(fut: F, outcome: Outcome) -> Self {
        DenyOr {
            kind: Kind::Inner { fut },
            tag: Some(outcome),
        }
    }

    pub(crate) fn denied(res: Response<B>) -> Self {
        DenyOr {
            kind: Kind::Denied { res: Some(res) },
            tag: None,
        }
    }
}

impl<F, B, E> Future for DenyOr<F, B>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<B>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        match this.kind.project() {
            KindProj::Inner { fut } => {
                let mut out = std::task::ready!(fut.poll(cx));
                if let (Ok(res), Some(tag)) = (&mut out, this.tag.take())
                    && res.extensions().get::<Outcome>().is_none()
                {
                    res.extensions_mut().insert(tag);
                }
                Poll::Ready(out)
            }
            KindProj::Denied { res } => {
                Poll::Ready(Ok(res.take().expect("DenyOr polled after completion")))
            }
        }
    }
}
