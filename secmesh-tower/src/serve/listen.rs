//! The accept loop: the connection and handshake caps, one task per connection, shutdown.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response};
use http_body::Body;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tower_service::Service;

use super::conn::{Accepted, BoxError, drive};
use super::limits::{Refused, ServerLimits, ServerStats};

/// How a server turns an accepted TCP connection into one it serves.
pub(crate) trait Handshake: Send + Sync + 'static {
    /// The I/O served.
    type Io: AsyncRead + AsyncWrite + Unpin + Send + 'static;

    /// Whether the handshake counts against `max_handshakes`.
    fn limited(&self) -> bool;

    /// Run the handshake; `None` if the connection is to be dropped (logged and counted
    /// by the implementation).
    fn handshake(
        &self,
        tcp: TcpStream,
        remote_addr: SocketAddr,
        shared: &Shared,
    ) -> impl Future<Output = Option<Accepted<Self::Io>>> + Send;
}

/// What every connection task of one server shares.
pub(crate) struct Shared {
    pub(crate) limits: ServerLimits,
    pub(crate) stats: ServerStats,
    pub(crate) builder: auto::Builder<TokioExecutor>,
    connections: Arc<Semaphore>,
    handshakes: Arc<Semaphore>,
}

impl Shared {
    pub(crate) fn new(limits: ServerLimits, stats: ServerStats) -> Self {
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            // The connection's watchdog times heads (hyper's timer would also close idle
            // keep-alive connections after the head timeout).
            .header_read_timeout(None)
            .max_buf_size(limits.h1_buffer())
            .max_headers(limits.max_headers);
        builder
            .http2()
            .timer(TokioTimer::new())
            .max_concurrent_streams(limits.h2_max_concurrent_streams)
            .max_header_list_size(limits.h2_header_list())
            .max_pending_accept_reset_streams(limits.h2_max_pending_accept_reset_streams)
            .max_local_error_reset_streams(limits.h2_max_local_error_reset_streams);
        Shared {
            connections: Arc::new(Semaphore::new(
                limits.max_connections.min(Semaphore::MAX_PERMITS),
            )),
            handshakes: Arc::new(Semaphore::new(
                limits.max_handshakes.min(Semaphore::MAX_PERMITS),
            )),
            limits,
            stats,
            builder,
        }
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

/// Accept on `listener` and serve each connection in its own task until `signal`; then stop
/// accepting, shut the connections down gracefully and wait for them.
pub(crate) async fn serve<H, S, B, F>(
    handshake: Arc<H>,
    shared: Arc<Shared>,
    listener: TcpListener,
    service: S,
    signal: F,
) -> io::Result<()>
where
    H: Handshake,
    S: Service<Request<Incoming>, Response = Response<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
    F: Future<Output = ()> + Send,
{
    let (stop, stopped) = watch::channel(false);
    let mut signal = std::pin::pin!(signal);
    loop {
        let (tcp, remote_addr) = tokio::select! {
            () = &mut signal => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) if is_connection_error(&e) => continue,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(target: "secmesh::serve", error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        // Over a cap: close at once (dropping the stream), never queue.
        let Ok(connection) = Arc::clone(&shared.connections).try_acquire_owned() else {
            shared
                .stats
                .refused(Refused::Connection, shared.limits.max_connections);
            continue;
        };
        let handshaking = if handshake.limited() {
            match Arc::clone(&shared.handshakes).try_acquire_owned() {
                Ok(p) => Some(p),
                Err(_) => {
                    shared
                        .stats
                        .refused(Refused::Handshake, shared.limits.max_handshakes);
                    continue;
                }
            }
        } else {
            None
        };
        let open = shared.stats.accepted();
        let _ = tcp.set_nodelay(true);
        let handshake = Arc::clone(&handshake);
        let shared = Arc::clone(&shared);
        let service = service.clone();
        // A connection still in its handshake already counts: shutdown waits for it.
        let stopped = stopped.clone();
        tokio::spawn(async move {
            let _connection = connection;
            let _open = open;
            let accepted = handshake.handshake(tcp, remote_addr, &shared).await;
            drop(handshaking);
            if let Some(accepted) = accepted {
                drive(accepted, service, &shared, stopped).await;
            }
        });
    }
    drop(listener);
    drop(stopped);
    stop.send_replace(true);
    stop.closed().await;
    Ok(())
}
