//! Mutual TLS on the serving and the calling side, with the peer's identity in every request.
//!
//! [`TlsServer`] accepts TCP connections, runs the rustls handshake (with a configuration from
//! [`secmesh_tls::config::Workload::server_config`]) in the connection's own task, so a slow
//! client cannot hold up the accept loop, and serves HTTP/1.1 and HTTP/2 with hyper under the
//! [connection limits](crate::serve) of [`ServerLimits`] (caps on connections and handshakes,
//! handshake, header-read and idle timeouts, HTTP/2 limits). Built with
//! [`TlsServer::from_workload`], it also re-checks the peer of every open connection when the
//! workload reloads: a client whose certificate a rewritten CRL revokes loses its open
//! connections, not only its next handshake. Every request of a connection carries in its
//! extensions:
//!
//! - the verified [`PeerIdentity`] of the client (when it presented a certificate), which the
//!   [authorize](crate::authorize) layer takes as the caller, the
//!   [authenticate](crate::authenticate) layer checks certificate-bound tokens against, and the
//!   [audit](crate::audit) layer records;
//! - a [`PeerInfo`] (remote address and identity), and, with the `axum` feature, axum's
//!   `ConnectInfo<SocketAddr>`.
//!
//! It serves any tower service on `http::Request<hyper::body::Incoming>`: an axum `Router`, or
//! tonic's `Routes` for gRPC (`Routes::new(svc).prepare()`); axum handlers read the identity with
//! the [`Peer`](crate::extract::Peer) extractor, tonic handlers with
//! `request.extensions().get::<PeerIdentity>()`.
//!
//! [`TlsConnector`] is the calling side: a `tower::Service<Uri>` that connects over TCP and
//! completes a handshake with a configuration from
//! [`Workload::client_config`](secmesh_tls::config::Workload::client_config). It plugs into
//! hyper-util's client (`Client::builder(TokioExecutor::new()).build(connector)`) and into
//! tonic (`Endpoint::connect_with_connector`).
//!
//! # Example
//! ```
//! use axum::{Router, routing::get};
//! use secmesh_tls::ca::Ca;
//! use secmesh_tls::config::{ClientAuth, TlsFiles, Workload};
//! use secmesh_tower::extract::Peer;
//! use secmesh_tower::tls::TlsServer;
//!
//! # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let dir = tempfile::tempdir()?;
//! # let ca = Ca::init(dir.path().join("ca"), "mesh.test".parse()?)?;
//! # let svid = ca.issue(&"spiffe://mesh.test/orders".parse()?, 1)?;
//! # std::fs::write(dir.path().join("orders.crt"), &svid.cert_pem)?;
//! # std::fs::write(dir.path().join("orders.key"), &svid.key_pem)?;
//! let orders = Workload::load(TlsFiles::new(
//!     dir.path().join("orders.crt"),
//!     dir.path().join("orders.key"),
//!     dir.path().join("ca/ca.crt"),
//! ))?;
//! let app = Router::new().route(
//!     "/whoami",
//!     get(|Peer(peer): Peer| async move { peer.spiffe_id.to_string() }),
//! );
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! // Reload the files (a renewed SVID, a new CRL) every 10 s; revoked peers lose their
//! // connections at the next reload.
//! let _watch = orders.watch(std::time::Duration::from_secs(10))?;
//! let server = TlsServer::from_workload(&orders, ClientAuth::Required);
//! let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
//! let serving = tokio::spawn(server.serve_with_shutdown(listener, app, async {
//!     let _ = stopped.await;
//! }));
//! stop.send(()).ok();
//! serving.await??;
//! # Ok(()) }
//! ```

use std::fmt;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::{Request, Response, Uri};
use hyper::body::Incoming;
use hyper::rt::{Read, ReadBufCursor, Write};
use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::rt::TokioIo;
use pin_project::pin_project;
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ServerConfig};
use secmesh_core::PeerIdentity;
use secmesh_tls::config::{ClientAuth, Workload};
use tokio::net::{TcpListener, TcpStream};
use tower_service::Service;

use crate::serve::{
    Accepted, BoxError, Handshake, PeerCheck, Recheck, ServerLimits, ServerStats, Shared, serve,
};

pub use crate::serve::PeerInfo;

/// Serves a tower service over mutual TLS under [`ServerLimits`]; see the
/// [module docs](self).
#[derive(Clone)]
pub struct TlsServer {
    acceptor: tokio_rustls::TlsAcceptor,
    workload: Option<Workload>,
    limits: ServerLimits,
    stats: ServerStats,
}

impl fmt::Debug for TlsServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsServer")
            .field("limits", &self.limits)
            .field("rechecks_peers", &self.workload.is_some())
            .finish_non_exhaustive()
    }
}

impl TlsServer {
    /// A server with this rustls configuration and the default [`ServerLimits`]. The peers of
    /// open connections are not re-checked after a reload: prefer
    /// [`TlsServer::from_workload`], or add [`TlsServer::recheck_peers`].
    pub fn new(config: Arc<ServerConfig>) -> Self {
        TlsServer {
            acceptor: tokio_rustls::TlsAcceptor::from(config),
            workload: None,
            limits: ServerLimits::default(),
            stats: ServerStats::default(),
        }
    }

    /// A server with `workload`'s [server configuration](Workload::server_config) that also
    /// re-checks the certificate of every open connection's peer whenever the workload
    /// reloads (run [`Workload::watch`] for that): a connection whose peer a new CRL revokes
    /// is closed at once, and a request that arrives on it first is answered 403 and the
    /// connection closed.
    pub fn from_workload(workload: &Workload, auth: ClientAuth) -> Self {
        TlsServer::new(workload.server_config(auth)).recheck_peers(workload.clone())
    }

    /// Re-check the peers of open connections against `workload` after each of its reloads
    /// (as [`TlsServer::from_workload`] does); the configuration should be this workload's.
    #[must_use]
    pub fn recheck_peers(mut self, workload: Workload) -> Self {
        self.workload = Some(workload);
        self
    }

    /// Serve under these limits.
    #[must_use]
    pub fn limits(mut self, limits: ServerLimits) -> Self {
        self.limits = limits;
        self
    }

    /// How long a client may take to complete the handshake before the connection is closed
    /// (the same as [`ServerLimits::handshake_timeout`]).
    #[must_use]
    pub fn handshake_timeout(mut self, timeout: Duration) -> Self {
        self.limits = self.limits.handshake_timeout(timeout);
        self
    }

    /// The counters of this server (shared: take it before `serve` consumes the server).
    pub fn stats(&self) -> ServerStats {
        self.stats.clone()
    }

    /// Serve `service` on `listener` until the process ends. Accept errors (a reset connection,
    /// running out of file descriptors) are logged and retried, not returned.
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
        let handshake = Arc::new(TlsHandshake {
            acceptor: self.acceptor,
            workload: self.workload,
        });
        let shared = Arc::new(Shared::new(self.limits, self.stats));
        serve(handshake, shared, listener, service, signal).await
    }
}

/// The server side of the TLS handshake, with the peer's identity read out.
struct TlsHandshake {
    acceptor: tokio_rustls::TlsAcceptor,
    workload: Option<Workload>,
}

impl Handshake for TlsHandshake {
    type Io = tokio_rustls::server::TlsStream<TcpStream>;

    fn limited(&self) -> bool {
        true
    }

    async fn handshake(
        &self,
        tcp: TcpStream,
        remote_addr: SocketAddr,
        shared: &Shared,
    ) -> Option<Accepted<Self::Io>> {
        // Subscribed before the handshake: a reload during it is seen afterwards.
        let reloads = self.workload.as_ref().map(Workload::reloads);
        let timeout = shared.limits.get_handshake_timeout();
        let stream = match tokio::time::timeout(timeout, self.acceptor.accept(tcp)).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                shared.stats.handshake_failed();
                tracing::debug!(target: "secmesh::tls", %remote_addr, error = %e, "TLS handshake refused");
                return None;
            }
            Err(_) => {
                shared.stats.handshake_timed_out();
                tracing::debug!(target: "secmesh::tls", %remote_addr, "TLS handshake timed out");
                return None;
            }
        };
        let chain = stream.get_ref().1.peer_certificates();
        let identity = match chain.and_then(|c| c.first()) {
            None => None,
            // The verifier already checked the leaf rules; this only reads them out again.
            Some(leaf) => match secmesh_tls::svid::peer_identity(leaf) {
                Ok(id) => Some(id),
                Err(e) => {
                    shared.stats.handshake_failed();
                    tracing::warn!(target: "secmesh::tls", %remote_addr, error = %e, "peer certificate without an identity");
                    return None;
                }
            },
        };
        let recheck = match (&self.workload, reloads, chain) {
            (Some(workload), Some(reloads), Some(chain)) if !chain.is_empty() => {
                let generation = *reloads.borrow();
                let chain = chain.iter().map(|c| c.clone().into_owned()).collect();
                Some(Recheck {
                    check: Arc::new(PeerCheck::new(workload.clone(), chain, generation)),
                    reloads,
                })
            }
            _ => None,
        };
        shared.stats.handshake_done();
        Some(Accepted {
            io: stream,
            peer: PeerInfo {
                remote_addr,
                identity,
            },
            recheck,
        })
    }
}

/// Connects to `host:port` of a URI over TCP and runs the client handshake; see the
/// [module docs](self). The host is only used to dial: the server is authenticated by its
/// SPIFFE ID, as the client configuration says.
#[derive(Clone)]
pub struct TlsConnector {
    connector: tokio_rustls::TlsConnector,
    timeout: Duration,
}

impl fmt::Debug for TlsConnector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsConnector")
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl TlsConnector {
    /// A connector with this rustls configuration and a 10 s connect-and-handshake timeout.
    pub fn new(config: Arc<ClientConfig>) -> Self {
        TlsConnector {
            connector: tokio_rustls::TlsConnector::from(config),
            timeout: Duration::from_secs(10),
        }
    }

    /// The time allowed for the TCP connect and the handshake together.
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Connect to `host:port` and complete the handshake.
    pub async fn connect(&self, host: &str, port: u16) -> io::Result<TlsIo> {
        // An IPv6 literal comes bracketed in a URI authority.
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let name = ServerName::try_from(host)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?
            .to_owned();
        let connect = async {
            let tcp = TcpStream::connect((host, port)).await?;
            let _ = tcp.set_nodelay(true);
            self.connector.connect(name, tcp).await
        };
        let stream = tokio::time::timeout(self.timeout, connect)
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "TLS connect timed out"))??;
        Ok(TlsIo {
            io: TokioIo::new(stream),
        })
    }
}

impl Service<Uri> for TlsConnector {
    type Response = TlsIo;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<TlsIo>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        // One boxed future per connection, not per request.
        let this = self.clone();
        Box::pin(async move {
            let host = uri
                .host()
                .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "URI without a host"))?;
            let port = uri.port_u16().unwrap_or(443);
            this.connect(host, port).await
        })
    }
}

/// A client connection made by [`TlsConnector`]: hyper I/O, with ALPN `h2` reported to
/// hyper-util's client.
#[pin_project]
pub struct TlsIo {
    #[pin]
    io: TokioIo<tokio_rustls::client::TlsStream<TcpStream>>,
}

impl fmt::Debug for TlsIo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsIo").finish_non_exhaustive()
    }
}

impl TlsIo {
    /// The server's identity: the SPIFFE ID and thumbprint of the certificate it presented.
    pub fn server_identity(&self) -> Option<PeerIdentity> {
        let leaf = self.io.inner().get_ref().1.peer_certificates()?.first()?;
        secmesh_tls::svid::peer_identity(leaf).ok()
    }
}

impl Connection for TlsIo {
    fn connected(&self) -> Connected {
        let connected = Connected::new();
        if self.io.inner().get_ref().1.alpn_protocol() == Some(b"h2") {
            connected.negotiated_h2()
        } else {
            connected
        }
    }
}

impl Read for TlsIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        self.project().io.poll_read(cx, buf)
    }
}

impl Write for TlsIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.project().io.poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().io.poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().io.poll_shutdown(cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.project().io.poll_write_vectored(cx, bufs)
    }
}
