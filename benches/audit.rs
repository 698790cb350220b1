//! Audit throughput and request-path cost.
//!
//! - `audit/handoff/idle`: what the request path pays to audit one request: build the event
//!   from the request's borrowed parts (as the tower layer does) and hand it to the queue. The
//!   writer drains into a sink that keeps up, so that this measures the hand-off, not the disk.
//! - `audit/handoff/loaded`: the same while another thread submits events as fast as it can
//!   (the queue and the writer are busy).
//! - `audit/handoff/build-only`: building the event alone (no queue), for the split.
//! - `-owned` rows: the same with the event built as an `AuditEvent` of owned strings
//!   instead of in an `EventBox` (the way the request path built it before the pool).
//! - `audit/throughput/fsync-per-batch`: 100,000 events recorded from one thread and flushed
//!   through the queue into the chained JSON-lines sink with fsync per batch and signed
//!   checkpoints every 1,000 records; events/s = 100,000 / time. Each producer writes its
//!   event's JSON before the hand-off; `-writer-serializes`: the same sink behind a wrapper
//!   the auditor does not recognise, so that the writer serializes every event (as before).
//! - `audit/sink-batch-1024` (`-no-fsync`): the sink alone (serialize, chain, write, fsync) per
//!   batch of 1,024 events.
//! - `audit/sha256-line-<N>B`: the SHA-256 of one such line alone, the chain's floor per line.
//!
//! ```text
//! cargo bench -p secmesh --bench audit -- 'audit/'
//! ```
#![allow(missing_docs, clippy::unwrap_used)]

use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use secmesh::audit::chain::AuditKey;
use secmesh::audit::event::{AuditEvent, Decision, Direction};
use secmesh::audit::pool::EventBox;
use secmesh::audit::sink::{Fsync, JsonLinesConfig, JsonLinesSink, Sink};
use secmesh::audit::{Auditor, FullPolicy};
use secmesh::core::{SpanId, TraceId, TxnId};

/// What a request hands the audit layer, borrowed.
struct Parts {
    txn: TxnId,
    trace: TraceId,
    span: SpanId,
    sub: &'static str,
    caller: &'static str,
    verb: &'static str,
    object: String,
    method: &'static str,
    path: String,
    rule: &'static str,
    jti: &'static str,
    token_sha256: String,
    peer: &'static str,
}

fn parts(i: u64) -> Parts {
    Parts {
        txn: "4bf92f3577b34da6a3ce929d0e0e4736".parse().unwrap(),
        trace: "4bf92f3577b34da6a3ce929d0e0e4736".parse().unwrap(),
        span: "00f067aa0ba902b7".parse().unwrap(),
        sub: "user:alice",
        caller: "spiffe://mesh.test/gateway",
        verb: "read",
        object: format!("orders/user:alice/{i}"),
        method: "GET",
        path: format!("/orders/user:alice/{i}"),
        rule: "owners-read-own-orders",
        jti: "gaGveFpQkF6QZTeW6QDWdA",
        token_sha256: "ab".repeat(32),
        peer: "127.0.0.1:50312",
    }
}

/// The event of one request, built the way the tower layer builds it: in a box of this
/// thread's, its strings written into the buffers of the box's earlier events.
fn build(p: &Parts) -> EventBox {
    let mut e = EventBox::new("orders", Direction::In);
    e.txn = Some(p.txn);
    e.trace_id = Some(p.trace);
    e.span_id = Some(p.span);
    e.sub = Some(e.string(p.sub));
    e.caller = Some(e.string(p.caller));
    e.verb = Some(e.string(p.verb));
    e.object = Some(e.string(&p.object));
    e.method = Some(e.string(p.method));
    e.path = Some(e.string(&p.path));
    e.decision = Decision::Allow;
    e.rule = Some(e.string(p.rule));
    e.reason = Some(e.string("grant"));
    e.status = Some(200);
    e.latency_us = Some(1234);
    e.jti = Some(e.string(p.jti));
    e.token_sha256 = Some(e.string(&p.token_sha256));
    e.peer = Some(e.string(p.peer));
    e
}

/// The same event as an `AuditEvent` of owned strings (the way it was built before
/// `EventBox`): a dozen allocations, freed wherever the event is dropped.
fn build_owned(p: &Parts) -> AuditEvent {
    let mut e = AuditEvent::now("orders", Direction::In);
    e.txn = Some(p.txn);
    e.trace_id = Some(p.trace);
    e.span_id = Some(p.span);
    e.sub = Some(p.sub.to_owned());
    e.caller = Some(p.caller.to_owned());
    e.verb = Some(p.verb.to_owned());
    e.object = Some(p.object.clone());
    e.method = Some(p.method.to_owned());
    e.path = Some(p.path.clone());
    e.decision = Decision::Allow;
    e.rule = Some(p.rule.to_owned());
    e.reason = Some("grant".to_owned());
    e.status = Some(200);
    e.latency_us = Some(1234);
    e.jti = Some(p.jti.to_owned());
    e.token_sha256 = Some(p.token_sha256.clone());
    e.peer = Some(p.peer.to_owned());
    e
}

fn event(i: u64) -> AuditEvent {
    build_owned(&parts(i))
}

fn sink(dir: &std::path::Path, name: &str) -> JsonLinesSink {
    let config = JsonLinesConfig::default()
        .with_key(AuditKey::generate().unwrap())
        .with_fsync(Fsync::PerBatch)
        .with_checkpoints(1000, None)
        .with_rotation(1 << 30);
    JsonLinesSink::open(dir.join(name), config).unwrap()
}

/// A sink that keeps up: the hand-off rows measure the queue, not the disk.
struct Discard;
impl Sink for Discard {
    fn write_batch(&mut self, events: &mut [AuditEvent]) -> std::io::Result<()> {
        black_box(events.len());
        Ok(())
    }
}

fn handoff(c: &mut Criterion) {
    let mut g = c.benchmark_group("audit/handoff");
    g.throughput(Throughput::Elements(1));
    let p = parts(7);
    g.bench_function("build-only", |b| {
        b.iter(|| {
            let e = build(black_box(&p));
            black_box(&e);
            e.recycle(); // as the writer gives it back
        })
    });
    g.bench_function("build-only-owned", |b| {
        b.iter(|| black_box(build_owned(black_box(&p))))
    });

    let quick = Auditor::builder(Discard)
        .capacity(1 << 16)
        .full_policy(FullPolicy::Block)
        .spawn();
    g.bench_function("idle", |b| {
        b.iter(|| quick.record(build(black_box(&p))).unwrap())
    });
    g.bench_function("idle-owned", |b| {
        b.iter(|| quick.record(build_owned(black_box(&p))).unwrap())
    });

    // Another thread submits as fast as it can meanwhile.
    let stop = Arc::new(AtomicBool::new(false));
    let other = {
        let (a, stop) = (quick.clone(), stop.clone());
        std::thread::spawn(move || {
            let p = parts(8);
            while !stop.load(Ordering::Relaxed) {
                for _ in 0..64 {
                    a.record(build(&p)).unwrap();
                }
            }
        })
    };
    g.bench_function("loaded", |b| {
        b.iter(|| quick.record(build(black_box(&p))).unwrap())
    });
    stop.store(true, Ordering::Relaxed);
    other.join().unwrap();
    quick.shutdown();
    g.finish();
}

/// The JSON-lines sink behind another type: the auditor does not know it, so the producers do
/// not write the events' JSON and the writer serializes them all (the way before).
struct WriterSerializes(JsonLinesSink);
impl Sink for WriterSerializes {
    fn write_batch(&mut self, events: &mut [AuditEvent]) -> std::io::Result<()> {
        self.0.write_batch(events)
    }
    fn write_boxed(&mut self, events: &mut [EventBox]) -> std::io::Result<()> {
        self.0.write_boxed(events)
    }
    fn tick(&mut self) -> std::io::Result<()> {
        self.0.tick()
    }
    fn sync(&mut self) -> std::io::Result<()> {
        self.0.sync()
    }
}

fn throughput_of<S: Sink>(
    g: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    name: &str,
    s: S,
) {
    let auditor = Auditor::builder(s)
        .capacity(1 << 16)
        .batch_size(8192)
        .full_policy(FullPolicy::Block)
        .spawn();
    const N: u64 = 100_000;
    let p = parts(7);
    g.throughput(Throughput::Elements(N));
    g.bench_function(name, |b| {
        b.iter(|| {
            for _ in 0..N {
                auditor.record(build(&p)).unwrap();
            }
            auditor.flush().unwrap();
        })
    });
    auditor.shutdown();
}

fn throughput(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let mut g = c.benchmark_group("audit/throughput");
    throughput_of(
        &mut g,
        "fsync-per-batch",
        sink(dir.path(), "throughput.jsonl"),
    );
    throughput_of(
        &mut g,
        "fsync-per-batch-writer-serializes",
        WriterSerializes(sink(dir.path(), "throughput2.jsonl")),
    );
    g.finish();

    let mut g = c.benchmark_group("audit");
    let mut s = sink(dir.path(), "sink.jsonl");
    let mut batch: Vec<AuditEvent> = (0..1024).map(event).collect();
    g.throughput(Throughput::Elements(1024));
    g.bench_function("sink-batch-1024", |b| {
        b.iter(|| s.write_batch(black_box(&mut batch)).unwrap())
    });
    // The floor of the chain: the SHA-256 of one typical line (its own bytes, as the sink
    // hashes it), against the sink's whole cost per line above.
    s.write_batch(&mut batch).unwrap();
    let line = std::fs::read_to_string(dir.path().join("sink.jsonl")).unwrap();
    let line = line
        .lines()
        .rfind(|l| l.contains("\"verb\""))
        .unwrap()
        .to_owned();
    g.throughput(Throughput::Elements(1));
    g.bench_function(format!("sha256-line-{}B", line.len()), |b| {
        b.iter(|| secmesh::audit::chain::hash_line(black_box(line.as_bytes())))
    });
    g.throughput(Throughput::Elements(1024));
    let config = JsonLinesConfig::default()
        .with_key(AuditKey::generate().unwrap())
        .with_fsync(Fsync::EveryMillis(60_000))
        .with_checkpoints(1000, None)
        .with_rotation(1 << 30);
    let mut nosync = JsonLinesSink::open(dir.path().join("nosync.jsonl"), config).unwrap();
    g.bench_function("sink-batch-1024-no-fsync", |b| {
        b.iter(|| nosync.write_batch(black_box(&mut batch)).unwrap())
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    targets = handoff, throughput
}
criterion_main!(benches);
