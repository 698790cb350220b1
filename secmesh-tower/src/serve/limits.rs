//! The limits a server enforces and the counters it keeps.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

/// The limits of [`PlainServer`](super::PlainServer) and [`TlsServer`](crate::tls::TlsServer):
/// safe defaults, one setter each; see the [module docs](super) for what each one does.
///
/// ```
/// use std::time::Duration;
/// use secmesh_tower::serve::ServerLimits;
///
/// let limits = ServerLimits::default()
///     .max_connections(4096)
///     .idle_timeout(Duration::from_secs(30));
/// assert_eq!(limits.get_max_connections(), 4096);
/// assert_eq!(limits.get_header_read_timeout(), Duration::from_secs(10));
/// ```
#[derive(Clone, Debug)]
pub struct ServerLimits {
    pub(crate) header_read_timeout: Duration,
    pub(crate) idle_timeout: Duration,
    pub(crate) handshake_timeout: Duration,
    pub(crate) max_connections: usize,
    pub(crate) max_handshakes: usize,
    pub(crate) max_header_bytes: usize,
    pub(crate) max_headers: usize,
    pub(crate) h2_max_concurrent_streams: u32,
    pub(crate) h2_max_pending_accept_reset_streams: usize,
    pub(crate) h2_max_local_error_reset_streams: usize,
}

impl Default for ServerLimits {
    fn default() -> Self {
        ServerLimits {
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            handshake_timeout: Duration::from_secs(10),
            max_connections: 1024,
            max_handshakes: 256,
            max_header_bytes: 16 * 1024,
            max_headers: 100,
            h2_max_concurrent_streams: 100,
            h2_max_pending_accept_reset_streams: 20,
            h2_max_local_error_reset_streams: 1024,
        }
    }
}

/// The smallest HTTP/1.1 read buffer hyper accepts.
const MIN_H1_BUFFER: usize = 8 * 1024;

impl ServerLimits {
    /// The time a connection has to deliver its first complete request head (from the
    /// accept, or from the end of the TLS handshake), and an HTTP/1.1 request head that has
    /// begun to be complete (default 10 s).
    #[must_use]
    pub fn header_read_timeout(mut self, timeout: Duration) -> Self {
        self.header_read_timeout = timeout;
        self
    }

    /// How long a connection may stay open with no request in flight (default 60 s).
    #[must_use]
    pub fn idle_timeout(mut self, timeout: Duration) -> Self {
        self.idle_timeout = timeout;
        self
    }

    /// How long a TLS handshake may take (default 10 s).
    #[must_use]
    pub fn handshake_timeout(mut self, timeout: Duration) -> Self {
        self.handshake_timeout = timeout;
        self
    }

    /// The most connections open at once, handshakes included (default 1024). Keep it well
    /// below the process's file descriptor limit (`ulimit -n`).
    #[must_use]
    pub fn max_connections(mut self, max: usize) -> Self {
        self.max_connections = max;
        self
    }

    /// The most TLS handshakes in progress at once (default 256).
    #[must_use]
    pub fn max_handshakes(mut self, max: usize) -> Self {
        self.max_handshakes = max;
        self
    }

    /// The largest request head, in bytes (default 16 KiB; HTTP/1.1 buffers at least 8 KiB).
    #[must_use]
    pub fn max_header_bytes(mut self, max: usize) -> Self {
        self.max_header_bytes = max;
        self
    }

    /// The most header fields in an HTTP/1.1 request (default 100).
    #[must_use]
    pub fn max_headers(mut self, max: usize) -> Self {
        self.max_headers = max;
        self
    }

    /// The most concurrent HTTP/2 streams per connection (default 100).
    #[must_use]
    pub fn h2_max_concurrent_streams(mut self, max: u32) -> Self {
        self.h2_max_concurrent_streams = max;
        self
    }

    /// The most HTTP/2 streams reset by the client before the server accepted them (default
    /// 20); beyond it the connection is closed.
    #[must_use]
    pub fn h2_max_pending_accept_reset_streams(mut self, max: usize) -> Self {
        self.h2_max_pending_accept_reset_streams = max;
        self
    }

    /// The most HTTP/2 streams the server resets for protocol errors of the client (default
    /// 1024); beyond it the connection is closed.
    #[must_use]
    pub fn h2_max_local_error_reset_streams(mut self, max: usize) -> Self {
        self.h2_max_local_error_reset_streams = max;
        self
    }

    /// See [`ServerLimits::header_read_timeout`].
    pub fn get_header_read_timeout(&self) -> Duration {
        self.header_read_timeout
    }

    /// See [`ServerLimits::idle_timeout`].
    pub fn get_idle_timeout(&self) -> Duration {
        self.idle_timeout
    }

    /// See [`ServerLimits::handshake_timeout`].
    pub fn get_handshake_timeout(&self) -> Duration {
        self.handshake_timeout
    }

    /// See [`ServerLimits::max_connections`].
    pub fn get_max_connections(&self) -> usize {
        self.max_connections
    }

    /// See [`ServerLimits::max_handshakes`].
    pub fn get_max_handshakes(&self) -> usize {
        self.max_handshakes
    }

    /// The HTTP/1.1 read buffer size: the header byte limit, at least hyper's minimum.
    pub(crate) fn h1_buffer(&self) -> usize {
        self.max_header_bytes.max(MIN_H1_BUFFER)
    }

    /// The HTTP/2 header list size.
    pub(crate) fn h2_header_list(&self) -> u32 {
        u32::try_from(self.max_header_bytes).unwrap_or(u32::MAX)
    }
}

/// Why a server closed a connection on its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Close {
    /// No complete first request head within the header-read timeout.
    FirstRequest,
    /// A later HTTP/1.1 request head not complete within the header-read timeout.
    HeaderRead,
    /// No request in flight for the idle timeout.
    Idle,
    /// The peer's certificate no longer verifies (a CRL revoked it).
    Revoked,
}

impl Close {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Close::FirstRequest => "no complete request head in time",
            Close::HeaderRead => "request head not complete in time",
            Close::Idle => "idle",
            Close::Revoked => "peer certificate revoked",
        }
    }
}

/// What a refusal was for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Refused {
    Connection,
    Handshake,
}

#[derive(Debug, Default)]
struct Counters {
    open: AtomicUsize,
    accepted: AtomicU64,
    handshakes: AtomicU64,
    refused_connections: AtomicU64,
    refused_handshakes: AtomicU64,
    handshake_timeouts: AtomicU64,
    handshake_failures: AtomicU64,
    first_request_timeouts: AtomicU64,
    header_read_timeouts: AtomicU64,
    idle_closes: AtomicU64,
    revoked_closes: AtomicU64,
    /// A burst of refusals is going on (logged at its start and end).
    refusing: AtomicBool,
    burst: AtomicU64,
}

/// Counters of a server: open connections, refusals, and connections closed by the server
/// by reason. Cheap to clone; every clone reads the same counters.
#[derive(Clone, Debug, Default)]
pub struct ServerStats(Arc<Counters>);

fn get(c: &AtomicU64) -> u64 {
    c.load(Ordering::Relaxed)
}

impl ServerStats {
    /// Connections open now (in their handshake or serving).
    pub fn open_connections(&self) -> usize {
        self.0.open.load(Ordering::Relaxed)
    }

    /// Connections accepted (within the limits) since the server started.
    pub fn accepted_connections(&self) -> u64 {
        get(&self.0.accepted)
    }

    /// TLS handshakes completed (the peer's certificate accepted, its identity read).
    pub fn handshakes(&self) -> u64 {
        get(&self.0.handshakes)
    }

    /// Connections closed at once because `max_connections` were open.
    pub fn refused_connections(&self) -> u64 {
        get(&self.0.refused_connections)
    }

    /// Connections closed at once because `max_handshakes` handshakes were in progress.
    pub fn refused_handshakes(&self) -> u64 {
        get(&self.0.refused_handshakes)
    }

    /// TLS handshakes that did not finish within the handshake timeout.
    pub fn handshake_timeouts(&self) -> u64 {
        get(&self.0.handshake_timeouts)
    }

    /// TLS handshakes that failed (a refused certificate, a protocol error).
    pub fn handshake_failures(&self) -> u64 {
        get(&self.0.handshake_failures)
    }

    /// Connections closed because their first request head was not complete in time.
    pub fn first_request_timeouts(&self) -> u64 {
        get(&self.0.first_request_timeouts)
    }

    /// HTTP/1.1 connections closed because a later request head was not complete in time.
    pub fn header_read_timeouts(&self) -> u64 {
        get(&self.0.header_read_timeouts)
    }

    /// Connections closed after the idle timeout.
    pub fn idle_closes(&self) -> u64 {
        get(&self.0.idle_closes)
    }

    /// Connections closed because the peer's certificate was revoked while they were open.
    pub fn revoked_closes(&self) -> u64 {
        get(&self.0.revoked_closes)
    }

    pub(crate) fn closed(&self, why: Close) {
        let c = match why {
            Close::FirstRequest => &self.0.first_request_timeouts,
            Close::HeaderRead => &self.0.header_read_timeouts,
            Close::Idle => &self.0.idle_closes,
            Close::Revoked => &self.0.revoked_closes,
        };
        c.fetch_add(1, Ordering::Relaxed);
    }

    #[cfg(feature = "tls")]
    pub(crate) fn handshake_timed_out(&self) {
        self.0.handshake_timeouts.fetch_add(1, Ordering::Relaxed);
    }

    #[cfg(feature = "tls")]
    pub(crate) fn handshake_done(&self) {
        self.0.handshakes.fetch_add(1, Ordering::Relaxed);
    }

    #[cfg(feature = "tls")]
    pub(crate) fn handshake_failed(&self) {
        self.0.handshake_failures.fetch_add(1, Ordering::Relaxed);
    }

    /// Count a refusal; the first of a burst is logged.
    pub(crate) fn refused(&self, what: Refused, limit: usize) {
        let c = match what {
            Refused::Connection => &self.0.refused_connections,
            Refused::Handshake => &self.0.refused_handshakes,
        };
        c.fetch_add(1, Ordering::Relaxed);
        self.0.burst.fetch_add(1, Ordering::Relaxed);
        if !self.0.refusing.swap(true, Ordering::AcqRel) {
            let what = match what {
                Refused::Connection => "connections",
                Refused::Handshake => "TLS handshakes",
            };
            tracing::warn!(target: "secmesh::serve", limit, "{what} at their limit: refusing new connections");
        }
    }

    /// A connection was accepted: ends a burst of refusals (logged with its count).
    pub(crate) fn accepted(&self) -> OpenGuard {
        if self.0.refusing.load(Ordering::Relaxed) && self.0.refusing.swap(false, Ordering::AcqRel)
        {
            let refused = self.0.burst.swap(0, Ordering::AcqRel);
            tracing::info!(target: "secmesh::serve", refused, "accepting connections again");
        }
        self.0.open.fetch_add(1, Ordering::Relaxed);
        self.0.accepted.fetch_add(1, Ordering::Relaxed);
        OpenGuard(Arc::clone(&self.0))
    }
}

/// Counts a connection as open until dropped.
#[derive(Debug)]
pub(crate) struct OpenGuard(Arc<Counters>);

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::Relaxed);
    }
}
