//! The metrics as an operator sees them: a real axum server behind the one stack exposes
//! `/metrics` (the Prometheus exporter of the `metrics` facade plus the collector), a real
//! `prometheus` (the Debian package) on 127.0.0.1 scrapes it, and the series it stores after a
//! scenario are the ones expected: allowed requests by rule, 429s by limit, 401s by reason,
//! token rejections by kind, the cache's and the audit log's figures. Skipped loudly without
//! prometheus outside CI.
#![cfg(feature = "metrics")]
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::get;
use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use metrics_exporter_prometheus::PrometheusBuilder;
use secmesh_audit::Auditor;
use secmesh_audit::sink::{JsonLinesConfig, JsonLinesSink};
use secmesh_core::ExpiryClass;
use secmesh_core::policy::{Format, Policy, SharedPolicy};
use secmesh_testkit::prometheus::Prometheus;
use secmesh_tokens::{Algorithm, Issuer, KeySet, MintRequest, SigningKey, Verifier};
use secmesh_tower::SecureLayer;
use secmesh_tower::metrics::{Collector, describe};

const POLICY: &str = r#"
[[rule]]
id = "users-read-orders"
effect = "allow"
subjects = ["user:*"]
verbs = ["read"]
objects = ["orders/**"]

[[limit]]
id = "reads-per-user"
rate = "4/h"
"#;

/// The value of the one series `promql` selects, once Prometheus has it.
fn value(p: &Prometheus, promql: &str) -> Option<f64> {
    let body = p.query(promql)?;
    let v: serde_json::Value = serde_json::from_str(&body).ok()?;
    let result = v["data"]["result"].as_array()?;
    if result.len() != 1 {
        return None;
    }
    result[0]["value"][1].as_str()?.parse().ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrapes_the_decisions() {
    let recorder = PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    metrics::set_global_recorder(recorder).unwrap();
    describe();

    let key = SigningKey::from_hmac_secret(Algorithm::Hs256, &[8; 32]).unwrap();
    let keys = KeySet::single(key.verifying_key(Some("k".into())));
    let issuer = Issuer::new(key, "k", "gw").audience("orders");
    let dir = tempfile::tempdir().unwrap();
    let auditor = Auditor::builder(
        JsonLinesSink::open(dir.path().join("orders.jsonl"), JsonLinesConfig::default()).unwrap(),
    )
    .spawn();
    let layer = SecureLayer::builder(
        Verifier::new(keys),
        SharedPolicy::new(Policy::parse(POLICY, Format::Toml).unwrap()),
    )
    .audit(auditor.clone(), "orders")
    .build()
    .unwrap();
    let collector = Collector::new("orders")
        .cache(layer.cache().clone())
        .auditor(auditor.clone());
    let app = Router::new()
        .route("/orders/{id}", get(|| async { "ok" }))
        .layer(layer)
        .merge(Router::new().route(
            "/metrics",
            get(move || {
                let (collector, handle) = (collector.clone(), handle.clone());
                async move {
                    collector.collect();
                    handle.render()
                }
            }),
        ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    // The scenario: 4 allowed, 2 over the limit, 1 without a token, 1 with a malformed one.
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let alice = issuer
        .mint(&MintRequest::new("user:alice", ExpiryClass::Fast))
        .unwrap();
    let mut statuses = Vec::new();
    for token in [Some(alice.as_str()); 6]
        .into_iter()
        .chain([None, Some("x.y.z")])
    {
        let mut req = Request::get(format!("http://{addr}/orders/7"));
        if let Some(t) = token {
            req = req.header("txn-token", t);
        }
        let res = client
            .request(req.body(Full::new(Bytes::new())).unwrap())
            .await
            .unwrap();
        statuses.push(res.status().as_u16());
    }
    assert_eq!(statuses, [200, 200, 200, 200, 429, 429, 401, 401]);

    let Some(prometheus) =
        tokio::task::spawn_blocking(move || Prometheus::start(&[addr.to_string()]))
            .await
            .unwrap()
    else {
        return;
    };
    let prometheus = std::sync::Arc::new(prometheus);
    let expect = [
        (
            r#"secmesh_decisions_total{service="orders",effect="allow",reason="allowed",rule="users-read-orders"}"#,
            4.0,
        ),
        (
            r#"secmesh_decisions_total{effect="deny",reason="rate_limited",rule="reads-per-user"}"#,
            2.0,
        ),
        (r#"secmesh_decisions_total{reason="missing_token"}"#, 1.0),
        (r#"secmesh_decisions_total{reason="invalid_token"}"#, 1.0),
        (r#"secmesh_token_rejections_total{kind="malformed"}"#, 1.0),
        (
            r#"secmesh_token_cache_hits_total{service="orders"} + secmesh_token_cache_misses_total{service="orders"}"#,
            7.0,
        ),
        (r#"secmesh_audit_healthy{service="orders"}"#, 1.0),
        (r#"secmesh_audit_dropped_total{service="orders"}"#, 0.0),
        (r#"secmesh_audit_queue_depth{service="orders"}"#, 0.0),
        (
            r#"secmesh_audit_events_written_total{service="orders"} >= bool 6"#,
            1.0,
        ),
        // The verify-latency histogram: the one malformed token refused, every miss timed.
        (
            r#"secmesh_token_verify_seconds_count{service="orders",result="refused"}"#,
            1.0,
        ),
        (
            r#"sum(secmesh_token_verify_seconds_count{service="orders"}) - sum(secmesh_token_cache_misses_total{service="orders"})"#,
            0.0,
        ),
    ];
    let deadline = Instant::now() + Duration::from_secs(60);
    for (promql, want) in expect {
        loop {
            let p = prometheus.clone();
            let q = promql.to_owned();
            let got = tokio::task::spawn_blocking(move || value(&p, &q))
                .await
                .unwrap();
            if got == Some(want) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{promql}: {got:?}, expected {want} (scraped from {addr})"
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
    // What Prometheus stores has no subject, token or path in any label.
    let p = prometheus.clone();
    let series = tokio::task::spawn_blocking(move || {
        p.get("/api/v1/series?match[]=%7B__name__%3D~%22secmesh_.%2A%22%7D")
    })
    .await
    .unwrap()
    .unwrap()
    .1;
    assert!(series.contains("secmesh_decisions_total"), "{series}");
    assert!(
        !series.contains("alice") && !series.contains("orders/7") && !series.contains("x.y.z"),
        "{series}"
    );
    auditor.shutdown();
}
