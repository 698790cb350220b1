//! Several producers at once, through the queue into the chained file sink: every event is
//! written, once, and each producer's events keep their order; the log verifies.
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;

use secmesh_audit::chain::AuditKey;
use secmesh_audit::event::{AuditEvent, Direction};
use secmesh_audit::sink::{JsonLinesConfig, JsonLinesSink};
use secmesh_audit::verify::Verifier;
use secmesh_audit::{Auditor, Durability, FullPolicy};

const PRODUCERS: u64 = 4;
const EACH: u64 = 3_000;

fn ev(producer: u64, i: u64) -> AuditEvent {
    let mut e = AuditEvent::now("orders", Direction::In);
    e.sub = Some(format!("producer:{producer}"));
    e.object = Some(format!("orders/{producer}/{i}"));
    e.latency_us = Some(i);
    e
}

/// Read the log back: per producer, the numbers in the order written.
fn per_producer(path: &std::path::Path) -> HashMap<String, Vec<u64>> {
    let text = std::fs::read_to_string(path).unwrap();
    let mut seen: HashMap<String, Vec<u64>> = HashMap::new();
    for line in text.lines() {
        let Ok(e) = serde_json::from_str::<AuditEvent>(line) else {
            continue; // a signed record
        };
        if let (Some(sub), Some(i)) = (e.sub, e.latency_us) {
            seen.entry(sub).or_default().push(i);
        }
    }
    seen
}

fn check(path: &std::path::Path, public: &[u8]) {
    let seen = per_producer(path);
    assert_eq!(seen.len() as u64, PRODUCERS);
    for (producer, got) in &seen {
        let want: Vec<u64> = (0..EACH).collect();
        assert!(
            got == &want,
            "{producer}: {} events, out of order or lost",
            got.len()
        );
    }
    let report = Verifier::new(Some(public))
        .service("orders")
        .verify_files(&[path])
        .unwrap();
    assert_eq!(report.events, PRODUCERS * EACH);
    assert!(report.closed);
}

fn auditor(path: &std::path::Path, key: AuditKey) -> Auditor {
    let config = JsonLinesConfig::default()
        .with_key(key)
        .with_service("orders")
        .with_checkpoints(100, None);
    // A small queue and small batches: producers wait for room often, the writer takes
    // partial batches, so every path of the hand-off runs.
    Auditor::builder(JsonLinesSink::open(path, config).unwrap())
        .capacity(64)
        .batch_size(48)
        .full_policy(FullPolicy::Block)
        .spawn()
}

#[test]
fn threads_recording_keep_their_order_and_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("orders.jsonl");
    let key = AuditKey::generate().unwrap();
    let public = key.public_key().to_vec();
    let auditor = auditor(&path, key);
    let threads: Vec<_> = (0..PRODUCERS)
        .map(|p| {
            let a = auditor.clone();
            std::thread::spawn(move || {
                for i in 0..EACH {
                    a.record(ev(p, i)).unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!((auditor.dropped(), auditor.write_errors()), (0, 0));
    auditor.shutdown();
    check(&path, &public);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_submitting_keep_their_order_and_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("orders.jsonl");
    let key = AuditKey::generate().unwrap();
    let public = key.public_key().to_vec();
    let auditor = auditor(&path, key);
    let tasks: Vec<_> = (0..PRODUCERS)
        .map(|p| {
            let a = auditor.clone();
            tokio::spawn(async move {
                for i in 0..EACH {
                    // Every tenth durable: group commit interleaves with queued events.
                    let d = if i % 10 == 0 {
                        Durability::Durable
                    } else {
                        Durability::Queued
                    };
                    a.submit(ev(p, i), d).await.unwrap();
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let a = auditor.clone();
    tokio::task::spawn_blocking(move || a.shutdown())
        .await
        .unwrap();
    drop(auditor);
    check(&path, &public);
}
