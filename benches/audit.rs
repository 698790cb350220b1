//! Audit throughput and request-path cost.
//!
//! - `audit/record`: what `Auditor::record` costs the request path (queue hand-off only; the
//!   writer thread drains into the chained file sink meanwhile).
//! - `audit/throughput-10k`: 10,000 events recorded and flushed through the queue into the
//!   chained JSON-lines sink with fsync per batch (batches of 1,024) and signed checkpoints
//!   every 1,000 records; events/s = 10,000 / time.
//! - `audit/sink-batch-1024`: the sink alone (serialize, chain, write, fsync) per batch.
//!
//! ```text
//! cargo bench -p secmesh --bench audit
//! ```
#![allow(missing_docs, clippy::unwrap_used)]

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use secmesh::audit::chain::AuditKey;
use secmesh::audit::event::{AuditEvent, Decision, Direction};
use secmesh::audit::sink::{Fsync, JsonLinesConfig, JsonLinesSink, Sink};
use secmesh::audit::{Auditor, FullPolicy};

fn event(i: u64) -> AuditEvent {
    let mut e = AuditEvent::now("orders", Direction::In);
    e.txn = Some("4bf92f3577b34da6a3ce929d0e0e4736".parse().unwrap());
    e.trace_id = Some("4bf92f3577b34da6a3ce929d0e0e4736".parse().unwrap());
    e.span_id = Some("00f067aa0ba902b7".parse().unwrap());
    e.sub = Some("user:alice".into());
    e.caller = Some("spiffe://mesh.test/gateway".into());
    e.verb = Some("read".into());
    e.object = Some(format!("orders/user:alice/{i}"));
    e.decision = Decision::Allow;
    e.rule = Some("owners-read-own-orders".into());
    e.status = Some(200);
    e.latency_us = Some(1234);
    e.jti = Some("gaGveFpQkF6QZTeW6QDWdA".into());
    e.token_sha256 = Some("ab".repeat(32));
    e
}

fn sink(dir: &std::path::Path, name: &str) -> JsonLinesSink {
    let config = JsonLinesConfig::default()
        .with_key(AuditKey::generate().unwrap())
        .with_fsync(Fsync::PerBatch)
        .with_checkpoints(1000, None)
        .with_rotation(256 << 20);
    JsonLinesSink::open(dir.join(name), config).unwrap()
}

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let mut g = c.benchmark_group("audit");

    // The request path: hand an event to the queue. A sink that keeps up (discards) so that
    // the queue never fills and this measures the hand-off, not the writer.
    struct Discard;
    impl Sink for Discard {
        fn write_batch(&mut self, events: &mut [AuditEvent]) -> std::io::Result<()> {
            black_box(events.len());
            Ok(())
        }
    }
    let quick = Auditor::builder(Discard)
        .capacity(1 << 20)
        .full_policy(FullPolicy::Block)
        .spawn();
    let template = event(7);
    g.throughput(Throughput::Elements(1));
    g.bench_function("record", |b| {
        b.iter(|| quick.record(black_box(template.clone())).unwrap())
    });
    g.bench_function("clone-event-only", |b| {
        b.iter(|| black_box(template.clone()))
    });
    quick.shutdown();

    // Throughput into the chained file sink, fsync per batch.
    let auditor = Auditor::builder(sink(dir.path(), "throughput.jsonl"))
        .capacity(1 << 16)
        .batch_size(4096)
        .full_policy(FullPolicy::Block)
        .spawn();
    g.throughput(Throughput::Elements(10_000));
    g.bench_function("throughput-10k", |b| {
        b.iter(|| {
            for _ in 0..10_000 {
                auditor.record(template.clone()).unwrap();
            }
            auditor.flush().unwrap();
        })
    });
    auditor.shutdown();

    let mut s = sink(dir.path(), "sink.jsonl");
    let mut batch: Vec<AuditEvent> = (0..1024).map(event).collect();
    g.throughput(Throughput::Elements(1024));
    g.bench_function("sink-batch-1024", |b| {
        b.iter(|| s.write_batch(black_box(&mut batch)).unwrap())
    });
    let config = JsonLinesConfig::default()
        .with_key(AuditKey::generate().unwrap())
        .with_fsync(Fsync::EveryMillis(60_000))
        .with_checkpoints(1000, None);
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
    targets = bench
}
criterion_main!(benches);
