//! The [`Auditor`]: a bounded queue from the request path to a writer thread.
//!
//! Events reach the writer in one of two ways:
//!
//! - [`Auditor::submit`] returns a [`Submit`] future, for async code. With
//!   [`Durability::Queued`] it resolves once the event is in the queue; with
//!   [`Durability::Durable`] once the event is written *and* synced to stable storage, so that
//!   a caller that waits for it before answering never answers a request whose event a crash
//!   can lose. When the queue is full under [`FullPolicy::Block`] the future waits for room
//!   without parking the thread (the writer wakes waiters whenever it drains).
//! - [`Auditor::record`] queues from synchronous code; under [`FullPolicy::Block`] it blocks
//!   the calling thread while the queue is full.
//!
//! The writer thread takes everything queued (up to a batch), writes it with one call to the
//! [`Sink`], and, when any event of the batch asked for a durable acknowledgement, syncs the
//! sink **once** for the whole batch before it acknowledges: group commit, so that one fsync
//! serves many concurrent requests.
//!
//! When the queue is full, the user's [`FullPolicy`] decides, explicitly: wait for room
//! (backpressure, nothing lost; the default), drop and count (the count is exposed and written
//! as an event of its own), or fail closed ([`AuditError::QueueFull`]: the caller refuses the
//! request).
//!
//! # When the sink fails (a full disk)
//!
//! A failed write loses the batch (its events are counted in [`Auditor::write_errors`]; their
//! durable acknowledgements fail with [`AuditError::NotDurable`]) and marks the auditor
//! unhealthy ([`Auditor::is_healthy`], [`Auditor::last_write_error`]). The change is logged
//! once (`tracing` error), not once per event. While unhealthy and idle, the writer probes the
//! sink every [`probe_interval`](AuditorBuilder::probe_interval) (default 250 ms) by writing
//! the loss report; when a write succeeds again the auditor is healthy again (logged once, at
//! info), and the first record written after the outage is the report "lost N events: the
//! audit sink could not write them (ERROR)" (service `secmesh-audit`, decision `error`), so the
//! loss is in the chain itself. Memory stays bounded throughout: the queue bounds the events
//! waiting, a failed batch is discarded, and the sink drops its unwritten buffer.
//!
//! [`Auditor::flush`] waits until everything queued before it is written under the sink's
//! durability policy; [`Auditor::shutdown`] drains and stops the writer.
//!
//! # Example
//! ```
//! use secmesh_audit::event::{AuditEvent, Direction};
//! use secmesh_audit::sink::{JsonLinesConfig, JsonLinesSink};
//! use secmesh_audit::{Auditor, Durability, FullPolicy};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?;
//! let sink = JsonLinesSink::open(dir.path().join("orders.jsonl"), JsonLinesConfig::default())?;
//! let auditor = Auditor::builder(sink).capacity(10_000).full_policy(FullPolicy::Block).spawn();
//! // From async code: resolves once the event is on disk.
//! auditor.submit(AuditEvent::now("orders", Direction::In), Durability::Durable).await?;
//! let text = std::fs::read_to_string(dir.path().join("orders.jsonl"))?;
//! assert_eq!(text.lines().count(), 1);
//! // From synchronous code.
//! auditor.record(AuditEvent::now("orders", Direction::Out))?;
//! auditor.flush()?;
//! assert!(auditor.is_healthy());
//! auditor.shutdown();
//! let text = std::fs::read_to_string(dir.path().join("orders.jsonl"))?;
//! assert_eq!(text.lines().count(), 2);
//! # Ok(())
//! # }
//! ```

mod submit;
mod writer;

use std::fmt;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::thread::{JoinHandle, Thread};
use std::time::Duration;

use tokio::sync::{Notify, oneshot};

use crate::pool::EventBox;
use crate::sink::Sink;

pub use submit::Submit;

/// What `record` and `submit` do when the queue is full.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum FullPolicy {
    /// Wait for room: backpressure, nothing lost.
    #[default]
    Block,
    /// Drop the event and count it; the count is written as an event when there is room.
    DropAndCount,
    /// Refuse: [`AuditError::QueueFull`], and the caller refuses the request.
    FailClosed,
}

/// When a [`Submit`] resolves.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Durability {
    /// Once the event is queued (the writer writes it soon; a crash can lose it).
    #[default]
    Queued,
    /// Once the event is written and synced (group commit: one sync per batch).
    Durable,
}

/// Why an event was not queued, or not made durable.
#[derive(Clone, Copy, Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum AuditError {
    /// The queue is full and the policy is fail-closed.
    #[error("the audit queue is full (fail-closed)")]
    QueueFull,
    /// The writer has stopped.
    #[error("the audit writer has stopped")]
    Closed,
    /// The sink could not write or sync the event: it is lost (and counted and reported).
    #[error("the audit event could not be written durably")]
    NotDurable,
}

/// The acknowledgement a durable event carries to the writer.
type Ack = oneshot::Sender<Result<(), AuditError>>;

enum Msg {
    Event(EventBox, Option<Ack>),
    Flush(SyncSender<()>),
    Stop,
}

/// A part that holds events back and must hand them over when the auditor closes (see
/// [`Auditor::before_close`]).
pub trait CloseHook: Send + Sync {
    /// Submit what is held back, now: the auditor still accepts events.
    fn before_close(&self);
}

struct Shared {
    tx: Mutex<Option<SyncSender<Msg>>>,
    /// Called when the auditor closes, before the last events are drained (see
    /// [`Auditor::before_close`]); entries whose owner is gone are pruned.
    close_hooks: Mutex<Vec<Weak<dyn CloseHook>>>,
    policy: FullPolicy,
    dropped: AtomicU64,
    unreported: AtomicU64,
    write_errors: AtomicU64,
    /// Events (and the writer's own reports) written by the sink.
    written: AtomicU64,
    /// Signed records the sink has written ([`Sink::checkpoints`]).
    checkpoints: AtomicU64,
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
    /// Woken (all waiters) each time the writer takes events from the queue.
    room: Arc<Notify>,
    /// Events handed over by dropped or detached [`Submit`]s while the queue was full: at most
    /// one per live `Submit`, so bounded by the requests in flight, which hold them anyway.
    overflow: Mutex<Vec<EventBox>>,
    /// Whether producers write each event's JSON before the hand-off (the sink is the
    /// [`JsonLinesSink`](crate::sink::JsonLinesSink), which splices it into the line): the
    /// serialization runs on the producers' threads, where the event's strings are in cache,
    /// and the writer reads one contiguous buffer per event instead of a dozen strings.
    prepare_json: bool,
    /// Whether the last write (or probe) of the sink succeeded.
    healthy: AtomicBool,
    /// The error that made the sink unhealthy.
    last_error: Mutex<Option<Arc<io::Error>>>,
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

    /// Wake a sleeping writer when enough events wait, or at once when `now`.
    fn queued(&self, pending: usize, now: bool) {
        if (now || pending >= self.wake_at) && self.idle.load(Ordering::SeqCst) {
            self.wake();
        }
    }

    fn wake(&self) {
        if let Some(t) = self.thread.get() {
            t.unpark();
        }
    }

    /// Count a drop under [`FullPolicy::DropAndCount`].
    fn count_drop(&self) {
        self.dropped.fetch_add(1, Ordering::Relaxed);
        self.unreported.fetch_add(1, Ordering::Relaxed);
    }

    fn stop(&self) {
        // Whoever still holds events back (counts of aggregated refusals) hands them over
        // first, so that closing never loses them.
        let hooks = self
            .close_hooks
            .lock()
            .map(|mut h| std::mem::take(&mut *h))
            .unwrap_or_default();
        for hook in hooks.iter().filter_map(Weak::upgrade) {
            hook.before_close();
        }
        let tx = self.tx.lock().ok().and_then(|mut tx| tx.take());
        if let Some(tx) = tx {
            // Queued behind every event recorded so far: the writer drains them first.
            let _ = tx.send(Msg::Stop);
            self.wake();
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

/// The outcome of one attempt to queue an event.
enum Queue {
    /// Queued; the acknowledgement to wait for, when durable.
    Queued(Option<oneshot::Receiver<Result<(), AuditError>>>),
    /// No room: the event back.
    Full(EventBox),
    /// The writer has stopped.
    Closed,
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
            .field("healthy", &self.is_healthy())
            .field("dropped", &self.dropped())
            .field("write_errors", &self.write_errors())
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
    probe: Duration,
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

    /// How often an idle writer whose sink failed tries it again (default 250 ms).
    pub fn probe_interval(mut self, every: Duration) -> Self {
        self.probe = every.max(Duration::from_millis(1));
        self
    }

    /// Start the writer thread.
    pub fn spawn(self) -> Auditor {
        let (tx, rx) = mpsc::sync_channel(self.capacity);
        let room = Arc::new(Notify::new());
        let shared = Arc::new(Shared {
            tx: Mutex::new(Some(tx.clone())),
            close_hooks: Mutex::new(Vec::new()),
            policy: self.policy,
            dropped: AtomicU64::new(0),
            unreported: AtomicU64::new(0),
            write_errors: AtomicU64::new(0),
            written: AtomicU64::new(0),
            checkpoints: AtomicU64::new(0),
            writer: Mutex::new(None),
            thread: OnceLock::new(),
            idle: AtomicBool::new(false),
            pending: AtomicUsize::new(0),
            capacity: self.capacity,
            wake_at: self.batch.min(self.capacity / 2).max(1),
            room: room.clone(),
            overflow: Mutex::new(Vec::new()),
            prepare_json: std::any::TypeId::of::<S>()
                == std::any::TypeId::of::<crate::sink::JsonLinesSink>(),
            healthy: AtomicBool::new(true),
            last_error: Mutex::new(None),
        });
        let writer = writer::Writer::new(
            rx,
            self.sink,
            writer::Timing {
                batch: self.batch,
                tick: self.tick,
                probe: self.probe,
            },
            Arc::downgrade(&shared),
            room,
        );
        let handle = std::thread::Builder::new()
            .name("secmesh-audit".into())
            .spawn(move || writer.run())
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

impl Auditor {
    /// A builder writing into `sink`.
    pub fn builder<S: Sink>(sink: S) -> AuditorBuilder<S> {
        AuditorBuilder {
            sink,
            capacity: 65_536,
            policy: FullPolicy::Block,
            batch: 1024,
            tick: Duration::from_millis(10),
            probe: Duration::from_millis(250),
        }
    }

    /// One attempt to queue, without waiting.
    fn try_queue(&self, mut event: EventBox, durability: Durability) -> Queue {
        if self.shared.prepare_json {
            event.prepare_json();
        }
        let (ack, rx) = match durability {
            Durability::Durable => {
                let (tx, rx) = oneshot::channel();
                (Some(tx), Some(rx))
            }
            _ => (None, None),
        };
        let pending = self.shared.reserve();
        match self.tx.try_send(Msg::Event(event, ack)) {
            Ok(()) => {
                self.shared.queued(pending, rx.is_some());
                Queue::Queued(rx)
            }
            Err(e) => {
                self.shared.unreserve();
                match e {
                    TrySendError::Full(Msg::Event(event, _)) => Queue::Full(event),
                    _ => Queue::Closed,
                }
            }
        }
    }

    /// Queue an event for the writer; the returned future resolves as `durability` says (see
    /// [`Submit`]). The first attempt to queue happens here, before the future is polled.
    ///
    /// The event is an [`AuditEvent`](crate::event::AuditEvent) or, on the request path, an
    /// [`EventBox`] filled in place (no allocation per event; see [`pool`](crate::pool)).
    pub fn submit(&self, event: impl Into<EventBox>, durability: Durability) -> Submit {
        Submit::new(self.clone(), event.into(), durability)
    }

    /// Queue an event from synchronous code (see [`FullPolicy`] for a full queue; under
    /// [`FullPolicy::Block`] this blocks the calling thread, so async code should use
    /// [`submit`](Self::submit)).
    pub fn record(&self, event: impl Into<EventBox>) -> Result<(), AuditError> {
        match self.try_queue(event.into(), Durability::Queued) {
            Queue::Queued(_) => Ok(()),
            Queue::Closed => Err(AuditError::Closed),
            Queue::Full(event) => match self.shared.policy {
                FullPolicy::DropAndCount => {
                    self.shared.count_drop();
                    Ok(())
                }
                FullPolicy::FailClosed => Err(AuditError::QueueFull),
                _ => {
                    let pending = self.shared.reserve();
                    match self.tx.send(Msg::Event(event, None)) {
                        Ok(()) => {
                            self.shared.queued(pending, false);
                            Ok(())
                        }
                        Err(_) => {
                            self.shared.unreserve();
                            Err(AuditError::Closed)
                        }
                    }
                }
            },
        }
    }

    /// Hand an event to the writer without waiting, even when the queue is full (it goes to
    /// the overflow the writer takes first); for drop paths.
    fn hand_over(&self, event: EventBox) {
        if let Ok(mut overflow) = self.shared.overflow.lock() {
            overflow.push(event);
        }
        self.shared.wake();
    }

    /// Wait until every event recorded before this call is written (and synced, as the sink's
    /// policy says).
    pub fn flush(&self) -> Result<(), AuditError> {
        let (done_tx, done_rx) = mpsc::sync_channel(1);
        self.tx
            .send(Msg::Flush(done_tx))
            .map_err(|_| AuditError::Closed)?;
        self.shared.wake();
        done_rx.recv().map_err(|_| AuditError::Closed)
    }

    /// Whether the queue is full now (to refuse a request up front under
    /// [`FullPolicy::FailClosed`], before doing its work).
    pub fn is_full(&self) -> bool {
        self.shared.pending.load(Ordering::SeqCst) >= self.shared.capacity
    }

    /// Whether the sink's last write succeeded. False from a failed write until a write (or a
    /// probe) succeeds again; a fail-closed caller refuses requests meanwhile.
    pub fn is_healthy(&self) -> bool {
        self.shared.healthy.load(Ordering::SeqCst)
    }

    /// The error that made the sink unhealthy, while it is (`None` when healthy).
    pub fn last_write_error(&self) -> Option<Arc<io::Error>> {
        if self.is_healthy() {
            return None;
        }
        self.shared.last_error.lock().ok().and_then(|e| e.clone())
    }

    /// The policy for a full queue.
    pub fn full_policy(&self) -> FullPolicy {
        self.shared.policy
    }

    /// Events queued and not yet taken by the writer.
    pub fn queue_depth(&self) -> usize {
        self.shared.pending.load(Ordering::Relaxed)
    }

    /// The most events the queue holds.
    pub fn capacity(&self) -> usize {
        self.shared.capacity
    }

    /// Events written by the sink (with the writer's own loss and drop reports).
    pub fn written(&self) -> u64 {
        self.shared.written.load(Ordering::Relaxed)
    }

    /// Signed records (the open record, checkpoints, rotations) the sink has written; the
    /// close record, written as the sink is dropped after [`shutdown`](Self::shutdown), is
    /// not counted.
    pub fn checkpoints(&self) -> u64 {
        self.shared.checkpoints.load(Ordering::Relaxed)
    }

    /// Events dropped because the queue was full (drop-and-count policy).
    pub fn dropped(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }

    /// Events the sink failed to write (lost, and reported in the log once it works again).
    pub fn write_errors(&self) -> u64 {
        self.shared.write_errors.load(Ordering::Relaxed)
    }

    /// Call `hook` when this auditor closes ([`shutdown`](Self::shutdown), or the last clone
    /// dropped), before the queue is drained: for a part that holds events back (a layer that
    /// aggregates repeated refusals into one counted event) to submit them. Only a weak
    /// reference is kept; hooks whose owner is gone are pruned.
    pub fn before_close(&self, hook: Weak<dyn CloseHook>) {
        if let Ok(mut hooks) = self.shared.close_hooks.lock() {
            hooks.retain(|h| h.strong_count() > 0);
            hooks.push(hook);
        }
    }

    /// Drain the queue, write everything and stop the writer. Other clones then get
    /// [`AuditError::Closed`].
    pub fn shutdown(self) {
        let Auditor { shared, tx } = self;
        drop(tx);
        shared.stop();
    }
}
