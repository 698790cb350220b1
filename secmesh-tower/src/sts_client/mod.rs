//! The client side of the Txn-Token Service: a workload exchanges a subject token for a
//! txn-token (the RFC 8693 profile of the Transaction Tokens draft) over mutual TLS.
//!
//! [`StsClient`] POSTs a [`TxnTokenRequest`] as `application/x-www-form-urlencoded` to the
//! service's token endpoint (the full URL, e.g. `https://sts.mesh.internal:8443/token`) and
//! reads the answer with the strict readers of [`secmesh_core::exchange`]:
//!
//! - the connection presents the workload's X.509-SVID ([`Workload::client_config`]) and
//!   accepts the service only if its certificate verifies and its SPIFFE ID is the
//!   [`ServerId`] given (pin the service's own ID: the subject token is a credential, and any
//!   workload of the trust domain that could pose as the service would collect it);
//! - HTTP/1.1 only; connections are kept alive and pooled (hyper-util's client), so a workload
//!   that exchanges often pays the handshake once;
//! - bounded: the connect (TCP and handshake) and total timeouts (5 s and 10 s by default),
//!   the response body read with a limit of [`MAX_RESPONSE`] bytes (a larger
//!   `Content-Length` is refused before reading, a longer body as soon as it crosses the
//!   limit), redirects never followed, only `https` unless [`StsClientBuilder::allow_http`];
//! - nothing is cached: each call is one request and yields its own token;
//! - a 200 is a [`TxnTokenResponse`] or [`StsClientError::Malformed`]; a 4xx with an RFC 6749
//!   error body is [`StsClientError::Refused`] with its [`ExchangeError`] (the code is the
//!   contract); everything else is [`StsClientError::Status`] or
//!   [`StsClientError::Redirect`]. No error and no `Debug` shows the subject token or the
//!   issued one.
//!
//! The files: `error` ([`StsClientError`]), `connect` (the connector: mutual TLS through
//! [`TlsConnector`], plain TCP only with `allow_http`).
//!
//! # Example
//! ```
//! use axum::{Router, routing::post};
//! use secmesh_core::Scope;
//! use secmesh_core::exchange::{SubjectToken, SubjectTokenType, TxnTokenRequest};
//! use secmesh_tls::ca::Ca;
//! use secmesh_tls::config::{ClientAuth, ServerId, TlsFiles, Workload};
//! use secmesh_tower::sts_client::StsClient;
//! use secmesh_tower::tls::TlsServer;
//!
//! # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let dir = tempfile::tempdir()?;
//! # let ca = Ca::init(dir.path().join("ca"), "mesh.test".parse()?)?;
//! # let load = |name: &str| -> Result<Workload, Box<dyn std::error::Error>> {
//! #     let svid = ca.issue(&format!("spiffe://mesh.test/{name}").parse()?, 1)?;
//! #     std::fs::write(dir.path().join(format!("{name}.crt")), &svid.cert_pem)?;
//! #     std::fs::write(dir.path().join(format!("{name}.key")), &svid.key_pem)?;
//! #     Ok(Workload::load(TlsFiles::new(
//! #         dir.path().join(format!("{name}.crt")),
//! #         dir.path().join(format!("{name}.key")),
//! #         dir.path().join("ca/ca.crt"),
//! #     ))?)
//! # };
//! // A stand-in for the Txn-Token Service, answering one fixed token.
//! let sts = load("sts")?;
//! let app = Router::new().route(
//!     "/token",
//!     post(|| async {
//!         r#"{"access_token":"eyJhbGciOiJFZERTQSJ9.e30.c2ln",
//!             "issued_token_type":"urn:ietf:params:oauth:token-type:txn_token",
//!             "token_type":"N_A","expires_in":180}"#
//!     }),
//! );
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let url = format!("https://{}/token", listener.local_addr()?);
//! tokio::spawn(TlsServer::from_workload(&sts, ClientAuth::Required).serve(listener, app));
//!
//! // The workload that asks, pinning the service's SPIFFE ID.
//! let orders = load("orders")?;
//! let client = StsClient::builder(&orders, ServerId::exact("spiffe://mesh.test/sts".parse()?), url)
//!     .build()?;
//! let request = TxnTokenRequest::new(
//!     "mesh.test",
//!     Scope::new("read:orders/*")?,
//!     SubjectToken::new("the-idp-access-token"),
//!     SubjectTokenType::AccessToken,
//! );
//! let response = client.exchange(&request).await?;
//! assert_eq!(response.access_token(), "eyJhbGciOiJFZERTQSJ9.e30.c2ln");
//! assert_eq!(response.expires_in_secs(), Some(180));
//! // Neither token is ever printed.
//! assert!(!format!("{response:?} {request:?}").contains("eyJ"));
//! # Ok(()) }
//! ```

mod connect;
mod error;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{ACCEPT, CONTENT_LENGTH, CONTENT_TYPE};
use http::{Request, Response, Uri};
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use secmesh_core::exchange::{
    ExchangeError, MAX_RESPONSE, ResponseError, TxnTokenRequest, TxnTokenResponse,
};
use secmesh_tls::config::{ServerId, Workload};

use crate::serve::BoxError;
use crate::tls::TlsConnector;
use connect::Connector;

pub use error::StsClientError;

/// The default connect timeout (TCP connect and TLS handshake).
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The default total timeout of one exchange (connecting, sending, reading the answer).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// How many idle connections to the service are kept for reuse.
const MAX_IDLE: usize = 8;

/// How long an idle connection is kept.
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// A client of the Txn-Token Service; see the [module docs](self). Cheap to clone: clones
/// share the connection pool.
#[derive(Clone)]
pub struct StsClient {
    inner: Arc<Inner>,
}

struct Inner {
    client: Client<Connector, Full<Bytes>>,
    endpoint: Uri,
    timeout: Duration,
    trust_domain: Option<String>,
}

impl fmt::Debug for StsClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StsClient")
            .field("endpoint", &self.inner.endpoint)
            .field("timeout", &self.inner.timeout)
            .finish_non_exhaustive()
    }
}

/// Builds an [`StsClient`]; from [`StsClient::builder`].
#[derive(Clone, Debug)]
#[must_use]
pub struct StsClientBuilder {
    workload: Workload,
    server: ServerId,
    endpoint: String,
    connect_timeout: Duration,
    timeout: Duration,
    allow_http: bool,
    trust_domain: Option<String>,
}

impl StsClient {
    /// [`builder`](Self::builder) with the defaults, built.
    pub fn from_workload(
        workload: &Workload,
        server: ServerId,
        endpoint: impl Into<String>,
    ) -> Result<StsClient, StsClientError> {
        StsClient::builder(workload, server, endpoint).build()
    }

    /// A client for the token endpoint `endpoint` (a full `https` URL), connecting as
    /// `workload` and accepting a service whose SPIFFE ID `server` accepts.
    pub fn builder(
        workload: &Workload,
        server: ServerId,
        endpoint: impl Into<String>,
    ) -> StsClientBuilder {
        StsClientBuilder {
            workload: workload.clone(),
            server,
            endpoint: endpoint.into(),
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            timeout: DEFAULT_TIMEOUT,
            allow_http: false,
            trust_domain: None,
        }
    }

    /// The token endpoint.
    pub fn endpoint(&self) -> &Uri {
        &self.inner.endpoint
    }

    /// Exchange: POST `request` to the endpoint and read the service's answer, within the
    /// total timeout. Each call is one request (nothing is cached).
    pub async fn exchange(
        &self,
        request: &TxnTokenRequest,
    ) -> Result<TxnTokenResponse, StsClientError> {
        let timeout = self.inner.timeout;
        tokio::time::timeout(timeout, self.exchange_within(request))
            .await
            .map_err(|_| StsClientError::Timeout(timeout))?
    }

    async fn exchange_within(
        &self,
        request: &TxnTokenRequest,
    ) -> Result<TxnTokenResponse, StsClientError> {
        let req = Request::post(self.inner.endpoint.clone())
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(ACCEPT, "application/json")
            .body(Full::new(Bytes::from(request.to_form())))
            .map_err(|e| StsClientError::Http(Box::new(e)))?;
        let response = self.inner.client.request(req).await.map_err(|e| {
            if e.is_connect() {
                StsClientError::Connect(Box::new(e))
            } else {
                StsClientError::Http(Box::new(e))
            }
        })?;
        let status = response.status().as_u16();
        match status {
            200 => {
                let body = match read_limited(response).await {
                    Ok(body) => body,
                    Err(BodyError::TooLarge) => return Err(ResponseError::TooLarge.into()),
                    Err(BodyError::Http(e)) => return Err(StsClientError::Http(e)),
                };
                let answer = TxnTokenResponse::from_json(&body)?;
                // A txn-token is a JWS compact serialization: visible ASCII, nothing that
                // could drive a terminal or split a header.
                if !answer.access_token().bytes().all(|b| b.is_ascii_graphic()) {
                    return Err(ResponseError::Malformed("access_token").into());
                }
                Ok(answer)
            }
            300..=399 => Err(StsClientError::Redirect(status)),
            400..=499 => match read_limited(response).await {
                Ok(body) => match ExchangeError::from_json(&body) {
                    Ok(refused) => Err(StsClientError::Refused(refused)),
                    Err(_) => Err(StsClientError::Status(status)),
                },
                Err(BodyError::TooLarge) => Err(StsClientError::Status(status)),
                Err(BodyError::Http(e)) => Err(StsClientError::Http(e)),
            },
            // The body is not read: the connection is dropped with the response.
            _ => Err(StsClientError::Status(status)),
        }
    }
}

impl StsClientBuilder {
    /// The time allowed for the TCP connect and the TLS handshake together (default 5 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// The time allowed for a whole exchange: connecting (when no pooled connection is free),
    /// sending the request and reading the answer (default 10 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The trust domain replacements are asked for, when this client renews tokens (its
    /// [`Replace`](secmesh_tokens::renew::Replace) implementation).
    pub fn trust_domain(mut self, trust_domain: impl Into<String>) -> Self {
        self.trust_domain = Some(trust_domain.into());
        self
    }

    /// Allow a plain `http` endpoint (default: only `https`). The subject token then crosses
    /// the network in the clear and the service is not authenticated: for tests and loopback
    /// set-ups only.
    pub fn allow_http(mut self, allow: bool) -> Self {
        self.allow_http = allow;
        self
    }

    /// The client; [`StsClientError::Endpoint`] when the endpoint URL cannot be used (not an
    /// absolute `https` URL with a host, `http` without [`allow_http`](Self::allow_http),
    /// credentials in the URL).
    pub fn build(self) -> Result<StsClient, StsClientError> {
        let endpoint = parse_endpoint(&self.endpoint, self.allow_http)?;
        // HTTP/1.1 only: offered alone in ALPN, so the service cannot pick HTTP/2.
        let mut config = rustls::ClientConfig::clone(&self.workload.client_config(self.server));
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let connector = Connector {
            tls: TlsConnector::new(Arc::new(config)).timeout(self.connect_timeout),
            allow_http: self.allow_http,
            connect_timeout: self.connect_timeout,
        };
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(IDLE_TIMEOUT)
            .pool_max_idle_per_host(MAX_IDLE)
            // The read buffer bounds a response head and each body frame read at once.
            .http1_max_buf_size(MAX_RESPONSE + 16 * 1024)
            .build(connector);
        Ok(StsClient {
            inner: Arc::new(Inner {
                client,
                endpoint,
                timeout: self.timeout,
                trust_domain: self.trust_domain,
            }),
        })
    }
}

/// The endpoint as a URI: absolute, `https` (or `http` when allowed), with a host and no
/// user information.
fn parse_endpoint(url: &str, allow_http: bool) -> Result<Uri, StsClientError> {
    let uri: Uri = url
        .parse()
        .map_err(|_| StsClientError::Endpoint("not a URL"))?;
    match uri.scheme_str() {
        Some("https") => {}
        Some("http") if allow_http => {}
        Some("http") => {
            return Err(StsClientError::Endpoint(
                "plain http is not allowed (only https, unless allow_http is set)",
            ));
        }
        _ => return Err(StsClientError::Endpoint("not an https URL")),
    }
    let Some(authority) = uri.authority() else {
        return Err(StsClientError::Endpoint("no host"));
    };
    if authority.as_str().contains('@') {
        return Err(StsClientError::Endpoint("credentials in the URL"));
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(StsClientError::Endpoint("no host"));
    }
    Ok(uri)
}

/// Why a body could not be read within [`MAX_RESPONSE`] bytes.
enum BodyError {
    TooLarge,
    Http(BoxError),
}

/// The response body, read up to [`MAX_RESPONSE`] bytes and never beyond.
async fn read_limited(response: Response<Incoming>) -> Result<Bytes, BodyError> {
    let declared = response
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > MAX_RESPONSE as u64) {
        return Err(BodyError::TooLarge);
    }
    match Limited::new(response.into_body(), MAX_RESPONSE)
        .collect()
        .await
    {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.is::<LengthLimitError>() => Err(BodyError::TooLarge),
        Err(e) => Err(BodyError::Http(e)),
    }
}

/// The edge's exchanger: the issued txn-token, or why not.
impl crate::edge::Exchanger for StsClient {
    fn exchange(&self, request: TxnTokenRequest) -> crate::edge::ExchangeFuture<'_> {
        use crate::edge::ExchangeFailed;
        Box::pin(async move {
            match StsClient::exchange(self, &request).await {
                Ok(r) => Ok(r.into_access_token()),
                Err(StsClientError::Refused(e)) => Err(ExchangeFailed::Refused(e)),
                Err(other) => Err(ExchangeFailed::Unavailable(other.to_string())),
            }
        })
    }
}

/// Renewal through the service: a replacement txn-token for the builder's
/// [`trust_domain`](StsClientBuilder::trust_domain).
impl secmesh_tokens::renew::Replace for StsClient {
    fn replace<'a>(
        &'a self,
        token: &'a str,
        scope: &'a secmesh_core::claims::Scope,
        class: secmesh_core::ExpiryClass,
    ) -> secmesh_tokens::renew::ReplaceFuture<'a> {
        use secmesh_core::exchange::{SubjectToken, SubjectTokenType};
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_are_https_urls_with_a_host() {
        assert!(parse_endpoint("https://127.0.0.1:8443/token", false).is_ok());
        assert!(parse_endpoint("https://[::1]:8443/token", false).is_ok());
        assert!(parse_endpoint("http://127.0.0.1/token", true).is_ok());
        for (url, allow_http) in [
            ("http://127.0.0.1/token", false),
            ("ftp://127.0.0.1/token", true),
            ("/token", false),
            ("127.0.0.1:8443", false),
            ("https://user:pw@127.0.0.1/token", false),
            ("https:///token", false),
            ("not a url", false),
        ] {
            assert!(
                matches!(
                    parse_endpoint(url, allow_http),
                    Err(StsClientError::Endpoint(_))
                ),
                "{url}"
            );
        }
    }
}
