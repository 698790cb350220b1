//! The writer thread: batches, group commit, failure accounting and recovery.

use std::io;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use super::{Ack, AuditError, Msg, Shared};
use crate::event::{AuditEvent, Decision, Direction};
use crate::pool::{EventBox, Returns};
use crate::sink::Sink;

/// How long a writer finds nothing to do before it gives back the boxes of a burst.
const QUIET: Duration = Duration::from_secs(1);

/// The service name of the queue's own events (drop and loss reports).
const SERVICE: &str = "secmesh-audit";

pub(super) struct Timing {
    pub(super) batch: usize,
    pub(super) tick: Duration,
    pub(super) probe: Duration,
}

pub(super) struct Writer<S> {
    rx: Receiver<Msg>,
    sink: S,
    timing: Timing,
    shared: Weak<Shared>,
    room: Arc<Notify>,
    /// The batch, in the boxes the events came in: written in place, then the boxes (with
    /// their events) go back to the threads that made them, which reuse them (the writer
    /// frees nothing a producer allocated) and no event is moved out of its box.
    events: Vec<EventBox>,
    /// Where the written boxes go back to.
    returns: Returns,
    /// Since when the writer has found nothing to do (to give back a burst's boxes).
    quiet_since: Option<Instant>,
    /// Events taken from the queue and not yet subtracted from `pending` (once per take, not
    /// once per event: the counter's cache line is shared with every producer).
    taken: usize,
    acks: Vec<Ack>,
    flushes: Vec<SyncSender<()>>,
    stopping: bool,
    closed: bool,
    /// The outage in progress: the first error and the events lost since it began.
    outage: Option<Outage>,
}

struct Outage {
    error: Arc<io::Error>,
    /// Events lost and not yet reported.
    lost: u64,
    /// Whether a report of this outage is in the log already.
    reported: bool,
}

/// What a batch held besides the queued events, to undo on failure.
#[derive(Default)]
struct Extra {
    /// The loss report went first.
    report: bool,
    /// A drop report of this many events went last.
    dropped: u64,
}

impl<S: Sink> Writer<S> {
    pub(super) fn new(
        rx: Receiver<Msg>,
        sink: S,
        timing: Timing,
        shared: Weak<Shared>,
        room: Arc<Notify>,
    ) -> Self {
        Writer {
            rx,
            events: Vec::with_capacity(timing.batch),
            returns: Returns::default(),
            quiet_since: None,
            taken: 0,
            sink,
            timing,
            shared,
            room,
            acks: Vec::new(),
            flushes: Vec::new(),
            stopping: false,
            closed: false,
            outage: None,
        }
    }

    pub(super) fn run(mut self) {
        while !self.stopping && !self.closed {
            let taken = self.take();
            if !taken && !self.stopping && !self.closed {
                self.idle();
                continue;
            }
            self.write();
        }
        if self.outage.is_none()
            && let Err(e) = self.sink.tick()
        {
            tracing::error!(target: "secmesh::audit", error = %e, "audit sink failed at shutdown");
        }
        self.publish_checkpoints();
        if let Some(o) = &self.outage {
            tracing::error!(
                target: "secmesh::audit",
                error = %o.error, lost = o.lost,
                "audit writer stopped while the sink was failing"
            );
        }
        // Hang up first, then wake every waiter: they see the queue closed.
        let Writer { rx, room, .. } = self;
        drop(rx);
        room.notify_waiters();
    }

    fn on_event(&mut self, ev: EventBox, ack: Option<Ack>) {
        self.events.push(ev);
        if let Some(a) = ack {
            self.acks.push(a);
        }
        self.taken += 1;
    }

    /// Subtract the events taken from the producers' `pending` count.
    fn settle(&mut self) {
        if self.taken > 0 {
            if let Some(s) = self.shared.upgrade() {
                s.pending.fetch_sub(self.taken, Ordering::SeqCst);
            }
            self.taken = 0;
        }
    }

    /// Give the written batch's boxes back to the threads that made them (one lock per
    /// thread per batch).
    fn recycle(&mut self) {
        self.returns.give_back(&mut self.events);
    }

    fn on_msg(&mut self, m: Msg) {
        match m {
            Msg::Event(ev, ack) => self.on_event(ev, ack),
            Msg::Flush(done) => self.flushes.push(done),
            Msg::Stop => self.stopping = true,
        }
    }

    /// Take what is queued, up to a batch (all of it when stopping), without blocking: the
    /// producers never have to wake a writer that is busy. Whether anything was taken.
    fn take(&mut self) -> bool {
        if let Some(s) = self.shared.upgrade()
            && let Ok(mut overflow) = s.overflow.lock()
        {
            self.events.append(&mut overflow);
        }
        let mut queued = false;
        loop {
            if self.events.len() >= self.timing.batch && !self.stopping {
                break;
            }
            match self.rx.try_recv() {
                Ok(m) => {
                    queued = true;
                    self.on_msg(m);
                }
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => {
                    self.closed = true;
                    break;
                }
            }
        }
        self.settle();
        if queued {
            // Room again: wake the producers waiting for it.
            self.room.notify_waiters();
        }
        !self.events.is_empty() || !self.flushes.is_empty()
    }

    /// Nothing to do: sleep until woken or the tick (time-based checkpoints, fsync); while
    /// the sink is failing, until the probe interval, then probe it.
    fn idle(&mut self) {
        let Some(s) = self.shared.upgrade() else {
            self.closed = true;
            return;
        };
        s.idle.store(true, Ordering::SeqCst);
        drop(s);
        // Last look, now that producers know to wake us.
        match self.rx.try_recv() {
            Ok(m) => {
                self.set_busy();
                self.on_msg(m);
                self.settle();
                return;
            }
            Err(TryRecvError::Disconnected) => {
                self.set_busy();
                self.closed = true;
                return;
            }
            Err(TryRecvError::Empty) => {}
        }
        let failing = self.outage.is_some();
        std::thread::park_timeout(if failing {
            self.timing.probe
        } else {
            self.timing.tick
        });
        self.set_busy();
        if self.rx_is_empty() {
            // Quiet for a second: give back the boxes of the last burst.
            let since = *self.quiet_since.get_or_insert_with(Instant::now);
            if since.elapsed() >= QUIET {
                self.trim_pool();
            }
        } else {
            self.quiet_since = None;
        }
        if failing {
            // The probe: try to write the loss report alone (when events came meanwhile,
            // their batch carries the report instead).
            if self.rx_is_empty() {
                self.write();
            }
        } else if let Err(e) = self.sink.tick() {
            self.failed(e, 0);
        } else {
            self.publish_checkpoints();
        }
    }

    /// A quiet tick: give back the boxes of a burst beyond what an idle thread keeps (freed
    /// outside the locks, while no producer is busy).
    fn trim_pool(&mut self) {
        self.returns.trim();
    }

    fn rx_is_empty(&self) -> bool {
        self.shared
            .upgrade()
            .is_none_or(|s| s.pending.load(Ordering::SeqCst) == 0)
    }

    fn set_busy(&self) {
        if let Some(s) = self.shared.upgrade() {
            s.idle.store(false, Ordering::SeqCst);
        }
    }

    /// Add the loss report (first) and the drop report (last) to the batch.
    fn add_reports(&mut self) -> Extra {
        let mut extra = Extra::default();
        if let Some(o) = &self.outage
            && (o.lost > 0 || !o.reported)
        {
            let mut ev = AuditEvent::now(SERVICE, Direction::In);
            ev.decision = Decision::Error;
            ev.reason = Some(format!(
                "lost {} events: the audit sink could not write them ({})",
                o.lost, o.error
            ));
            self.events.insert(0, EventBox::from(ev));
            extra.report = true;
        }
        if let Some(s) = self.shared.upgrade() {
            let n = s.unreported.swap(0, Ordering::Relaxed);
            if n > 0 {
                let mut ev = AuditEvent::now(SERVICE, Direction::In);
                ev.decision = Decision::Error;
                ev.reason = Some(format!("dropped {n} events: the audit queue was full"));
                self.events.push(EventBox::from(ev));
                extra.dropped = n;
            }
        }
        extra
    }

    /// Write the batch taken (with its reports), sync once if any event of it wants a durable
    /// acknowledgement, acknowledge, and answer flushes.
    fn write(&mut self) {
        // During an outage every attempt takes the whole path (write, sync, tick): the sink is
        // healthy again only when all of it works.
        let probing = self.outage.is_some();
        let extra = self.add_reports();
        let mut result = Ok(());
        if !self.events.is_empty() {
            result = self.sink.write_boxed(&mut self.events);
            if result.is_ok() && (probing || !self.acks.is_empty()) {
                result = self.sink.sync();
            }
        }
        let written = result.is_ok();
        if written && let Some(s) = self.shared.upgrade() {
            s.written
                .fetch_add(self.events.len() as u64, Ordering::Relaxed);
        }
        match result {
            Ok(()) => {
                if extra.report
                    && let Some(o) = &mut self.outage
                {
                    // The loss so far is in the log now.
                    o.lost = 0;
                    o.reported = true;
                }
                for a in self.acks.drain(..) {
                    let _ = a.send(Ok(()));
                }
            }
            Err(e) => {
                let reports = usize::from(extra.report) + usize::from(extra.dropped > 0);
                let lost = self.events.len().saturating_sub(reports) as u64;
                if extra.dropped > 0
                    && let Some(s) = self.shared.upgrade()
                {
                    // The drop report is written with the next batch that succeeds.
                    s.unreported.fetch_add(extra.dropped, Ordering::Relaxed);
                }
                self.failed(e, lost);
                for a in self.acks.drain(..) {
                    let _ = a.send(Err(AuditError::NotDurable));
                }
            }
        }
        self.recycle();
        if written && (self.outage.is_some() || !self.flushes.is_empty()) {
            match self.sink.tick() {
                Err(e) => self.failed(e, 0),
                Ok(()) => {
                    if let Some(o) = self.outage.take() {
                        self.set_health(true, None);
                        tracing::info!(
                            target: "secmesh::audit",
                            error = %o.error,
                            "audit sink writes again; the loss is reported in the log"
                        );
                    }
                }
            }
        }
        for f in self.flushes.drain(..) {
            let _ = f.send(());
        }
        self.publish_checkpoints();
    }

    /// Tell the auditor how many signed records the sink has written.
    fn publish_checkpoints(&self) {
        if let Some(s) = self.shared.upgrade() {
            s.checkpoints
                .store(self.sink.checkpoints(), Ordering::Relaxed);
        }
    }

    /// A write (or sync, or tick) failed and `lost` events with it.
    fn failed(&mut self, e: io::Error, lost: u64) {
        if let Some(s) = self.shared.upgrade() {
            s.write_errors.fetch_add(lost, Ordering::Relaxed);
        }
        match &mut self.outage {
            Some(o) => o.lost += lost,
            None => {
                let error = Arc::new(e);
                tracing::error!(
                    target: "secmesh::audit",
                    error = %error, lost,
                    "audit sink cannot write; events are lost until it recovers"
                );
                self.set_health(false, Some(error.clone()));
                self.outage = Some(Outage {
                    error,
                    lost,
                    reported: false,
                });
            }
        }
    }

    fn set_health(&self, healthy: bool, error: Option<Arc<io::Error>>) {
        if let Some(s) = self.shared.upgrade() {
            if let Ok(mut last) = s.last_error.lock() {
                *last = error;
            }
            s.healthy.store(healthy, Ordering::SeqCst);
        }
    }
}
