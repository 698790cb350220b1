//! The stack's metrics through the `metrics` facade, read back from an in-process recorder:
//! decisions by effect, reason and rule; token rejections by kind; the collector's cache and
//! audit figures; and no label holding a subject, a token or a path.
#![cfg(feature = "metrics")]
#![allow(clippy::unwrap_used)]

use std::convert::Infallible;

use http::{Request, Response};
use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use secmesh_audit::Auditor;
use secmesh_audit::sink::Sink;
use secmesh_core::ExpiryClass;
use secmesh_core::policy::{Format, Policy, SharedPolicy};
use secmesh_tokens::{Algorithm, Issuer, KeySet, MintRequest, SigningKey, Verifier};
use secmesh_tower::SecureLayer;
use secmesh_tower::metrics::{Collector, describe};
use tower::{Layer, ServiceExt, service_fn};

const POLICY: &str = r#"
[[rule]]
id = "users-orders"
effect = "allow"
subjects = ["user:*"]
verbs = ["read"]
objects = ["orders/**"]

[[limit]]
id = "reads"
rate = "3/h"
"#;

/// Counts the events it is given, and keeps none.
#[derive(Clone, Default)]
struct Discard(std::sync::Arc<std::sync::atomic::AtomicU64>);
impl Sink for Discard {
    fn write_batch(&mut self, e: &mut [secmesh_audit::event::AuditEvent]) -> std::io::Result<()> {
        self.0
            .fetch_add(e.len() as u64, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }
}

#[test]
fn decisions_rejections_and_collected_figures() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let key = SigningKey::from_hmac_secret(Algorithm::Hs256, &[4; 32]).unwrap();
    let keys = KeySet::single(key.verifying_key(Some("k".into())));
    let verifier = Verifier::new(keys.clone());
    let issuer = Issuer::new(key, "k", "gw").audience("orders");
    let sink = Discard::default();
    let auditor = Auditor::builder(sink.clone()).spawn();
    let policy = SharedPolicy::new(Policy::parse(POLICY, Format::Toml).unwrap());
    let alice = issuer
        .mint(&MintRequest::new("user:alice", ExpiryClass::Fast))
        .unwrap();
    let bob = issuer
        .mint(&MintRequest::new("svc:bob", ExpiryClass::Fast))
        .unwrap();

    metrics::with_local_recorder(&recorder, || {
        describe();
        let layer = SecureLayer::builder(verifier, policy)
            .audit(auditor.clone(), "orders")
            .build()
            .unwrap();
        let svc = layer.layer(service_fn(|_: Request<()>| async {
            Ok::<_, Infallible>(Response::new(()))
        }));
        let call = |path: &str, token: Option<&str>| {
            let mut b = Request::get(path);
            if let Some(t) = token {
                b = b.header("txn-token", t);
            }
            rt.block_on(svc.clone().oneshot(b.body(()).unwrap()))
                .unwrap()
                .status()
                .as_u16()
        };
        // 3 allowed, then the limit; a token-less call; a malformed token; a subject no rule
        // allows.
        let statuses: Vec<u16> = (0..5)
            .map(|i| call(&format!("/orders/user:alice/{i}"), Some(&alice)))
            .collect();
        assert_eq!(statuses, [200, 200, 200, 429, 429]);
        assert_eq!(call("/orders/1", None), 401);
        assert_eq!(call("/orders/1", Some("not-a-token")), 401);
        assert_eq!(call("/orders/1", Some(&bob)), 403);
        auditor.flush().unwrap();
        let revoked = std::sync::Arc::new(secmesh_tokens::revocation::RevocationSet::new());
        for sub in ["user:mallory", "user:trudy"] {
            revoked
                .revoke(
                    secmesh_tokens::revocation::RevocationKey::Sub(sub.into()),
                    None,
                )
                .unwrap();
        }
        let source = std::sync::Arc::new(secmesh_tokens::source::KeySource::fixed(keys.clone()));
        Collector::new("orders")
            .cache(layer.cache().clone())
            .auditor(auditor.clone())
            .key_source(source)
            .revocation_set(revoked.clone())
            .collect();
    });

    let snapshot = snapshotter.snapshot().into_vec();
    let value = |name: &str, labels: &[(&str, &str)]| -> Option<u64> {
        snapshot.iter().find_map(|(key, _, _, v)| {
            let k = key.key();
            let matches = k.name() == name
                && labels
                    .iter()
                    .all(|(lk, lv)| k.labels().any(|l| l.key() == *lk && l.value() == *lv));
            match (matches, v) {
                (true, DebugValue::Counter(c)) => Some(*c),
                (true, DebugValue::Gauge(g)) => Some(g.into_inner() as u64),
                _ => None,
            }
        })
    };
    let d = "secmesh_decisions_total";
    assert_eq!(
        value(
            d,
            &[
                ("service", "orders"),
                ("effect", "allow"),
                ("reason", "allowed"),
                ("rule", "users-orders")
            ]
        ),
        Some(3)
    );
    assert_eq!(
        value(
            d,
            &[
                ("effect", "deny"),
                ("reason", "rate_limited"),
                ("rule", "reads")
            ]
        ),
        Some(2)
    );
    assert_eq!(
        value(d, &[("reason", "missing_token"), ("rule", "")]),
        Some(1)
    );
    assert_eq!(value(d, &[("reason", "invalid_token")]), Some(1));
    assert_eq!(value(d, &[("reason", "no_rule")]), Some(1));
    assert_eq!(
        value("secmesh_token_rejections_total", &[("kind", "malformed")]),
        Some(1)
    );
    // The cache saw alice's token five times (misses until the doorkeeper admits it, then
    // hits), bob's and the malformed one once each.
    let hits = value("secmesh_token_cache_hits_total", &[("service", "orders")]).unwrap();
    let misses = value("secmesh_token_cache_misses_total", &[("service", "orders")]).unwrap();
    assert!(
        hits + misses == 7 && hits >= 3,
        "{hits} hits, {misses} misses"
    );
    // Every miss ran the verifier and was timed (the malformed token refused); hits read
    // no clock.
    let samples = |result: &str| -> usize {
        snapshot
            .iter()
            .filter(|(key, ..)| {
                key.key().name() == "secmesh_token_verify_seconds"
                    && key
                        .key()
                        .labels()
                        .any(|l| l.key() == "result" && l.value() == result)
                    && key
                        .key()
                        .labels()
                        .any(|l| l.key() == "service" && l.value() == "orders")
            })
            .map(|(.., v)| match v {
                DebugValue::Histogram(h) => {
                    assert!(
                        h.iter()
                            .all(|s| s.into_inner() > 0.0 && s.into_inner() < 1.0)
                    );
                    h.len()
                }
                _ => 0,
            })
            .sum()
    };
    assert_eq!(samples("refused"), 1);
    assert_eq!((samples("ok") + samples("refused")) as u64, misses);
    assert_eq!(value("secmesh_audit_healthy", &[]), Some(1));
    assert_eq!(value("secmesh_revocation_entries", &[]), Some(2));
    assert_eq!(value("secmesh_revocation_connected", &[]), None);
    // Flushed: the queue is empty and every event written (one per request at least).
    assert_eq!(value("secmesh_audit_queue_depth", &[]), Some(0));
    let written = value("secmesh_audit_events_written_total", &[]).unwrap();
    assert_eq!(written, sink.0.load(std::sync::atomic::Ordering::Relaxed));
    assert!(written >= 6, "{written} events written");
    assert_eq!(value("secmesh_audit_checkpoints_total", &[]), Some(0));
    assert_eq!(
        value("secmesh_key_source_unavailable", &[("service", "orders")]),
        Some(0)
    );
    assert_eq!(value("secmesh_key_source_failures_total", &[]), Some(0));
    // No label carries what a client chose.
    for (key, ..) in &snapshot {
        for l in key.key().labels() {
            let v = l.value();
            let chosen = ["alice", "bob", "/", "not-a-token"]
                .iter()
                .any(|x| v.contains(x))
                || (!v.is_empty() && (alice.contains(v) || bob.contains(v)) && v.len() > 8);
            assert!(!chosen, "label {}={v}", l.key());
        }
    }
    auditor.shutdown();
}
