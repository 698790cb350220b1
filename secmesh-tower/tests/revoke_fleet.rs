//! Revocation across a fleet, through the one stack: three instances (each a `SecureLayer`
//! whose verifier reads a Redis replica) on one real `redis-server`; one instance revokes a
//! subject through the audited publisher; every instance refuses the subject's token (a
//! cached one too) within a bound, and the revocation is an event of the revoking instance's
//! chained audit log. A revocation whose event cannot be recorded is still in force and says
//! so. Skipped loudly without redis-server outside CI.
#![cfg(feature = "redis")]
#![allow(clippy::unwrap_used)]

use std::convert::Infallible;
use std::time::{Duration, Instant};

use http::{Request, Response, StatusCode};
use secmesh_audit::Auditor;
use secmesh_audit::sink::{JsonLinesConfig, JsonLinesSink};
use secmesh_core::ExpiryClass;
use secmesh_core::policy::{Format, Policy, SharedPolicy};
use secmesh_testkit::redis::RedisServer as Redis;
use secmesh_tokens::revocation::RevocationKey;
use secmesh_tokens::revocation::redis::{Publisher, Replica, ReplicaConfig};
use secmesh_tokens::{Algorithm, Issuer, KeySet, MintRequest, SigningKey, Verifier};
use secmesh_tower::SecureLayer;
use secmesh_tower::revoke::{AuditedPublisher, RevokeError};
use secmesh_tower::stack::SecureBody;
use tower::{Layer, ServiceExt, service_fn};

const POLICY: &str = "[[rule]]\nid = \"users\"\neffect = \"allow\"\nsubjects = [\"user:*\"]\nverbs = [\"read\"]\nobjects = [\"orders/**\"]\n";

type Svc = tower::util::BoxCloneService<Request<()>, Response<SecureBody<()>>, Infallible>;

fn instance(keys: &KeySet, replica: &Replica) -> Svc {
    let verifier = Verifier::new(keys.clone()).revocation(replica.revocation());
    let policy = SharedPolicy::new(Policy::parse(POLICY, Format::Toml).unwrap());
    let layer = SecureLayer::builder(verifier, policy).build().unwrap();
    tower::util::BoxCloneService::new(layer.layer(service_fn(|_: Request<()>| async {
        Ok::<_, Infallible>(Response::new(()))
    })))
}

async fn status(svc: &Svc, token: &str) -> StatusCode {
    let req = Request::get("/orders/1")
        .header("txn-token", token)
        .body(())
        .unwrap();
    svc.clone().oneshot(req).await.unwrap().status()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subject_revoked_by_one_instance_is_refused_by_all_and_audited() {
    let Some(redis) = Redis::start() else { return };
    let key = SigningKey::generate(Algorithm::EdDsa).unwrap();
    let keys = KeySet::single(key.verifying_key(Some("k1".into())));
    let issuer = Issuer::new(key, "k1", "https://sts.test").audience("orders");
    let replicas: Vec<std::sync::Arc<Replica>> = (0..3)
        .map(|_| {
            std::sync::Arc::new(
                Replica::start(ReplicaConfig::new(redis.url()).resync(Duration::from_millis(500)))
                    .unwrap(),
            )
        })
        .collect();
    for r in &replicas {
        assert!(r.wait_in_step(Duration::from_secs(5)).await);
    }
    let instances: Vec<Svc> = replicas.iter().map(|r| instance(&keys, r)).collect();
    let mallory = issuer
        .mint(&MintRequest::new("user:mallory", ExpiryClass::Medium))
        .unwrap();
    let alice = issuer
        .mint(&MintRequest::new("user:alice", ExpiryClass::Medium))
        .unwrap();
    // Every instance has verified (and cached) both tokens.
    for svc in &instances {
        assert_eq!(status(svc, &mallory).await, StatusCode::OK);
        assert_eq!(status(svc, &alice).await, StatusCode::OK);
    }

    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("orders.jsonl");
    let sink = JsonLinesSink::open(&log, JsonLinesConfig::default()).unwrap();
    let auditor = Auditor::builder(sink).spawn();
    let publisher = Publisher::connect(&redis.url(), "secmesh").await.unwrap();
    let revoker = AuditedPublisher::new(publisher, auditor.clone(), "orders");
    let revoked_at = Instant::now();
    let entry = revoker
        .revoke(
            RevocationKey::Sub("user:mallory".into()),
            Some("account <closed>".into()),
        )
        .await
        .unwrap();
    assert_eq!(entry.key.to_string(), "sub user:mallory");

    // Refused everywhere (the cached verification too) within a bound; alice still in.
    let deadline = revoked_at + Duration::from_secs(5);
    for svc in &instances {
        while status(svc, &mallory).await != StatusCode::UNAUTHORIZED {
            assert!(
                Instant::now() < deadline,
                "an instance still lets mallory in"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(status(svc, &alice).await, StatusCode::OK);
    }
    println!(
        "refused by all three instances {:?} after the revocation",
        revoked_at.elapsed()
    );

    // Each replica reports what it holds (the metrics collector, read back in process).
    let recorder = metrics_util::debugging::DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    metrics::with_local_recorder(&recorder, || {
        secmesh_tower::metrics::Collector::new("orders")
            .replica(replicas[1].clone())
            .collect();
    });
    let gauges: Vec<(String, f64)> = snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .filter_map(|(k, _, _, v)| match v {
            metrics_util::debugging::DebugValue::Gauge(g) => {
                Some((k.key().name().to_owned(), g.into_inner()))
            }
            _ => None,
        })
        .collect();
    assert!(
        gauges.contains(&("secmesh_revocation_entries".into(), 1.0)),
        "{gauges:?}"
    );
    assert!(
        gauges.contains(&("secmesh_revocation_connected".into(), 1.0)),
        "{gauges:?}"
    );

    // The revocation is an event of the revoking instance's log, already durable, and the
    // log's chain verifies.
    let text = std::fs::read_to_string(&log).unwrap();
    let event = text
        .lines()
        .find(|l| l.contains("\"revoke\""))
        .expect("the revocation's event");
    let v: serde_json::Value = serde_json::from_str(event).unwrap();
    assert_eq!(v["service"], "orders");
    assert_eq!(v["object"], "sub user:mallory");
    assert_eq!(v["sub"], "user:mallory");
    assert_eq!(v["reason"], "account <closed>");
    assert!(!text.contains(&mallory), "a token in the audit log");
    auditor.shutdown();
    let report = secmesh_audit::verify::verify_files(&[&log], None).unwrap();
    assert_eq!(report.events, 1, "{report:?}");

    // An auditor that cannot record: the revocation is in force all the same, and the error
    // says so.
    let dead = Auditor::builder(
        JsonLinesSink::open(dir.path().join("b.jsonl"), JsonLinesConfig::default()).unwrap(),
    )
    .spawn();
    dead.clone().shutdown();
    let publisher = Publisher::connect(&redis.url(), "secmesh").await.unwrap();
    let revoker = AuditedPublisher::new(publisher, dead, "orders");
    let err = revoker
        .revoke(RevocationKey::Sub("user:alice".into()), None)
        .await
        .unwrap_err();
    assert!(matches!(err, RevokeError::NotAudited { .. }), "{err}");
    assert!(
        err.to_string().contains("revoked sub user:alice, but"),
        "{err}"
    );
    let entries = revoker.publisher().entries().await.unwrap();
    assert!(
        entries
            .iter()
            .any(|e| e.key.to_string() == "sub user:alice")
    );
}
