//! The HTTP/1.1 GET behind the remote key source: one connection per fetch, TCP or rustls with
//! the caller's client configuration, bounded in time and size, redirects never followed.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{ACCEPT, CACHE_CONTROL, HOST};
use http::{HeaderValue, Request, Uri};
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use super::SourceError;

/// An answer: status, `Cache-Control`, body (read only for a 200).
pub(crate) struct Answer {
    pub(crate) status: u16,
    pub(crate) cache_control: Option<HeaderValue>,
    pub(crate) body: Bytes,
}

/// How to fetch.
#[derive(Clone, Debug)]
pub(crate) struct Client {
    pub(crate) tls: Option<Arc<rustls::ClientConfig>>,
    pub(crate) allow_http: bool,
    pub(crate) connect_timeout: Duration,
    pub(crate) timeout: Duration,
    pub(crate) max_body: usize,
}

/// Aborts the connection task when the fetch ends (or is dropped on a timeout).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Client {
    /// Check that `url` can be fetched by this client (scheme, host, TLS configuration).
    pub(crate) fn parse(&self, url: &str) -> Result<Uri, SourceError> {
        let uri: Uri = url.parse().map_err(|e| SourceError::Url(format!("{e}")))?;
        if uri.host().is_none_or(str::is_empty) {
            return Err(SourceError::Url("no host".into()));
        }
        match uri.scheme_str() {
            Some("https") if self.tls.is_none() => Err(SourceError::NoTlsConfig),
            Some("https") => Ok(uri),
            Some("http") if self.allow_http => Ok(uri),
            Some("http") => Err(SourceError::InsecureScheme),
            _ => Err(SourceError::Url("not an http(s) URL".into())),
        }
    }

    /// GET `uri`, within the total timeout.
    pub(crate) async fn get(&self, uri: &Uri) -> Result<Answer, SourceError> {
        tokio::time::timeout(self.timeout, self.get_inner(uri))
            .await
            .map_err(|_| SourceError::Timeout(self.timeout))?
    }

    async fn get_inner(&self, uri: &Uri) -> Result<Answer, SourceError> {
        let https = match uri.scheme_str() {
            Some("https") => true,
            Some("http") if self.allow_http => false,
            Some("http") => return Err(SourceError::InsecureScheme),
            _ => return Err(SourceError::Url("not an http(s) URL".into())),
        };
        let host = uri.host().unwrap_or_default();
        let host = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        let connect = |e: std::io::Error| SourceError::Connect(e.to_string());
        let tcp = tokio::time::timeout(self.connect_timeout, TcpStream::connect((host, port)))
            .await
            .map_err(|_| SourceError::Timeout(self.connect_timeout))?
            .map_err(connect)?;
        let _ = tcp.set_nodelay(true);
        if https {
            let config = self.tls.clone().ok_or(SourceError::NoTlsConfig)?;
            let name = rustls::pki_types::ServerName::try_from(host.to_owned())
                .map_err(|e| SourceError::Url(e.to_string()))?;
            let tls = tokio::time::timeout(
                self.connect_timeout,
                tokio_rustls::TlsConnector::from(config).connect(name, tcp),
            )
            .await
            .map_err(|_| SourceError::Timeout(self.connect_timeout))?
            .map_err(connect)?;
            self.request(tls, uri).await
        } else {
            self.request(tcp, uri).await
        }
    }

    async fn request<IO>(&self, io: IO, uri: &Uri) -> Result<Answer, SourceError>
    where
        IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let http = |e: hyper::Error| SourceError::Http(e.to_string());
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake::<_, Empty<Bytes>>(TokioIo::new(io))
                .await
                .map_err(http)?;
        let _conn = AbortOnDrop(tokio::spawn(async move {
            let _ = conn.await;
        }));
        let authority = uri.authority().map(|a| a.as_str()).unwrap_or_default();
        let path = uri.path_and_query().map_or("/", |p| p.as_str());
        let req = Request::get(path)
            .header(HOST, authority)
            .header(ACCEPT, "application/json")
            .body(Empty::new())
            .map_err(|e| SourceError::Url(e.to_string()))?;
        let res = sender.send_request(req).await.map_err(http)?;
        let status = res.status().as_u16();
        let cache_control = res.headers().get(CACHE_CONTROL).cloned();
        if status != 200 {
            return Ok(Answer {
                status,
                cache_control,
                body: Bytes::new(),
            });
        }
        if let Some(len) = res
            .headers()
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
            && len > self.max_body as u64
        {
            return Err(SourceError::TooLarge {
                limit: self.max_body,
            });
        }
        let body = Limited::new(res.into_body(), self.max_body)
            .collect()
            .await
            .map_err(|e| {
                if e.is::<http_body_util::LengthLimitError>() {
                    SourceError::TooLarge {
                        limit: self.max_body,
                    }
                } else {
                    SourceError::Http(e.to_string())
                }
            })?
            .to_bytes();
        Ok(Answer {
            status,
            cache_control,
            body,
        })
    }
}
