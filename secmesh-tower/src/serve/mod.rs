//! Serving HTTP/1.1 and HTTP/2 with connection limits: one client must not take the process
//! down.
//!
//! [`PlainServer`] serves a tower service over plain TCP, for an edge that sits behind a
//! TLS-terminating proxy or listens on a loopback address; [`TlsServer`](crate::tls::TlsServer)
//! serves over mutual TLS. Both take the same [`ServerLimits`] and enforce them the same way, per
//! connection, in the connection's own task:
//!
//! | limit | default | when it is reached |
//! |---|---|---|
//! | [`max_connections`](ServerLimits::max_connections) | 1024 | a connection accepted over the cap is closed at once (accepting keeps the kernel's backlog from filling); open connections are never closed to make room |
//! | [`max_handshakes`](ServerLimits::max_handshakes) | 256 | (TLS) the same for connections still in their handshake |
//! | [`handshake_timeout`](ServerLimits::handshake_timeout) | 10 s | (TLS) the handshake must be complete by then |
//! | [`header_read_timeout`](ServerLimits::header_read_timeout) | 10 s | a connection must deliver its first complete request head this long after it was accepted (after the handshake, with TLS); on an HTTP/1.1 keep-alive connection, a request head that has begun must be complete this long after its first byte. Silent connections, heads sent a byte at a time and mTLS connections idle after the handshake are closed |
//! | [`idle_timeout`](ServerLimits::idle_timeout) | 60 s | a connection with no request in flight for this long is closed (HTTP/2: GOAWAY first) |
//! | [`max_header_bytes`](ServerLimits::max_header_bytes) | 16 KiB | HTTP/1.1: the head's read buffer (at least 8 KiB), a longer head gets 431; HTTP/2: the header list size announced and enforced |
//! | [`max_headers`](ServerLimits::max_headers) | 100 | HTTP/1.1: header fields per request, more get 431 |
//! | [`h2_max_concurrent_streams`](ServerLimits::h2_max_concurrent_streams) | 100 | HTTP/2: streams per connection, more are refused |
//! | [`h2_max_pending_accept_reset_streams`](ServerLimits::h2_max_pending_accept_reset_streams) | 20 | HTTP/2: streams the client opens and resets at once (the "rapid reset" flood, CVE-2023-44487); beyond it the connection is closed with GOAWAY |
//! | [`h2_max_local_error_reset_streams`](ServerLimits::h2_max_local_error_reset_streams) | 1024 | HTTP/2: streams the server had to reset because the client broke the protocol; beyond it, GOAWAY |
//!
//! A request in flight has no time limit here: a handler that waits (a long poll, a slow
//! request body) is bounded by the service's own timeout, e.g. tower's `TimeoutLayer`.
//! [`ServerStats`] counts the refusals and the closes by reason; a burst of refusals is logged
//! once when it begins (`warn`) and once when it ends (`info`, with the count), with the
//! `tracing` target `secmesh::serve`.
//!
//! Every request carries a [`PeerInfo`] (with [`TlsServer`](crate::tls::TlsServer), the verified
//! identity too) and, with the `axum` feature, axum's `ConnectInfo<SocketAddr>`. Graceful
//! shutdown (`serve_with_shutdown`) stops accepting, lets requests in flight finish and closes
//! idle connections.
//!
//! # Example
//! ```
//! use std::time::Duration;
//! use axum::{Router, routing::get};
//! use secmesh_tower::serve::{PlainServer, ServerLimits};
//! use tokio::io::{AsyncReadExt, AsyncWriteExt};
//!
//! # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let app = Router::new().route("/health", get(|| async { "ok" }));
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let addr = listener.local_addr()?;
//! let server = PlainServer::new().limits(
//!     ServerLimits::default()
//!         .header_read_timeout(Duration::from_secs(5))
//!         .max_connections(512),
//! );
//! let stats = server.stats();
//! let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
//! let serving = tokio::spawn(server.serve_with_shutdown(listener, app, async {
//!     let _ = stopped.await;
//! }));
//!
//! let mut tcp = tokio::net::TcpStream::connect(addr).await?;
//! tcp.write_all(b"GET /health HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").await?;
//! let mut answer = String::new();
//! tcp.read_to_string(&mut answer).await?;
//! assert!(answer.starts_with("HTTP/1.1 200 OK"));
//! assert_eq!(stats.refused_connections(), 0);
//!
//! stop.send(()).ok();
//! serving.await??;
//! # Ok(()) }
//! ```

mod conn;
mod limits;
mod listen;

use std::fmt;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use http::{Request, Response};
use hyper::body::Incoming;
use secmesh_core::PeerIdentity;
use tokio::net::{TcpListener, TcpStream};
use tower_service::Service;

pub use limits::{ServerLimits, ServerStats};

pub(crate) use conn::{Accepted, BoxError};
pub(crate) use listen::{Handshake, Shared, serve};

#[cfg(feature = "tls")]
pub(crate) use conn::{PeerCheck, Recheck};

/// Who is on the other end of a connection: put in every request's extensions by
/// [`PlainServer`] and [`TlsServer`](crate::tls::TlsServer).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct PeerInfo {
    /// The client's address.
    pub remote_addr: SocketAddr,
    /// The client's verified identity, if it presented a certificate (always `None` over
    /// plain TCP).
    pub identity: Option<PeerIdentity>,
}

/// Serves a tower service over plain TCP (HTTP/1.1 and HTTP/2 with prior knowledge) under
/// [`ServerLimits`]; see the [module docs](self).
#[derive(Clone, Default)]
pub struct PlainServer {
    limits: ServerLimits,
    stats: ServerStats,
}

impl fmt::Debug for PlainServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PlainServer")
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl PlainServer {
    /// A server with the default [`ServerLimits`].
    pub fn new() -> Self {
        PlainServer::default()
    }

    /// Serve under these limits.
    #[must_use]
    pub fn limits(mut self, limits: ServerLimits) -> Self {
        self.limits = limits;
        self
    }

    /// The counters of this server (shared: take it before `serve` consumes the server).
    pub fn stats(&self) -> ServerStats {
        self.stats.clone()
    }

    /// Serve `service` on `listener` until the process ends. Accept errors (a reset
    /// connection, running out of file descriptors) are logged and retried, not returned.
    pub async fn serve<S, B>(self, listener: TcpListener, service: S) -> io::Result<()>
    where
        S: Service<Request<Incoming>, Response = Response<B>> + Clone + Send + 'static,
        S::Future: Send + 'static,
        S::Error: Into<BoxError>,
        B: http_body::Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<BoxError>,
    {
        self.serve_with_shutdown(listener, service, std::future::pending())
            .await
    }

    /// Serve until `signal` completes, then stop accepting, let the open connections finish
    /// their requests, and return.
    pub async fn serve_with_shutdown<S, B, F>(
        self,
        listener: TcpListener,
        service: S,
        signal: F,
    ) -> io::Result<()>
    where
        S: Service<Request<Incoming>, Response = Response<B>> + Clone + Send + 'static,
        S::Future: Send + 'static,
        S::Error: Into<BoxError>,
        B: http_body::Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<BoxError>,
        F: Future<Output = ()> + Send,
    {
        let shared = Arc::new(Shared::new(self.limits, self.stats));
        serve(Arc::new(Plain), shared, listener, service, signal).await
    }
}

/// Plain TCP: no handshake.
struct Plain;

impl Handshake for Plain {
    type Io = TcpStream;

    fn limited(&self) -> bool {
        false
    }

    async fn handshake(
        &self,
        tcp: TcpStream,
        remote_addr: SocketAddr,
        _shared: &Shared,
    ) -> Option<Accepted<TcpStream>> {
        Some(Accepted {
            io: tcp,
            peer: PeerInfo {
                remote_addr,
                identity: None,
            },
            recheck: None,
        })
    }
}
