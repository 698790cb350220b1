//! [`Jwks`]: the service that answers the well-known paths.

use std::convert::Infallible;
use std::future::{Ready, ready};
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::header::{
    ALLOW, CACHE_CONTROL, CONTENT_LENGTH, CONTENT_TYPE, ETAG, HeaderValue, IF_NONE_MATCH,
};
use http::{HeaderMap, Method, Request, Response, StatusCode};
use tower_service::Service;

use super::JWKS_PATH;
use super::body::JwksBody;
use super::future::ResponseFuture;
use super::layer::Shared;
use crate::deny::DenyBody;

/// Answers the JWKS and metadata paths, passes everything else to `S`.
#[derive(Clone, Debug)]
pub struct Jwks<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S> Jwks<S> {
    pub(super) fn new(inner: S, shared: Arc<Shared>) -> Jwks<S> {
        Jwks { inner, shared }
    }
}

/// The inner service of the standalone endpoint: `404 Not Found` for every request.
#[derive(Clone, Copy, Debug, Default)]
pub struct NotFound;

impl<B> Service<Request<B>> for NotFound {
    type Response = Response<JwksBody>;
    type Error = Infallible;
    type Future = Ready<Result<Response<JwksBody>, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _req: Request<B>) -> Self::Future {
        let mut res = Response::new(JwksBody::default());
        *res.status_mut() = StatusCode::NOT_FOUND;
        ready(Ok(res))
    }
}

/// Whether `If-None-Match` names `etag` (weak comparison, RFC 9110 §13.1.2; `*` matches).
fn not_modified(headers: &HeaderMap, etag: &str) -> bool {
    headers
        .get_all(IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .any(|tag| tag == "*" || tag.strip_prefix("W/").unwrap_or(tag) == etag)
}

fn respond<B: DenyBody>(
    method: &Method,
    headers: &HeaderMap,
    body: Bytes,
    etag: &str,
    content_type: &'static str,
    cache_control: HeaderValue,
) -> Response<B> {
    let etag_value = HeaderValue::from_str(etag).ok();
    let (status, body) = if not_modified(headers, etag) {
        (StatusCode::NOT_MODIFIED, None)
    } else {
        (StatusCode::OK, Some(body))
    };
    let len = body.as_ref().map(Bytes::len);
    let send = body.filter(|_| method != Method::HEAD).unwrap_or_default();
    let mut res = Response::new(B::from_bytes(send));
    *res.status_mut() = status;
    let h = res.headers_mut();
    h.insert(CACHE_CONTROL, cache_control);
    if let Some(v) = etag_value {
        h.insert(ETAG, v);
    }
    if let Some(len) = len {
        h.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
        h.insert(CONTENT_LENGTH, HeaderValue::from(len));
    }
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    res
}

impl<S> Jwks<S> {
    fn answer<B: DenyBody>(&self, method: &Method, path: &str, headers: &HeaderMap) -> Response<B> {
        if method != Method::GET && method != Method::HEAD {
            let mut res = Response::new(B::from_bytes(Bytes::new()));
            *res.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
            res.headers_mut()
                .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
            return res;
        }
        if path == JWKS_PATH {
            let p = self.shared.ring.publication();
            let cache = HeaderValue::from_str(&format!("public, max-age={}", p.max_age))
                .unwrap_or_else(|_| HeaderValue::from_static("no-cache"));
            return respond(
                method,
                headers,
                Bytes::copy_from_slice(p.jwks.as_bytes()),
                &p.etag,
                "application/jwk-set+json",
                cache,
            );
        }
        match &self.shared.metadata {
            Some(m) => respond(
                method,
                headers,
                m.body.clone(),
                &m.etag,
                "application/json",
                HeaderValue::from_static("public, max-age=3600"),
            ),
            None => {
                let mut res = Response::new(B::from_bytes(Bytes::new()));
                *res.status_mut() = StatusCode::NOT_FOUND;
                res
            }
        }
    }
}

impl<S, ReqB, B> Service<Request<ReqB>> for Jwks<S>
where
    S: Service<Request<ReqB>, Response = Response<B>>,
    B: DenyBody,
{
    type Response = Response<B>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, B>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqB>) -> Self::Future {
        if !self.shared.is_ours(req.uri().path()) {
            return ResponseFuture::inner(self.inner.call(req));
        }
        ResponseFuture::served(self.answer(req.method(), req.uri().path(), req.headers()))
    }
}
