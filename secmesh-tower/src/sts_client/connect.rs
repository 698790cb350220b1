//! The connector of the STS client: mutual TLS through [`TlsConnector`], or plain TCP when the
//! client was built with `allow_http` (tests), each within the connect timeout.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use http::Uri;
use hyper::rt::{Read, ReadBufCursor, Write};
use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::rt::TokioIo;
use pin_project::pin_project;
use tokio::net::TcpStream;
use tower_service::Service;

use crate::tls::{TlsConnector, TlsIo};

/// Dials the endpoint: `https` over mutual TLS, `http` only when allowed.
#[derive(Clone, Debug)]
pub(super) struct Connector {
    pub(super) tls: TlsConnector,
    pub(super) allow_http: bool,
    pub(super) connect_timeout: Duration,
}

impl Service<Uri> for Connector {
    type Response = Conn;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<Conn>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        // One boxed future per connection, not per request (connections are pooled).
        let this = self.clone();
        Box::pin(async move {
            let invalid = |what| io::Error::new(io::ErrorKind::InvalidInput, what);
            let host = uri.host().ok_or_else(|| invalid("URI without a host"))?;
            match uri.scheme_str() {
                Some("https") => {
                    let port = uri.port_u16().unwrap_or(443);
                    this.tls.connect(host, port).await.map(Conn::Tls)
                }
                Some("http") if this.allow_http => {
                    let host = host.trim_start_matches('[').trim_end_matches(']');
                    let port = uri.port_u16().unwrap_or(80);
                    let tcp = tokio::time::timeout(
                        this.connect_timeout,
                        TcpStream::connect((host, port)),
                    )
                    .await
                    .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))??;
                    let _ = tcp.set_nodelay(true);
                    Ok(Conn::Plain(TokioIo::new(tcp)))
                }
                _ => Err(invalid("only https (or http when allowed)")),
            }
        })
    }
}

/// A connection to the service.
#[pin_project(project = ConnProj)]
#[derive(Debug)]
#[allow(
    clippy::large_enum_variant,
    reason = "TLS is the normal case; the plain variant is for tests"
)]
pub(super) enum Conn {
    /// Mutual TLS.
    Tls(#[pin] TlsIo),
    /// Plain TCP (`allow_http`).
    Plain(#[pin] TokioIo<TcpStream>),
}

impl Connection for Conn {
    fn connected(&self) -> Connected {
        // HTTP/1.1 only: the TLS configuration offers no other protocol.
        Connected::new()
    }
}

impl Read for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        match self.project() {
            ConnProj::Tls(io) => io.poll_read(cx, buf),
            ConnProj::Plain(io) => io.poll_read(cx, buf),
        }
    }
}

impl Write for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.project() {
            ConnProj::Tls(io) => io.poll_write(cx, buf),
            ConnProj::Plain(io) => io.poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.project() {
            ConnProj::Tls(io) => io.poll_flush(cx),
            ConnProj::Plain(io) => io.poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.project() {
            ConnProj::Tls(io) => io.poll_shutdown(cx),
            ConnProj::Plain(io) => io.poll_shutdown(cx),
        }
    }
}
