//! Durable submission (group commit), waiting for room without parking a thread, and a sink
//! that fails and recovers: counted, reported in the log once it writes again, the state
//! change logged once.
#![allow(clippy::unwrap_used)]

use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use secmesh_audit::event::{AuditEvent, Decision, Direction};
use secmesh_audit::sink::Sink;
use secmesh_audit::{AuditError, Auditor, Durability, FullPolicy};

/// Where a [`Flaky`] sink fails while its switch is on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum FailAt {
    Write,
    Sync,
    Tick,
}

/// An in-memory sink that tells written from synced events, can be held shut (a gate), and
/// fails with ENOSPC-like errors while `failing` is set.
#[derive(Clone, Default)]
struct Flaky {
    written: Arc<Mutex<Vec<AuditEvent>>>,
    synced: Arc<AtomicUsize>,
    /// Where a failure rolls back to.
    good: Arc<AtomicUsize>,
    syncs: Arc<AtomicU64>,
    failing: Arc<AtomicBool>,
    fail_at: Arc<Mutex<Option<FailAt>>>,
    gate: Arc<Mutex<Option<mpsc::Receiver<()>>>>,
    marker: &'static str,
}

impl Flaky {
    fn new(marker: &'static str) -> Flaky {
        Flaky {
            marker,
            ..Flaky::default()
        }
    }

    fn fail(&self, at: Option<FailAt>) {
        *self.fail_at.lock().unwrap() = at;
        self.failing.store(at.is_some(), Ordering::SeqCst);
    }

    /// Fail when switched on at `at`, and then, like a sink that rolls back to its last good
    /// record, forget what was written since the last sync.
    fn err(&self, at: FailAt) -> io::Result<()> {
        if self.failing.load(Ordering::SeqCst) && *self.fail_at.lock().unwrap() == Some(at) {
            let good = self.good.load(Ordering::SeqCst);
            self.written.lock().unwrap().truncate(good);
            return Err(io::Error::other(format!("{}: no space left", self.marker)));
        }
        Ok(())
    }

    fn events(&self) -> Vec<AuditEvent> {
        self.written.lock().unwrap().clone()
    }
}

impl Sink for Flaky {
    fn write_batch(&mut self, events: &mut [AuditEvent]) -> io::Result<()> {
        if let Some(rx) = self.gate.lock().unwrap().as_ref() {
            let _ = rx.recv();
        }
        self.err(FailAt::Write)?;
        self.written.lock().unwrap().extend(events.iter().cloned());
        if !self.failing.load(Ordering::SeqCst) {
            // Whole records only: what a healthy sink wrote is good.
            let n = self.written.lock().unwrap().len();
            self.good.store(n, Ordering::SeqCst);
        }
        Ok(())
    }

    fn sync(&mut self) -> io::Result<()> {
        self.err(FailAt::Sync)?;
        self.syncs.fetch_add(1, Ordering::SeqCst);
        let n = self.written.lock().unwrap().len();
        self.synced.store(n, Ordering::SeqCst);
        self.good.store(n, Ordering::SeqCst);
        Ok(())
    }

    fn tick(&mut self) -> io::Result<()> {
        self.err(FailAt::Tick)
    }
}

fn ev(i: u64) -> AuditEvent {
    let mut e = AuditEvent::now("svc", Direction::In);
    e.jti = Some(format!("e{i}"));
    e
}

fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The `lost N` of the loss reports in `events`.
fn lost_reported(events: &[AuditEvent]) -> Vec<u64> {
    events
        .iter()
        .filter(|e| e.service == "secmesh-audit")
        .filter_map(|e| e.reason.as_deref()?.strip_prefix("lost "))
        .map(|r| r.split(' ').next().unwrap().parse().unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_durable_ack_comes_after_the_sync_and_one_sync_serves_a_batch() {
    let sink = Flaky::new("group");
    let (permit, gate) = mpsc::channel();
    *sink.gate.lock().unwrap() = Some(gate);
    let auditor = Auditor::builder(sink.clone()).spawn();
    // The writer takes the first event and waits at the gate; the others queue behind it.
    let first = tokio::spawn(auditor.submit(ev(0), Durability::Durable));
    // (The writer holds the gate's lock while it waits at it.)
    wait_until("the writer to take the first event", || {
        sink.gate.try_lock().is_err()
    });
    let mut waiting = Vec::new();
    for i in 1..=200 {
        let s = sink.clone();
        let submit = auditor.submit(ev(i), Durability::Durable);
        waiting.push(tokio::spawn(async move {
            submit.await.unwrap();
            // Acknowledged: it must be among the synced events.
            let synced = s.synced.load(Ordering::SeqCst);
            let pos = s
                .events()
                .iter()
                .position(|e| e.jti.as_deref() == Some(&*format!("e{i}")))
                .unwrap();
            assert!(pos < synced, "event {i} acknowledged before its sync");
        }));
    }
    drop(permit);
    first.await.unwrap().unwrap();
    for w in waiting {
        w.await.unwrap();
    }
    // One sync for the first event, one for the 200 queued behind it.
    assert_eq!(sink.syncs.load(Ordering::SeqCst), 2);
    // Queued events are not synced for their own sake.
    auditor.submit(ev(999), Durability::Queued).await.unwrap();
    auditor.flush().unwrap();
    assert_eq!(sink.syncs.load(Ordering::SeqCst), 2);
    auditor.shutdown();
}

#[tokio::test(flavor = "current_thread")]
async fn a_full_queue_waits_without_parking_the_thread() {
    let sink = Flaky::new("room");
    let (permit, gate) = mpsc::channel();
    *sink.gate.lock().unwrap() = Some(gate);
    let auditor = Auditor::builder(sink.clone())
        .capacity(2)
        .batch_size(1)
        .full_policy(FullPolicy::Block)
        .spawn();
    // 30 submissions on a single-threaded runtime: most must wait for room. If waiting parked
    // the thread, the task below that opens the gate could never run.
    let mut subs = Vec::new();
    for i in 0..30 {
        subs.push(tokio::spawn(auditor.submit(ev(i), Durability::Queued)));
    }
    let opener = tokio::spawn(async move {
        for _ in 0..100 {
            tokio::task::yield_now().await;
        }
        drop(permit);
    });
    for (i, s) in subs.into_iter().enumerate() {
        tokio::time::timeout(Duration::from_secs(20), s)
            .await
            .unwrap_or_else(|_| panic!("submission {i} never got room"))
            .unwrap()
            .unwrap();
    }
    opener.await.unwrap();
    auditor.clone().shutdown();
    let mut jtis: Vec<String> = sink.events().into_iter().filter_map(|e| e.jti).collect();
    jtis.sort();
    jtis.dedup();
    assert_eq!(jtis.len(), 30, "nothing lost, nothing doubled");
}

#[tokio::test(flavor = "current_thread")]
async fn a_submission_dropped_or_detached_while_waiting_is_not_lost() {
    let sink = Flaky::new("detach");
    let (permit, gate) = mpsc::channel();
    *sink.gate.lock().unwrap() = Some(gate);
    let auditor = Auditor::builder(sink.clone())
        .capacity(1)
        .batch_size(1)
        .spawn();
    let mut detached = 0;
    for i in 0..20 {
        let s = auditor.submit(ev(i), Durability::Durable);
        if i % 2 == 0 {
            s.detach();
        } else {
            // Polled once (registered for room), then dropped: the client went away.
            let _ = tokio::time::timeout(Duration::from_millis(1), s).await;
        }
        detached += 1;
    }
    drop(permit);
    auditor.flush().unwrap();
    auditor.clone().shutdown();
    let mut jtis: Vec<String> = sink.events().into_iter().filter_map(|e| e.jti).collect();
    jtis.sort();
    jtis.dedup();
    assert_eq!(jtis.len(), detached);
}

/// Counts `secmesh::audit` error and info events that mention one sink's marker.
struct Counter {
    seen: Mutex<Vec<(tracing::Level, String)>>,
}

struct Fields(String);

impl tracing::field::Visit for Fields {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        self.0.push_str(&format!(" {}={value:?}", field.name()));
    }
}

impl tracing::Subscriber for Counter {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        if event.metadata().target() == "secmesh::audit" {
            let mut f = Fields(String::new());
            event.record(&mut f);
            self.seen
                .lock()
                .unwrap()
                .push((*event.metadata().level(), f.0));
        }
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

static LOGS: std::sync::OnceLock<Arc<Counter>> = std::sync::OnceLock::new();

fn logs() -> Arc<Counter> {
    LOGS.get_or_init(|| {
        let c = Arc::new(Counter {
            seen: Mutex::new(Vec::new()),
        });
        let _ = tracing::subscriber::set_global_default(SharedCounter(c.clone()));
        c
    })
    .clone()
}

struct SharedCounter(Arc<Counter>);

impl tracing::Subscriber for SharedCounter {
    fn enabled(&self, m: &tracing::Metadata<'_>) -> bool {
        self.0.enabled(m)
    }
    fn new_span(&self, a: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        self.0.new_span(a)
    }
    fn record(&self, s: &tracing::span::Id, r: &tracing::span::Record<'_>) {
        self.0.record(s, r);
    }
    fn record_follows_from(&self, a: &tracing::span::Id, b: &tracing::span::Id) {
        self.0.record_follows_from(a, b);
    }
    fn event(&self, e: &tracing::Event<'_>) {
        self.0.event(e);
    }
    fn enter(&self, s: &tracing::span::Id) {
        self.0.enter(s);
    }
    fn exit(&self, s: &tracing::span::Id) {
        self.0.exit(s);
    }
}

fn logged(marker: &str, level: tracing::Level) -> usize {
    logs()
        .seen
        .lock()
        .unwrap()
        .iter()
        .filter(|(l, s)| *l == level && s.contains(marker))
        .count()
}

/// One outage where the sink fails at `at`, under `policy`: the durable submissions made
/// during it fail with `NotDurable`, the auditor is unhealthy, the change is logged once; when
/// the sink works again it recovers by itself, and the loss report's counts add up.
async fn outage(marker: &'static str, at: FailAt, policy: FullPolicy) {
    logs();
    let sink = Flaky::new(marker);
    let auditor = Auditor::builder(sink.clone())
        .full_policy(policy)
        .probe_interval(Duration::from_millis(20))
        .spawn();
    auditor
        .submit(ev(0), Durability::Durable)
        .await
        .expect("healthy at first");
    sink.fail(Some(at));
    let mut not_durable = 0;
    for i in 1..=50 {
        match auditor.submit(ev(i), Durability::Durable).await {
            Err(AuditError::NotDurable) => not_durable += 1,
            Ok(()) => {}
            Err(e) => panic!("{marker}: unexpected {e}"),
        }
        if at != FailAt::Tick {
            assert!(!auditor.is_healthy(), "{marker}: unhealthy after a failure");
        }
    }
    if at == FailAt::Tick {
        // Ticks run when the writer is idle.
        wait_until("an idle tick to fail", || !auditor.is_healthy());
    } else {
        assert_eq!(not_durable, 50, "{marker}: every durable event failed");
    }
    assert!(
        auditor
            .last_write_error()
            .unwrap()
            .to_string()
            .contains(marker)
    );
    // Queued events during the outage are lost too (counted), unless only the tick fails: the
    // events are then written and synced, and only the auditor's health says something failed.
    let before = auditor.write_errors();
    for i in 51..=60 {
        auditor.submit(ev(i), Durability::Queued).await.unwrap();
    }
    if at == FailAt::Tick {
        auditor.flush().unwrap();
        assert_eq!(auditor.write_errors(), 0);
        assert!(
            !auditor.is_healthy(),
            "{marker}: unhealthy while ticks fail"
        );
    } else {
        wait_until("the queued events to be tried", || {
            auditor.write_errors() >= before + 10
        });
    }
    sink.fail(None);
    wait_until("recovery", || auditor.is_healthy());
    assert!(auditor.last_write_error().is_none());
    auditor.flush().unwrap();
    let lost = auditor.write_errors();
    let events = sink.events();
    let reported = lost_reported(&events);
    assert_eq!(reported.len(), 1, "{marker}: one report per outage");
    assert_eq!(reported.iter().sum::<u64>(), lost, "{marker}");
    let report = events
        .iter()
        .find(|e| e.service == "secmesh-audit")
        .unwrap();
    assert_eq!(report.decision, Decision::Error);
    assert!(report.reason.as_deref().unwrap().contains(marker));
    // After recovery, durable submissions work again.
    auditor.submit(ev(99), Durability::Durable).await.unwrap();
    auditor.clone().shutdown();
    assert_eq!(
        logged(marker, tracing::Level::ERROR),
        1,
        "{marker}: the failure logged once"
    );
    assert_eq!(
        logged(marker, tracing::Level::INFO),
        1,
        "{marker}: the recovery logged once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_write_is_counted_reported_and_recovered_from() {
    outage("write-block", FailAt::Write, FullPolicy::Block).await;
    outage("write-fail-closed", FailAt::Write, FullPolicy::FailClosed).await;
    outage("write-drop", FailAt::Write, FullPolicy::DropAndCount).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_sync_is_counted_reported_and_recovered_from() {
    outage("sync-block", FailAt::Sync, FullPolicy::Block).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_tick_makes_the_auditor_unhealthy_until_it_recovers() {
    outage("tick-block", FailAt::Tick, FullPolicy::Block).await;
}

#[test]
fn the_synchronous_api_still_works_and_shutdown_closes_submit() {
    let sink = Flaky::new("sync-api");
    let auditor = Auditor::builder(sink.clone()).spawn();
    for i in 0..10 {
        auditor.record(ev(i)).unwrap();
    }
    auditor.flush().unwrap();
    let other = auditor.clone();
    auditor.shutdown();
    assert_eq!(sink.events().len(), 10);
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    assert_eq!(
        rt.block_on(other.submit(ev(0), Durability::Durable)),
        Err(AuditError::Closed)
    );
}
