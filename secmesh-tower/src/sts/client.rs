//! The client side of the Txn-Token Service: one request, one token, over mutual TLS.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use http::{Request, StatusCode, Uri, header};
use http_body::Body;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use rustls::ClientConfig;
use secmesh_core::ExpiryClass;
use secmesh_core::claims::Scope;
use secmesh_core::exchange::{
    ExchangeError, MAX_RESPONSE, ResponseError, SubjectToken, SubjectTokenType, TxnTokenRequest,
    TxnTokenResponse,
};
use secmesh_tls::config::{ServerId, Workload};

use crate::edge::{ExchangeFailed, ExchangeFuture, Exchanger};
use crate::tls::TlsConnector;

/// Why [`StsClient::exchange`] returned no token.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StsClientError {
    /// The service refused with an RFC 6749 error: the code is the contract.
    #[error("refused: {0}")]
    Refused(ExchangeError),
    /// Another status, or a 4xx without a well-formed RFC 6749 body.
    #[error("unexpected HTTP status {0}")]
    Status(u16),
    /// A 200 whose body is not a Txn-Token Response.
    #[error("malformed response: {0}")]
    Malformed(#[from] ResponseError),
    /// The exchange did not complete within the timeout.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// The service could not be reached (connection, TLS handshake, HTTP).
    #[error("cannot reach the Txn-Token Service: {0}")]
    Connect(String),
    /// The URL is not usable (`https` only, with a host).
    #[error("invalid Txn-Token Service URL: {0}")]
    Url(String),
}

/// A client of the Txn-Token Service's token endpoint over mutual TLS. Cheap to clone: the
/// clones share one connection pool, so kept-alive connections are reused. It caches nothing:
/// each call asks for, and gets, its own token.
#[derive(Clone)]
pub struct StsClient {
    inner: Arc<Inner>,
}

struct Inner {
    client: Client<TlsConnector, String>,
    url: Uri,
    timeout: Duration,
    trust_domain: Option<String>,
}

impl fmt::Debug for StsClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StsClient")
            .field("url", &self.inner.url)
            .field("timeout", &self.inner.timeout)
            .finish_non_exhaustive()
    }
}

/// The default bound on one exchange: connect, handshake, request and response.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

impl StsClient {
    /// A client of the token endpoint at `url` (`https://host:port/token`) with the mutual-TLS
    /// configuration `config` (a workload's client configuration, pinning the service's
    /// identity).
    pub fn new(config: Arc<ClientConfig>, url: &str) -> Result<StsClient, StsClientError> {
        let url: Uri = url
            .parse()
            .map_err(|e: http::uri::InvalidUri| StsClientError::Url(e.to_string()))?;
        if url.scheme_str() != Some("https") || url.host().is_none() {
            return Err(StsClientError::Url("an https URL with a host".into()));
        }
        let connector = TlsConnector::new(config).timeout(Duration::from_secs(5));
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .build(connector);
        Ok(StsClient {
            inner: Arc::new(Inner {
                client,
                url,
                timeout: DEFAULT_TIMEOUT,
                trust_domain: None,
            }),
        })
    }

    /// A client for `workload`, accepting only the service `server` (e.g. its exact SPIFFE
    /// ID).
    pub fn from_workload(
        workload: &Workload,
        server: ServerId,
        url: &str,
    ) -> Result<StsClient, StsClientError> {
        StsClient::new(workload.client_config(server), url)
    }

    fn map(self, f: impl FnOnce(&mut Inner)) -> StsClient {
        let mut inner = Inner {
            client: self.inner.client.clone(),
            url: self.inner.url.clone(),
            timeout: self.inner.timeout,
            trust_domain: self.inner.trust_domain.clone(),
        };
        f(&mut inner);
        StsClient {
            inner: Arc::new(inner),
        }
    }

    /// Bound each exchange by `timeout` (10 s by default).
    pub fn timeout(self, timeout: Duration) -> StsClient {
        self.map(|i| i.timeout = timeout)
    }

    /// The trust domain replacements are asked for (renewal through this client: the
    /// [`Replace`](secmesh_tokens::renew::Replace) implementation).
    pub fn trust_domain(self, trust_domain: impl Into<String>) -> StsClient {
        let td = trust_domain.into();
        self.map(|i| i.trust_domain = Some(td))
    }

    /// Send `request`; the issued token, or why not.
    pub async fn exchange(
        &self,
        request: &TxnTokenRequest,
    ) -> Result<TxnTokenResponse, StsClientError> {
        let timeout = self.inner.timeout;
        tokio::time::timeout(timeout, self.send(request))
            .await
            .map_err(|_| StsClientError::Timeout(timeout))?
    }

    async fn send(&self, request: &TxnTokenRequest) -> Result<TxnTokenResponse, StsClientError> {
        let req = Request::post(self.inner.url.clone())
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(header::ACCEPT, "application/json")
            .body(request.to_form())
            .map_err(|e| StsClientError::Url(e.to_string()))?;
        let res = self
            .inner
            .client
            .request(req)
            .await
            .map_err(|e| StsClientError::Connect(error_chain(&e)))?;
        let status = res.status();
        let body = read_limited(res.into_body()).await;
        match status {
            StatusCode::OK => Ok(TxnTokenResponse::from_json(&body?)?),
            s if s.is_client_error() => match body.ok().map(|b| ExchangeError::from_json(&b)) {
                Some(Ok(e)) => Err(StsClientError::Refused(e)),
                _ => Err(StsClientError::Status(s.as_u16())),
            },
            s => Err(StsClientError::Status(s.as_u16())),
        }
    }
}

/// The body, at most [`MAX_RESPONSE`] bytes; a longer one is refused as soon as it is.
async fn read_limited<B>(body: B) -> Result<Vec<u8>, StsClientError>
where
    B: Body,
    B::Error: fmt::Display,
{
    let mut body = std::pin::pin!(body);
    let mut buf = BytesMut::new();
    while let Some(frame) = std::future::poll_fn(|cx| body.as_mut().poll_frame(cx)).await {
        let frame = frame.map_err(|e| StsClientError::Connect(e.to_string()))?;
        if let Ok(mut data) = frame.into_data() {
            if buf.len() + data.remaining() > MAX_RESPONSE {
                return Err(StsClientError::Malformed(ResponseError::TooLarge));
            }
            while data.has_remaining() {
                let chunk = data.chunk();
                let n = chunk.len();
                buf.extend_from_slice(chunk);
                data.advance(n);
            }
        }
    }
    Ok(buf.to_vec())
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

impl Exchanger for StsClient {
    fn exchange(&self, request: TxnTokenRequest) -> ExchangeFuture<'_> {
        Box::pin(async move {
            match StsClient::exchange(self, &request).await {
                Ok(r) => Ok(r.into_access_token()),
                Err(StsClientError::Refused(e)) => Err(ExchangeFailed::Refused(e)),
                Err(other) => Err(ExchangeFailed::Unavailable(other.to_string())),
            }
        })
    }
}

/// Renewal through the service: a replacement txn-token for the configured
/// [`trust_domain`](StsClient::trust_domain).
impl secmesh_tokens::renew::Replace for StsClient {
    fn replace<'a>(
        &'a self,
        token: &'a str,
        scope: &'a Scope,
        class: ExpiryClass,
    ) -> secmesh_tokens::renew::ReplaceFuture<'a> {
        use secmesh_tokens::renew::RenewError;
        Box::pin(async move {
            let Some(td) = &self.inner.trust_domain else {
                return Err(RenewError::Unavailable(
                    "the client has no trust domain for replacements".into(),
                ));
            };
            let request = TxnTokenRequest::new(
                td.clone(),
                scope.clone(),
                SubjectToken::new(token),
                SubjectTokenType::TxnToken,
            )
            .class(class);
            match StsClient::exchange(self, &request).await {
                Ok(r) => Ok(r.into_access_token()),
                Err(StsClientError::Refused(e)) => Err(RenewError::Refused(e.to_string())),
                Err(other) => Err(RenewError::Unavailable(other.to_string())),
            }
        })
    }
}
