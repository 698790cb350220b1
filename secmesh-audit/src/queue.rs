//! The [`Auditor`]: a bounded queue from the request path to a writer thread.
//!
//! `record` hands the event to a bounded channel and returns; a dedicated writer thread takes
//! events in batches and gives them to the [`Sink`]. When the queue is full the user's
//! [`FullPolicy`] decides, explicitly: block the caller (backpressure, nothing lost; the
//! default), drop and count (the count is exposed and written as an event of its own), or fail
//! closed (`record` returns [`AuditError::QueueFull`] and the caller refuses the request).
//! [`Auditor::flush`] waits until everything recorded before it is written under the sink's
//! durability policy; [`Auditor::shutdown`] drains and stops the writer.
//!
//! # Example
//! ```
//! use secmesh_audit::event::{AuditEvent, Direction};
//! use secmesh_audit::sink::{JsonLinesConfig, JsonLinesSink};
//! use secmesh_audit::{Auditor, FullPolicy};
//!
//! let dir = tempfile::tempdir()?;
//! let sink = JsonLinesSink::open(dir.path().join("orders.jsonl"), JsonLinesConfig::default())?;
//! let auditor = Auditor::builder(sink).capacity(10_000).full_policy(FullPolicy::Block).spawn();
//! auditor.record(AuditEvent::now("orders", Direction::In))?;
//! auditor.flush()?;
//! auditor.shutdown();
//! let text = std::fs::read_to_string(dir.path().join("orders.jsonl"))?;
//! assert_eq!(text.lines().count(), 1);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TryRecvError, TrySendError};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::{JoinHandle, Thread};
use std::time::Duration;

use crate::event::{AuditEvent, Decision, Direction};
use crate::sink::Sink;

/// What `record` does when the queue is full.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum FullPolicy {
    /// Wait for room: backpressure, nothing lost.
    #[default]
    Block,
    /// Drop the event and count it; the count is written as an event when there is room.
    DropAndCount,
    /// Refuse: `record` returns [`AuditError::QueueFull`] and the caller refuses the request.
    FailClosed,
}

/// Why an event was not queued.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum AuditError {
    /// The queue is full and the policy is fail-closed.
    #[error("the audit queue is full (fail-closed)")]
    QueueFull,
    /// The writer has stopped.
    #[error("the audit writer has stopped")]
    Closed,
}

enum Msg {
    Event(Box<AuditEvent>),
    Flush(SyncSender<()>),
    Stop,
}

struct Shared {
    tx: Mutex<Option<SyncSender<Msg>>>,
    policy: FullPolicy,
    dropped: AtomicU64,
    unreported: AtomicU64,
    write_errors: AtomicU64,
    writer: Mutex<Option<JoinHandle<()>>>,
    /// The writer thread, to wake it when it sleeps.
    thread: OnceLock<Thread>,
    /// Set by the writer just before it sleeps.
    idle: AtomicBool,
    /// Events queued and not yet taken by the writer.
    pending: AtomicUsize,
    /// The queue's capacity.
    capacity: usize,
    /// Wake a sleeping writer only once this many events wait (else its tick takes them), so
    /// that a fast writer is not woken, at the cost of a system call, for every event.
    wake_at: usize,
}

impl Shared {
    /// Count an event as pending *before* it is sent, so that the writer's decrement for it can
    /// never come first (the counter would wrap). Returns the count with it.
    fn reserve(&self) -> usize {
        self.pending.fetch_add(1, Ordering::SeqCst) + 1
    }

    /// The event counted by [`reserve`](Self::reserve) was not queued after all.
    fn unreserve(&self) {
        self.pending.fetch_sub(1, Ordering::SeqCst);
    }

    /// Wake a sleeping writer when enough events wait.
    fn queued(&self, pending: usize) {
        if pending >= self.wake_at
            && self.idle.load(Ordering::SeqCst)
            && let Some(t) = self.thread.get()
        {
            t.unpark();
        }
    }
}

impl Shared {
    fn stop(&self) {
        let tx = self.tx.lock().ok().and_then(|mut tx| tx.take());
        if let Some(tx) = tx {
            // Queued behind every event recorded so far: the writer drains them first.
            let _ = tx.send(Msg::Stop);
            if let Some(t) = self.thread.get() {
                t.unpark();
            }
        }
        let handle = self.writer.lock().ok().and_then(|mut w| w.take());
        if let Some(h) = handle {
            let _ = h.join();
        }
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Records audit events from any thread or task. Cheap to clone; the writer stops (after
/// draining) when the last clone is dropped or [`shutdown`](Self::shutdown) is called.
#[derive(Clone)]
pub struct Auditor {
    shared: Arc<Shared>,
    tx: SyncSender<Msg>,
}

impl fmt::Debug for Auditor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Auditor")
            .field("policy", &self.shared.policy)
            .field("dropped", &self.dropped())
            .finish_non_exhaustive()
    }
}

/// Builds an [`Auditor`].
#[must_use]
pub struct AuditorBuilder<S> {
    sink: S,
    capacity: usize,
    policy: FullPolicy,
    batch: usize,
    tick: Duration,
}

impl<S: Sink> AuditorBuilder<S> {
    /// Queue capacity in events (default 65,536).
    pub fn capacity(mut self, n: usize) -> Self {
        self.capacity = n.max(1);
        self
    }

    /// What to do when the queue is full (default: block).
    pub fn full_policy(mut self, p: FullPolicy) -> Self {
        self.policy = p;
        self
    }

    /// Most events per batch (default 1,024).
    pub fn batch_size(mut self, n: usize) -> Self {
        self.batch = n.max(1);
        self
    }

    /// How often a sleeping writer looks for events without being woken, and runs time-based
    /// checkpoints and fsync (default 10 ms: the most an event waits in a quiet queue).
    pub fn tick(mut self, every: Duration) -> Self {
        self.tick = every;
        self
    }

    /// Start the writer thread.
    pub fn spawn(self) -> Auditor {
        let (tx, rx) = mpsc::sync_channel(self.capacity);
        let shared = Arc::new(Shared {
            tx: Mutex::new(Some(tx.clone())),
            policy: self.policy,
            dropped: AtomicU64::new(0),
            unreported: AtomicU64::new(0),
            write_errors: AtomicU64::new(0),
            writer: Mutex::new(None),
            thread: OnceLock::new(),
            idle: AtomicBool::new(false),
            pending: AtomicUsize::new(0),
            capacity: self.capacity,
            wake_at: self.batch.min(self.capacity / 2).max(1),
        });
        let weak = Arc::downgrade(&shared);
        let (sink, batch, tick) = (self.sink, self.batch, self.tick);
        let handle = std::thread::Builder::new()
            .name("secmesh-audit".into())
            .spawn(move || writer(rx, sink, batch, tick, weak))
            .ok();
        if let Some(h) = &handle {
            let _ = shared.thread.set(h.thread().clone());
        }
        if let Ok(mut w) = shared.writer.lock() {
            *w = handle;
        }
        Auditor { shared, tx }
    }
}

fn writer<S: Sink>(
    rx: Receiver<Msg>,
    mut sink: S,
    batch: usize,
    tick: Duration,
    shared: std::sync::Weak<Shared>,
) {
    let mut events: Vec<AuditEvent> = Vec::with_capacity(batch);
    let mut flushes: Vec<SyncSender<()>> = Vec::new();
    let mut stopping = false;
    let mut closed = false;
    while !stopping && !closed {
        // Take what is queued, up to a batch (all of it when stopping), without blocking: the
        // producers never have to wake a writer that is busy.
        loop {
            if events.len() >= batch && !stopping {
                break;
            }
            match rx.try_recv() {
                Ok(Msg::Event(ev)) => {
                    events.push(*ev);
                    if let Some(s) = shared.upgrade() {
                        s.pending.fetch_sub(1, Ordering::SeqCst);
                    }
                }
                Ok(Msg::Flush(done)) => flushes.push(done),
                Ok(Msg::Stop) => stopping = true,
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => {
                    closed = true;
                    break;
                }
            }
        }
        if events.is_empty() && flushes.is_empty() && !stopping && !closed {
            // Nothing to do: sleep until woken or the tick (time-based checkpoints, fsync).
            let Some(s) = shared.upgrade() else { break };
            s.idle.store(true, Ordering::SeqCst);
            drop(s);
            match rx.try_recv() {
                Ok(m) => {
                    if let Some(s) = shared.upgrade() {
                        s.idle.store(false, Ordering::SeqCst);
                    }
                    match m {
                        Msg::Event(ev) => {
                            events.push(*ev);
                            if let Some(s) = shared.upgrade() {
                                s.pending.fetch_sub(1, Ordering::SeqCst);
                            }
                        }
                        Msg::Flush(done) => flushes.push(done),
                        Msg::Stop => stopping = true,
                    }
                }
                Err(TryRecvError::Disconnected) => closed = true,
                Err(TryRecvError::Empty) => {
                    std::thread::park_timeout(tick);
                    if let Some(s) = shared.upgrade() {
                        s.idle.store(false, Ordering::SeqCst);
                    }
                    if let Err(e) = sink.tick() {
                        tracing::error!(target: "secmesh::audit", error = %e, "audit sink failed");
                    }
                    continue;
                }
            }
        }
        if let Some(s) = shared.upgrade() {
            let n = s.unreported.swap(0, Ordering::Relaxed);
            if n > 0 {
                let mut ev = AuditEvent::now("secmesh-audit", Direction::In);
                ev.decision = Decision::Error;
                ev.reason = Some(format!("dropped {n} events: the audit queue was full"));
                events.push(ev);
            }
        }
        if !events.is_empty() {
            if let Err(e) = sink.write_batch(&mut events) {
                if let Some(s) = shared.upgrade() {
                    s.write_errors
                        .fetch_add(events.len() as u64, Ordering::Relaxed);
                }
                tracing::error!(target: "secmesh::audit", error = %e, lost = events.len(), "audit sink failed");
            }
            events.clear();
        }
        if !flushes.is_empty() {
            if let Err(e) = sink.tick() {
                tracing::error!(target: "secmesh::audit", error = %e, "audit sink failed");
            }
            for f in flushes.drain(..) {
                let _ = f.send(());
            }
        }
    }
    if let Err(e) = sink.tick() {
        tracing::error!(target: "secmesh::audit", error = %e, "audit sink failed at shutdown");
    }
}

impl Auditor {
    /// A builder writing into `sink`.
    pub fn builder<S: Sink>(sink: S) -> AuditorBuilder<S> {
        AuditorBuilder {
            sink,
            capacity: 65_536,
            policy: FullPolicy::Block,
            batch: 1024,
            tick: Duration::from_millis(10),
        }
    }

    /// Queue an event (see [`FullPolicy`] for a full queue).
    pub fn record(&self, event: AuditEvent) -> Result<(), AuditError> {
        let msg = Msg::Event(Box::new(event));
        let pending = self.shared.reserve();
        let sent = match self.shared.policy {
            FullPolicy::Block => self.tx.send(msg).map_err(|_| AuditError::Closed),
            FullPolicy::DropAndCount => match self.tx.try_send(msg) {
                Ok(()) => Ok(()),
                Err(TrySendError::Full(_)) => {
                    self.shared.dropped.fetch_add(1, Ordering::Relaxed);
                    self.shared.unreported.fetch_add(1, Ordering::Relaxed);
                    // Not queued: do not count it as pending.
                    self.shared.unreserve();
                    return Ok(());
                }
                Err(TrySendError::Disconnected(_)) => Err(AuditError::Closed),
            },
            FullPolicy::FailClosed => self.tx.try_send(msg).map_err(|e| match e {
                TrySendError::Full(_) => AuditError::QueueFull,
                TrySendError::Disconnected(_) => AuditError::Closed,
            }),
        };
        match sent {
            Ok(()) => self.shared.queued(pending),
            Err(_) => self.shared.unreserve(),
        }
        sent
    }

    /// Wait until every event recorded before this call is written (and synced, as the sink's
    /// policy says).
    pub fn flush(&self) -> Result<(), AuditError> {
        let (done_tx, done_rx) = mpsc::sync_channel(1);
        self.tx
            .send(Msg::Flush(done_tx))
            .map_err(|_| AuditError::Closed)?;
        if let Some(t) = self.shared.thread.get() {
            t.unpark();
        }
        done_rx.recv().map_err(|_| AuditError::Closed)
    }

    /// Whether the queue is full now (to refuse a request up front under
    /// [`FullPolicy::FailClosed`], before doing its work).
    pub fn is_full(&self) -> bool {
        self.shared.pending.load(Ordering::SeqCst) >= self.shared.capacity
    }

    /// The policy for a full queue.
    pub fn full_policy(&self) -> FullPolicy {
        self.shared.policy
    }

    /// Events dropped because the queue was full (drop-and-count policy).
    pub fn dropped(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }

    /// Events the sink failed to write.
    pub fn write_errors(&self) -> u64 {
        self.shared.write_errors.load(Ordering::Relaxed)
    }

    /// Drain the queue, write everything and stop the writer. Other clones then get
    /// [`AuditError::Closed`].
    pub fn shutdown(self) {
        let Auditor { shared, tx } = self;
        drop(tx);
        shared.stop();
    }
}
