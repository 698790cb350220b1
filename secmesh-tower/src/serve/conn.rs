//! One connection: its watchdog (first request, header-read and idle timeouts), the requests
//! in flight, and the re-check of the peer's certificate after a reload.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use http::header::{CONNECTION, HeaderValue};
use http::{Request, Response, StatusCode, Version};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use pin_project::pin_project;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{Notify, watch};
use tower_service::Service;

use super::PeerInfo;
use super::limits::{Close, ServerLimits};
use super::listen::Shared;

pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A connection after its handshake, ready to serve.
pub(crate) struct Accepted<I> {
    pub(crate) io: I,
    pub(crate) peer: PeerInfo,
    pub(crate) recheck: Option<Recheck>,
}

const NONE: u64 = u64::MAX;

/// What the watchdog watches: shared by the I/O wrapper, the service wrapper and the task.
#[derive(Debug)]
struct Activity {
    start: Instant,
    /// Requests whose response has not been sent completely.
    in_flight: AtomicUsize,
    /// Requests started on this connection.
    requests: AtomicU64,
    /// Milliseconds from `start` to the moment `in_flight` last dropped to zero.
    idle_since: AtomicU64,
    /// Milliseconds from `start` to the first byte read while no request was in flight (the
    /// start of the next HTTP/1.1 request head), or [`NONE`].
    head_since: AtomicU64,
    http2: AtomicBool,
    /// The peer's certificate failed its re-check on a request.
    revoked: AtomicBool,
    /// Woken on the changes that move the deadline earlier or end it.
    changed: Notify,
}

impl Activity {
    fn new() -> Self {
        Activity {
            start: Instant::now(),
            in_flight: AtomicUsize::new(0),
            requests: AtomicU64::new(0),
            idle_since: AtomicU64::new(0),
            head_since: AtomicU64::new(NONE),
            http2: AtomicBool::new(false),
            revoked: AtomicBool::new(false),
            changed: Notify::new(),
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_millis()).unwrap_or(NONE - 1)
    }

    fn at(&self, ms: u64) -> Instant {
        self.start + Duration::from_millis(ms)
    }

    fn on_read(&self) {
        if self.in_flight.load(Ordering::Acquire) == 0
            && self.requests.load(Ordering::Relaxed) > 0
            && self.head_since.load(Ordering::Relaxed) == NONE
            && self
                .head_since
                .compare_exchange(NONE, self.now_ms(), Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
        {
            self.changed.notify_one();
        }
    }

    fn request_started(self: &Arc<Self>, http2: bool) -> InFlight {
        self.http2.store(http2, Ordering::Relaxed);
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        self.head_since.store(NONE, Ordering::Release);
        InFlight(Arc::clone(self))
    }

    fn revoke(&self) {
        self.revoked.store(true, Ordering::Release);
        self.changed.notify_one();
    }

    /// When the connection is to be closed, and why; `None` while a request is in flight.
    fn deadline(&self, limits: &ServerLimits) -> Option<(Instant, Close)> {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return None;
        }
        if self.requests.load(Ordering::Relaxed) == 0 {
            return Some((self.start + limits.header_read_timeout, Close::FirstRequest));
        }
        let head = self.head_since.load(Ordering::Acquire);
        // HTTP/2 sends frames (PING, SETTINGS, WINDOW_UPDATE) between requests: only the idle
        // timeout applies there.
        if head != NONE && !self.http2.load(Ordering::Relaxed) {
            return Some((
                self.at(head) + limits.header_read_timeout,
                Close::HeaderRead,
            ));
        }
        let idle = self.idle_since.load(Ordering::Acquire);
        Some((self.at(idle) + limits.idle_timeout, Close::Idle))
    }

    /// Resolves when the connection is to be closed.
    async fn watchdog(&self, limits: &ServerLimits) -> Close {
        loop {
            if self.revoked.load(Ordering::Acquire) {
                return Close::Revoked;
            }
            match self.deadline(limits) {
                None => self.changed.notified().await,
                Some((at, why)) => {
                    if Instant::now() >= at {
                        return why;
                    }
                    tokio::select! {
                        () = tokio::time::sleep_until(at.into()) => {}
                        () = self.changed.notified() => {}
                    }
                }
            }
        }
    }
}

/// A request in flight until dropped (with the response body, once it is sent).
#[derive(Debug)]
struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        let a = &self.0;
        if a.in_flight.fetch_sub(1, Ordering::AcqRel) == 1 {
            a.idle_since.store(a.now_ms(), Ordering::Release);
            a.changed.notify_one();
        }
    }
}

/// The connection's I/O, noting reads for the watchdog.
#[pin_project]
struct Tracked<I> {
    #[pin]
    io: I,
    activity: Arc<Activity>,
}

impl<I: AsyncRead> AsyncRead for Tracked<I> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.project();
        let before = buf.filled().len();
        let res = ready!(this.io.poll_read(cx, buf));
        if res.is_ok() && buf.filled().len() > before {
            this.activity.on_read();
        }
        Poll::Ready(res)
    }
}

impl<I: AsyncWrite> AsyncWrite for Tracked<I> {
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

/// Re-checks a TLS peer's certificate chain after the workload's material changed.
#[cfg(feature = "tls")]
pub(crate) struct PeerCheck {
    workload: secmesh_tls::config::Workload,
    chain: Vec<rustls::pki_types::CertificateDer<'static>>,
    /// The workload generation the chain was last found valid against.
    checked: AtomicU64,
    revoked: AtomicBool,
}

#[cfg(feature = "tls")]
impl PeerCheck {
    /// `generation`: the workload's generation before the handshake that verified `chain`.
    pub(crate) fn new(
        workload: secmesh_tls::config::Workload,
        chain: Vec<rustls::pki_types::CertificateDer<'static>>,
        generation: u64,
    ) -> Self {
        PeerCheck {
            workload,
            chain,
            checked: AtomicU64::new(generation),
            revoked: AtomicBool::new(false),
        }
    }

    /// Whether the chain still verifies; re-checked only when the material changed.
    fn still_valid(&self) -> bool {
        if self.revoked.load(Ordering::Acquire) {
            return false;
        }
        let generation = self.workload.generation();
        if generation == self.checked.load(Ordering::Acquire) {
            return true;
        }
        match self.workload.check_client(&self.chain) {
            Ok(_) => {
                self.checked.store(generation, Ordering::Release);
                true
            }
            Err(e) => {
                tracing::warn!(target: "secmesh::serve", error = %e, "peer certificate no longer accepted: closing its connection");
                self.revoked.store(true, Ordering::Release);
                false
            }
        }
    }
}

/// The re-check of a TLS connection: the check, and the workload's reload announcements.
#[cfg(feature = "tls")]
pub(crate) struct Recheck {
    pub(crate) check: Arc<PeerCheck>,
    pub(crate) reloads: watch::Receiver<u64>,
}

/// Without TLS there is nothing to re-check.
#[cfg(not(feature = "tls"))]
pub(crate) enum Recheck {}

#[cfg(not(feature = "tls"))]
pub(crate) enum PeerCheck {}

#[cfg(not(feature = "tls"))]
impl PeerCheck {
    fn still_valid(&self) -> bool {
        match *self {}
    }
}

impl Recheck {
    fn split(self) -> (Arc<PeerCheck>, watch::Receiver<u64>) {
        #[cfg(feature = "tls")]
        {
            (self.check, self.reloads)
        }
        #[cfg(not(feature = "tls"))]
        match self {}
    }
}

/// Resolves after the next reload (`true`), or never if there is nothing to watch.
async fn reloaded(reloads: &mut Option<watch::Receiver<u64>>) -> bool {
    match reloads {
        Some(r) => r.changed().await.is_ok(),
        None => std::future::pending().await,
    }
}

/// The user's service, with the connection's peer in each request and the request counted in
/// flight until its response is sent.
#[derive(Clone)]
struct ConnService<S> {
    inner: S,
    peer: PeerInfo,
    activity: Arc<Activity>,
    check: Option<Arc<PeerCheck>>,
}

impl<S, B> Service<Request<Incoming>> for ConnService<S>
where
    S: Service<Request<Incoming>, Response = Response<B>>,
{
    type Response = Response<ServeBody<B>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<Incoming>) -> Self::Future {
        if let Some(check) = &self.check
            && !check.still_valid()
        {
            self.activity.revoke();
            return ResponseFuture {
                kind: Kind::Refused {
                    version: req.version(),
                },
            };
        }
        let in_flight = self
            .activity
            .request_started(req.version() == Version::HTTP_2);
        let ext = req.extensions_mut();
        if let Some(id) = &self.peer.identity {
            ext.insert(id.clone());
        }
        #[cfg(feature = "axum")]
        ext.insert(axum::extract::ConnectInfo(self.peer.remote_addr));
        ext.insert(self.peer.clone());
        ResponseFuture {
            kind: Kind::Inner {
                future: self.inner.call(req),
                in_flight: Some(in_flight),
            },
        }
    }
}

/// The response of [`ConnService`].
#[pin_project]
struct ResponseFuture<F> {
    #[pin]
    kind: Kind<F>,
}

#[pin_project(project = KindProj)]
enum Kind<F> {
    /// Passed to the inner service.
    Inner {
        #[pin]
        future: F,
        in_flight: Option<InFlight>,
    },
    /// Refused here: the peer's certificate no longer verifies.
    Refused { version: Version },
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<ServeBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Inner { future, in_flight } => {
                let res = ready!(future.poll(cx))?;
                let in_flight = in_flight.take();
                Poll::Ready(Ok(res.map(|body| ServeBody::Inner { body, in_flight })))
            }
            KindProj::Refused { version } => {
                let mut res = Response::new(ServeBody::Empty);
                *res.status_mut() = StatusCode::FORBIDDEN;
                if *version < Version::HTTP_2 {
                    res.headers_mut()
                        .insert(CONNECTION, HeaderValue::from_static("close"));
                }
                Poll::Ready(Ok(res))
            }
        }
    }
}

/// The response body: the service's, holding the request in flight until it is sent; or
/// empty, for a request refused here.
#[pin_project(project = ServeBodyProj)]
enum ServeBody<B> {
    Inner {
        #[pin]
        body: B,
        in_flight: Option<InFlight>,
    },
    Empty,
}

impl<B: Body> Body for ServeBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        match self.project() {
            ServeBodyProj::Inner { body, in_flight } => {
                let frame = ready!(body.poll_frame(cx));
                if frame.is_none() {
                    in_flight.take();
                }
                Poll::Ready(frame)
            }
            ServeBodyProj::Empty => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ServeBody::Inner { body, .. } => body.is_end_stream(),
            ServeBody::Empty => true,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ServeBody::Inner { body, .. } => body.size_hint(),
            ServeBody::Empty => SizeHint::with_exact(0),
        }
    }
}

/// Serve one connection until it ends, the server shuts down, or the watchdog closes it.
pub(crate) async fn drive<I, S, B>(
    accepted: Accepted<I>,
    service: S,
    shared: &Shared,
    mut stop: watch::Receiver<bool>,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: Service<Request<Incoming>, Response = Response<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    let Accepted { io, peer, recheck } = accepted;
    let (check, mut reloads) = match recheck.map(Recheck::split) {
        Some((check, reloads)) => (Some(check), Some(reloads)),
        None => (None, None),
    };
    let remote_addr = peer.remote_addr;
    let limits = &shared.limits;
    let activity = Arc::new(Activity::new());
    let service = TowerToHyperService::new(ConnService {
        inner: service,
        peer,
        activity: Arc::clone(&activity),
        check: check.clone(),
    });
    let io = TokioIo::new(Tracked {
        io,
        activity: Arc::clone(&activity),
    });
    let conn = shared.builder.serve_connection_with_upgrades(io, service);
    let mut conn = std::pin::pin!(conn);
    // After a graceful close began: when to stop waiting for it.
    let mut grace: Option<Instant> = None;
    let mut stopping = false;
    loop {
        tokio::select! {
            res = conn.as_mut() => {
                if let Err(e) = res {
                    tracing::debug!(target: "secmesh::serve", %remote_addr, error = %e, "connection ended with an error");
                }
                return;
            }
            _ = stop.changed(), if !stopping => {
                // Shutdown, or the server's task is gone: finish what is in flight, then end.
                stopping = true;
                conn.as_mut().graceful_shutdown();
            }
            why = activity.watchdog(limits), if grace.is_none() => {
                shared.stats.closed(why);
                tracing::debug!(target: "secmesh::serve", %remote_addr, reason = why.as_str(), "closing the connection");
                match why {
                    // Answer what is in flight (a refusal, HTTP/2 GOAWAY), then close.
                    Close::Idle | Close::Revoked => {
                        conn.as_mut().graceful_shutdown();
                        grace = Some(Instant::now() + limits.header_read_timeout);
                    }
                    Close::FirstRequest | Close::HeaderRead => return,
                }
            }
            () = tokio::time::sleep_until(grace.unwrap_or_else(Instant::now).into()), if grace.is_some() => return,
            reloaded = reloaded(&mut reloads) => {
                if !reloaded {
                    reloads = None;
                } else if let Some(check) = &check && !check.still_valid() {
                    if grace.is_none() {
                        shared.stats.closed(Close::Revoked);
                    }
                    tracing::debug!(target: "secmesh::serve", %remote_addr, reason = Close::Revoked.as_str(), "closing the connection");
                    return;
                }
            }
        }
    }
}
