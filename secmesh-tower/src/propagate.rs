//! Propagate: carry the current request's token and trace to the next service.
//!
//! A client-side layer for hyper-util clients, tonic channels and any tower `Service` over
//! `http::Request`. When the request goes to an allowed destination and a
//! [`RequestContext`] is current, it sets `Txn-Token` to the token the current request came
//! with and `traceparent` to a child of the current trace. To any other destination it sends
//! neither, and it removes a `Txn-Token` the caller set by hand, so a token never leaks to a
//! service the user did not name.
//!
//! Destinations are authorities: `orders.mesh.test:8443` matches that host and port;
//! `orders.mesh.test` matches that host on any port. Hosts compare case-insensitively. The
//! authority is the request URI's, else the `Host` header's.
//!
//! # Example
//! ```
//! use http::{Request, Response};
//! use secmesh_tower::context::RequestContext;
//! use secmesh_tower::propagate::PropagateLayer;
//! use tower::{service_fn, ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let client = ServiceBuilder::new()
//!     .layer(PropagateLayer::new(["payments.mesh.test"]))
//!     .service(service_fn(|req: Request<()>| async move {
//!         Ok::<_, std::convert::Infallible>(Response::new(req.headers().contains_key("traceparent")))
//!     }));
//!
//! let ctx = RequestContext::anonymous(None);
//! let to_payments = Request::get("http://payments.mesh.test/charge").body(())?;
//! let to_elsewhere = Request::get("http://example.com/").body(())?;
//! let (a, b) = ctx
//!     .scope(async {
//!         let a = client.clone().oneshot(to_payments).await.unwrap().into_body();
//!         let b = client.clone().oneshot(to_elsewhere).await.unwrap().into_body();
//!         (a, b)
//!     })
//!     .await;
//! assert!(a && !b);
//! # Ok(())
//! # }
//! ```

use std::sync::Arc;
use std::task::{Context, Poll};

use tracing::Instrument as _;
use tracing::instrument::Instrumented;

use http::header::HOST;
use http::{HeaderValue, Request};
use secmesh_tokens::TXN_TOKEN_HEADER;
use tower_layer::Layer;
use tower_service::Service;

use crate::context::RequestContext;

#[derive(Debug)]
struct Allowed {
    host: String,
    port: Option<u16>,
}

/// Adds token and trace propagation to a client. Cheap to clone.
#[derive(Clone, Debug)]
#[must_use]
pub struct PropagateLayer {
    allowed: Arc<[Allowed]>,
}

impl PropagateLayer {
    /// Propagate to these authorities (`host` or `host:port`) only.
    pub fn new(allowed: impl IntoIterator<Item = impl AsRef<str>>) -> Self {
        let allowed = allowed
            .into_iter()
            .map(|a| {
                let a = a.as_ref().to_ascii_lowercase();
                match a.rsplit_once(':') {
                    Some((h, p)) if !h.ends_with(']') || a.starts_with('[') => match p.parse() {
                        Ok(port) => Allowed {
                            host: h.to_owned(),
                            port: Some(port),
                        },
                        Err(_) => Allowed {
                            host: a,
                            port: None,
                        },
                    },
                    _ => Allowed {
                        host: a,
                        port: None,
                    },
                }
            })
            .collect();
        PropagateLayer { allowed }
    }
}

impl<S> Layer<S> for PropagateLayer {
    type Service = Propagate<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Propagate {
            inner,
            allowed: self.allowed.clone(),
        }
    }
}

/// The propagate service; see the [module docs](self).
#[derive(Clone, Debug)]
pub struct Propagate<S> {
    inner: S,
    allowed: Arc<[Allowed]>,
}

impl<S> Propagate<S> {
    fn allows<B>(&self, req: &Request<B>) -> bool {
        let (host, port) = match req.uri().authority() {
            Some(a) => (a.host().to_ascii_lowercase(), a.port_u16()),
            None => match req
                .headers()
                .get(HOST)
                .and_then(|h| h.to_str().ok())
                .and_then(|h| h.parse::<http::uri::Authority>().ok())
            {
                Some(a) => (a.host().to_ascii_lowercase(), a.port_u16()),
                None => return false,
            },
        };
        self.allowed
            .iter()
            .any(|a| a.host == host && (a.port.is_none() || a.port == port))
    }
}

impl<S, B> Service<Request<B>> for Propagate<S>
where
    S: Service<Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Instrumented<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let allowed = self.allows(&req);
        let headers = req.headers_mut();
        headers.remove(TXN_TOKEN_HEADER);
        let mut span = tracing::Span::none();
        if allowed && let Some(ctx) = RequestContext::current() {
            if let Some(token) = ctx.token()
                && let Ok(v) = HeaderValue::from_str(token)
            {
                headers.insert(TXN_TOKEN_HEADER, v);
            }
            let (tp, child) = ctx.child_traceparent();
            if let Ok(v) = HeaderValue::from_str(&tp.to_string()) {
                headers.insert("traceparent", v);
            }
            // The client span: the id the callee sees as its parent, under this service's span.
            span = tracing::info_span!(
                target: "secmesh::outbound",
                "secmesh.outbound",
                otel.kind = "client",
                trace_id = %ctx.trace_id(),
                span_id = %child,
                parent_span_id = %ctx.span_id(),
            );
        }
        let fut = span.in_scope(|| self.inner.call(req));
        fut.instrument(span)
    }
}
