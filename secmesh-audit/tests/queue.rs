//! The queue's full policies, flush and draining shutdown, with a sink that can be held shut.
#![allow(clippy::unwrap_used)]

use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use secmesh_audit::event::{AuditEvent, Decision, Direction};
use secmesh_audit::sink::Sink;
use secmesh_audit::{AuditError, Auditor, FullPolicy};

/// Keeps events in memory; each batch waits for a permit while the gate is closed (the permit
/// sender alive). Dropping the sender opens the gate for good.
#[derive(Clone)]
struct Gated {
    events: Arc<Mutex<Vec<AuditEvent>>>,
    gate: Arc<Mutex<Option<mpsc::Receiver<()>>>>,
}

impl Gated {
    fn new() -> (Gated, mpsc::Sender<()>) {
        let (tx, rx) = mpsc::channel();
        (
            Gated {
                events: Arc::default(),
                gate: Arc::new(Mutex::new(Some(rx))),
            },
            tx,
        )
    }

    fn open() -> Gated {
        Gated {
            events: Arc::default(),
            gate: Arc::default(),
        }
    }
}

impl Sink for Gated {
    fn write_batch(&mut self, events: &mut [AuditEvent]) -> std::io::Result<()> {
        if let Some(rx) = self.gate.lock().unwrap().as_ref() {
            let _ = rx.recv();
        }
        self.events.lock().unwrap().extend(events.iter().cloned());
        Ok(())
    }
}

fn ev(i: u64) -> AuditEvent {
    let mut e = AuditEvent::now("svc", Direction::In);
    e.latency_us = Some(i);
    e
}

#[test]
fn drop_and_count_counts_and_reports() {
    let (sink, permits) = Gated::new();
    let auditor = Auditor::builder(sink.clone())
        .capacity(4)
        .batch_size(1)
        .full_policy(FullPolicy::DropAndCount)
        .spawn();
    for i in 0..50 {
        auditor.record(ev(i)).unwrap();
    }
    assert!(auditor.dropped() > 0);
    let dropped = auditor.dropped();
    // Let everything through.
    // Open the gate for good by hanging up: the writer, which holds the gate's lock while it
    // waits, sees the hang-up at once (taking the lock here could deadlock with it).
    drop(permits);
    auditor.flush().unwrap();
    auditor.clone().shutdown();
    let events = sink.events.lock().unwrap();
    // Drops are reported as they are noticed, possibly over several batches: the reports add
    // up to the count, and nothing else is missing.
    let reports: Vec<&AuditEvent> = events
        .iter()
        .filter(|e| e.service == "secmesh-audit")
        .collect();
    assert!(!reports.is_empty(), "the drop count is written as an event");
    let reported: u64 = reports
        .iter()
        .map(|r| {
            assert_eq!(r.decision, Decision::Error);
            let reason = r.reason.as_deref().unwrap();
            reason
                .strip_prefix("dropped ")
                .and_then(|rest| rest.split(' ').next())
                .unwrap()
                .parse::<u64>()
                .unwrap()
        })
        .sum();
    assert_eq!(reported, dropped);
    assert_eq!((events.len() - reports.len()) as u64 + dropped, 50);
}

#[test]
fn fail_closed_refuses_when_full() {
    let (sink, permits) = Gated::new();
    let auditor = Auditor::builder(sink.clone())
        .capacity(2)
        .batch_size(1)
        .full_policy(FullPolicy::FailClosed)
        .spawn();
    let mut refused = 0;
    for i in 0..20 {
        if auditor.record(ev(i)) == Err(AuditError::QueueFull) {
            refused += 1;
        }
    }
    assert!(refused > 0);
    // Open the gate for good by hanging up: the writer, which holds the gate's lock while it
    // waits, sees the hang-up at once (taking the lock here could deadlock with it).
    drop(permits);
    auditor.flush().unwrap();
    assert_eq!(sink.events.lock().unwrap().len(), 20 - refused);
}

#[test]
fn block_loses_nothing_and_shutdown_drains() {
    let sink = Gated::open();
    let auditor = Auditor::builder(sink.clone()).capacity(8).spawn();
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let a = auditor.clone();
            std::thread::spawn(move || {
                for i in 0..1000 {
                    a.record(ev(t * 1000 + i)).unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let other = auditor.clone();
    auditor.shutdown();
    assert_eq!(sink.events.lock().unwrap().len(), 4000);
    assert_eq!(other.record(ev(0)), Err(AuditError::Closed));
}

/// Event boxes go back and forth between the producers and the writer: every event written is
/// exactly the one recorded (nothing of an earlier event in the same box shows through), in
/// each producer's order (through the default `Sink::write_boxed`).
#[test]
fn reused_boxes_carry_nothing_of_earlier_events() {
    fn rich(t: u64, i: u64) -> AuditEvent {
        let mut e = ev(i);
        e.service = format!("producer-{t}");
        e.sub = Some(format!("user:{i}"));
        e.verb = Some("read".into());
        e.object = Some(format!("orders/{i}/{}", "x".repeat((i % 97) as usize)));
        e.decision = Decision::Deny;
        e.reason = Some("no rule".into());
        e.status = Some(403);
        e
    }
    fn bare(t: u64, i: u64) -> AuditEvent {
        let mut e = ev(i);
        e.service = format!("producer-{t}");
        e
    }
    fn expected(t: u64, i: u64) -> AuditEvent {
        if i.is_multiple_of(3) {
            rich(t, i)
        } else {
            bare(t, i)
        }
    }

    let sink = Gated::open();
    let events = sink.events.clone();
    let auditor = Auditor::builder(sink).capacity(64).batch_size(16).spawn();
    const N: u64 = 5_000;
    let producers: Vec<_> = (0..2)
        .map(|t| {
            let a = auditor.clone();
            std::thread::spawn(move || {
                for i in 0..N {
                    a.record(expected(t, i)).unwrap();
                    if i.is_multiple_of(500) {
                        a.flush().unwrap();
                    }
                }
            })
        })
        .collect();
    for p in producers {
        p.join().unwrap();
    }
    auditor.shutdown();
    let events = events.lock().unwrap();
    assert_eq!(events.len() as u64, 2 * N);
    let mut next = [0u64; 2];
    for e in events.iter() {
        let t = u64::from(e.service == "producer-1");
        let i = next[t as usize];
        let mut want = expected(t, i);
        want.time.clone_from(&e.time);
        assert_eq!(*e, want, "producer {t}, event {i}");
        next[t as usize] += 1;
    }
}

/// The counts an operator scrapes agree with the log itself: events written, signed records
/// (what `Verifier` counts in the files), a queue that drains to zero.
#[test]
fn written_checkpoints_and_depth_agree_with_the_log() {
    use secmesh_audit::chain::AuditKey;
    use secmesh_audit::sink::{JsonLinesConfig, JsonLinesSink};
    use secmesh_audit::verify::Verifier;

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("orders.jsonl");
    let key = AuditKey::generate().unwrap();
    let public = key.public_key().to_vec();
    let config = JsonLinesConfig::default()
        .with_key(key)
        .with_service("svc")
        .with_checkpoints(10, None);
    let auditor = Auditor::builder(JsonLinesSink::open(&path, config).unwrap())
        .capacity(64)
        .spawn();
    assert_eq!(auditor.capacity(), 64);
    for i in 0..95 {
        auditor.record(ev(i)).unwrap();
    }
    auditor.flush().unwrap();
    assert_eq!(auditor.written(), 95);
    assert_eq!(auditor.queue_depth(), 0);
    let before_close = auditor.checkpoints();
    // The `open` record and the checkpoints due by count (checked once per batch).
    assert!(before_close >= 2, "{before_close} signed records");
    let other = auditor.clone();
    auditor.shutdown();
    let report = Verifier::new(Some(&public))
        .service("svc")
        .verify_files(&[path])
        .unwrap();
    assert_eq!(report.events, 95);
    // Every signed record in the file but the close record, which the sink writes as it is
    // dropped, after the writer's last count.
    assert!(report.closed);
    assert_eq!(other.checkpoints(), report.checkpoints - 1);
    assert_eq!(other.written(), 95);
}
