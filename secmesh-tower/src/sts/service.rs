//! The token endpoint as a tower service.

use std::convert::Infallible;
use std::fmt;
use std::future::{Future, poll_fn};
use std::marker::PhantomData;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes, BytesMut};
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body::Body;
use secmesh_core::PeerIdentity;
use secmesh_core::exchange::{ErrorCode, ExchangeError, MAX_REQUEST, TxnTokenRequest};
use tower_service::Service;

use super::{ExchangeFailure, Sts};
use crate::deny::DenyBody;

/// The Txn-Token Service's endpoint: `POST` a form-encoded Txn-Token Request over mutual TLS,
/// get the txn-token as JSON; see the [module docs](super). It answers every request it gets:
/// mount it on the token path (`/token` is what `secmesh sts serve` uses).
///
/// `B` is the response body type (any [`DenyBody`]: `String`, `Bytes`, axum's `Body`, ...).
pub struct TxnTokenService<B = String> {
    sts: Sts,
    _body: PhantomData<fn() -> B>,
}

impl<B> TxnTokenService<B> {
    /// The endpoint of `sts`.
    pub fn new(sts: Sts) -> Self {
        TxnTokenService {
            sts,
            _body: PhantomData,
        }
    }
}

impl<B> Clone for TxnTokenService<B> {
    fn clone(&self) -> Self {
        TxnTokenService::new(self.sts.clone())
    }
}

impl<B> fmt::Debug for TxnTokenService<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("TxnTokenService").field(&self.sts).finish()
    }
}

/// The response future of [`TxnTokenService`]. One exchange costs a signature verification and
/// a signature: the one allocation of this boxed future does not show.
pub struct ResponseFuture<B> {
    inner: Pin<Box<dyn Future<Output = Response<B>> + Send>>,
}

impl<B> fmt::Debug for ResponseFuture<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ResponseFuture")
    }
}

impl<B> Future for ResponseFuture<B> {
    type Output = Result<Response<B>, Infallible>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.inner.as_mut().poll(cx).map(Ok)
    }
}

impl<ReqB, B> Service<Request<ReqB>> for TxnTokenService<B>
where
    ReqB: Body + Send + 'static,
    ReqB::Data: Send,
    B: DenyBody + Send + 'static,
{
    type Response = Response<B>;
    type Error = Infallible;
    type Future = ResponseFuture<B>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<ReqB>) -> Self::Future {
        let sts = self.sts.clone();
        ResponseFuture {
            inner: Box::pin(async move { handle(sts, req).await }),
        }
    }
}

async fn handle<ReqB, B>(sts: Sts, req: Request<ReqB>) -> Response<B>
where
    ReqB: Body + Send + 'static,
    ReqB::Data: Send,
    B: DenyBody,
{
    let (parts, body) = req.into_parts();
    if parts.method != Method::POST {
        let mut res = error(&ExchangeError::new(
            ErrorCode::InvalidRequest,
            "the token endpoint takes POST",
        ));
        *res.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
        res.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("POST"));
        return res;
    }
    let Some(peer) = parts.extensions.get::<PeerIdentity>() else {
        return error(&ExchangeError::new(
            ErrorCode::InvalidClient,
            "the requesting workload authenticates with a client certificate",
        ));
    };
    let requester = peer.spiffe_id.to_string();
    if !is_form(parts.headers.get(header::CONTENT_TYPE)) {
        return error(&ExchangeError::new(
            ErrorCode::InvalidRequest,
            "the body is application/x-www-form-urlencoded",
        ));
    }
    if parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .is_some_and(|n| n > MAX_REQUEST as u64)
    {
        return error(&ExchangeError::new(
            ErrorCode::InvalidRequest,
            "the request body is too large",
        ));
    }
    let bytes = match tokio::time::timeout(sts.body_timeout(), read_limited(body)).await {
        Ok(Ok(b)) => b,
        Ok(Err(e)) => return error(&e),
        Err(_) => {
            return error(&ExchangeError::new(
                ErrorCode::InvalidRequest,
                "the request body did not arrive in time",
            ));
        }
    };
    let request = match TxnTokenRequest::from_form(&bytes) {
        Ok(r) => r,
        Err(e) => return error(&e),
    };
    match sts.exchange(&requester, &request).await {
        Ok(issued) => json(StatusCode::OK, issued.into_response().to_json()),
        Err(ExchangeFailure::Refused(refusal)) => error(&refusal.error),
        Err(ExchangeFailure::Unavailable(why)) => {
            tracing::error!(target: "secmesh::sts", reason = %why, "exchange not answered");
            let mut res = json(
                StatusCode::SERVICE_UNAVAILABLE,
                r#"{"error":"temporarily_unavailable"}"#.to_owned(),
            );
            res.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            res
        }
    }
}

/// Read a body of at most [`MAX_REQUEST`] bytes; a longer one is refused as soon as it is.
async fn read_limited<ReqB>(body: ReqB) -> Result<Bytes, ExchangeError>
where
    ReqB: Body,
{
    let too_large =
        || ExchangeError::new(ErrorCode::InvalidRequest, "the request body is too large");
    let mut body = std::pin::pin!(body);
    let mut buf = BytesMut::new();
    while let Some(frame) = poll_fn(|cx| body.as_mut().poll_frame(cx)).await {
        let frame = frame.map_err(|_| {
            ExchangeError::new(
                ErrorCode::InvalidRequest,
                "the request body could not be read",
            )
        })?;
        if let Ok(mut data) = frame.into_data() {
            if buf.len() + data.remaining() > MAX_REQUEST {
                return Err(too_large());
            }
            while data.has_remaining() {
                let chunk = data.chunk();
                buf.extend_from_slice(chunk);
                let n = chunk.len();
                data.advance(n);
            }
        }
    }
    Ok(buf.freeze())
}

/// `application/x-www-form-urlencoded`, with parameters (`; charset=UTF-8`) or without.
fn is_form(value: Option<&HeaderValue>) -> bool {
    value
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|m| {
            m.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        })
}

fn error<B: DenyBody>(e: &ExchangeError) -> Response<B> {
    let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::BAD_REQUEST);
    json(status, e.to_json())
}

fn json<B: DenyBody>(status: StatusCode, body: String) -> Response<B> {
    let mut res = Response::new(B::from_bytes(Bytes::from(body)));
    *res.status_mut() = status;
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    res
}
