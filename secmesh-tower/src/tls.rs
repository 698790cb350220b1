//! Mutual TLS on the serving and the calling side, with the peer's identity in every request.
//!
//! [`TlsServer`] accepts TCP connections, runs the rustls handshake (with a configuration from
//! [`secmesh_tls::config::Workload::server_config`]) in the connection's own task, so a slow
//! client cannot hold up the accept loop, and serves HTTP/1.1 and HTTP/2 with hyper. Every
//! request of a connection carries in its extensions:
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
//! let server = TlsServer::new(orders.server_config(ClientAuth::Required));
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
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use pin_project::pin_project;
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ServerConfig};
use secmesh_core::PeerIdentity;
use tokio::net::{TcpListener, TcpStream};
use tower_service::Service;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Who is on the other end of a connection: put in every request's extensions by
/// [`TlsServer`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct PeerInfo {
    /// The client's address.
    pub remote_addr: SocketAddr,
    /// The client's verified identity, if it presented a certificate.
    pub identity: Option<PeerIdentity>,
}

/// Serves a tower service over mutual TLS; see the [module docs](self).
#[derive(Clone)]
pub struct TlsServer {
    acceptor: tokio_rustls::TlsAcceptor,
    handshake_timeout: Duration,
}

impl fmt::Debug for TlsServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsServer")
            .field("handshake_timeout", &self.handshake_timeout)
            .finish_non_exhaustive()
    }
}

impl TlsServer {
    /// A server with this rustls configuration and a 10 s handshake timeout.
    pub fn new(config: Arc<ServerConfig>) -> Self {
        TlsServer {
            acceptor: tokio_rustls::TlsAcceptor::from(config),
            handshake_timeout: Duration::from_secs(10),
        }
    }

    /// How long a client may take to complete the handshake before the connection is closed.
    #[must_use]
    pub fn handshake_timeout(mut self, timeout: Duration) -> Self {
        self.handshake_timeout = timeout;
        self
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
        let graceful = GracefulShutdown::new();
        let mut signal = std::pin::pin!(signal);
        loop {
            let (tcp, remote_addr) = tokio::select! {
                () = &mut signal => break,
                accepted = listener.accept() => match accepted {
                    Ok(a) => a,
                    Err(e) if is_connection_error(&e) => continue,
                    Err(e) => {
                        // Out of file descriptors and the like: back off instead of spinning.
                        tracing::warn!(target: "secmesh::tls", error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            let _ = tcp.set_nodelay(true);
            let this = self.clone();
            let service = service.clone();
            // A connection still in its handshake already counts: shutdown waits for it.
            let watcher = graceful.watcher();
            tokio::spawn(async move {
                let Some((stream, peer)) = this.handshake(tcp, remote_addr).await else {
                    return;
                };
                let service = TowerToHyperService::new(WithPeer {
                    inner: service,
                    peer,
                });
                let conn = auto::Builder::new(TokioExecutor::new())
                    .serve_connection_with_upgrades(TokioIo::new(stream), service)
                    .into_owned();
                let conn = watcher.watch(conn);
                if let Err(e) = conn.await {
                    tracing::debug!(target: "secmesh::tls", %remote_addr, error = %e, "connection ended with an error");
                }
            });
        }
        drop(listener);
        graceful.shutdown().await;
        Ok(())
    }

    async fn handshake(
        &self,
        tcp: TcpStream,
        remote_addr: SocketAddr,
    ) -> Option<(tokio_rustls::server::TlsStream<TcpStream>, PeerInfo)> {
        let stream = match tokio::time::timeout(self.handshake_timeout, self.acceptor.accept(tcp))
            .await
        {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                tracing::debug!(target: "secmesh::tls", %remote_addr, error = %e, "TLS handshake refused");
                return None;
            }
            Err(_) => {
                tracing::debug!(target: "secmesh::tls", %remote_addr, "TLS handshake timed out");
                return None;
            }
        };
        let identity = match stream
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|c| c.first())
        {
            None => None,
            // The verifier already checked the leaf rules; this only reads them out again.
            Some(leaf) => match secmesh_tls::svid::peer_identity(leaf) {
                Ok(id) => Some(id),
                Err(e) => {
                    tracing::warn!(target: "secmesh::tls", %remote_addr, error = %e, "peer certificate without an identity");
                    return None;
                }
            },
        };
        Some((
            stream,
            PeerInfo {
                remote_addr,
                identity,
            },
        ))
    }
}

fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

/// Puts the connection's peer into each request.
#[derive(Clone)]
struct WithPeer<S> {
    inner: S,
    peer: PeerInfo,
}

impl<S, B> Service<Request<Incoming>> for WithPeer<S>
where
    S: Service<Request<Incoming>, Response = Response<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<Incoming>) -> Self::Future {
        let ext = req.extensions_mut();
        if let Some(id) = &self.peer.identity {
            ext.insert(id.clone());
        }
        #[cfg(feature = "axum")]
        ext.insert(axum::extract::ConnectInfo(self.peer.remote_addr));
        ext.insert(self.peer.clone());
        self.inner.call(req)
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
