//! Three services on 127.0.0.1 — gateway → orders → payments — each writing its own chained
//! audit log with the audit layers; the logs verify and rebuild the transaction's tree.
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use secmesh_audit::chain::AuditKey;
use secmesh_audit::event::{Decision, Direction};
use secmesh_audit::sink::{JsonLinesConfig, JsonLinesSink};
use secmesh_audit::verify::{read_events, verify_files};
use secmesh_audit::{Auditor, trace};
use secmesh_core::ExpiryClass;
use secmesh_core::policy::{Format, Policy, SharedPolicy};
use secmesh_tokens::{Algorithm, Issuer, KeySet, MintRequest, SigningKey, Verifier};
use secmesh_tower::audit::{AuditLayer, AuditOutLayer};
use secmesh_tower::propagate::PropagateLayer;
use secmesh_tower::{AuthenticateLayer, AuthorizeLayer};
use tower::{ServiceBuilder, ServiceExt};

type HttpClient = tower::util::BoxCloneSyncService<
    Request<Full<Bytes>>,
    http::Response<hyper::body::Incoming>,
    hyper_util::client::legacy::Error,
>;

const POLICY: &str = r#"
[[rule]]
id = "users-read"
effect = "allow"
subjects = ["user:*"]
verbs = ["read"]
objects = ["**"]

[[rule]]
id = "no-refunds"
effect = "deny"
subjects = ["*"]
verbs = ["*"]
objects = ["pay/refunds/**"]
"#;

struct Svc {
    auditor: Auditor,
    log: PathBuf,
}

fn service_log(dir: &Path, name: &str, key: &AuditKey) -> Svc {
    let log = dir.join(format!("{name}.jsonl"));
    let config = JsonLinesConfig::default().with_key(AuditKey::from_pem(&key.to_pem()).unwrap());
    let sink = JsonLinesSink::open(&log, config).unwrap();
    Svc {
        auditor: Auditor::builder(sink).spawn(),
        log,
    }
}

fn client(name: &str, auditor: &Auditor, next: SocketAddr) -> HttpClient {
    let inner = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let svc = ServiceBuilder::new()
        .layer(PropagateLayer::new([format!("127.0.0.1:{}", next.port())]))
        .layer(AuditOutLayer::new(auditor.clone(), name.to_owned()))
        .service(inner);
    tower::util::BoxCloneSyncService::new(svc)
}

#[derive(Clone)]
struct Next {
    client: HttpClient,
    addr: SocketAddr,
    /// How this hop rewrites the path for the next one.
    rewrite: (&'static str, &'static str),
}

async fn forward(
    State(n): State<Next>,
    req: Request<axum::body::Body>,
) -> (http::StatusCode, String) {
    let path = req.uri().path().replacen(n.rewrite.0, n.rewrite.1, 1);
    let res = n
        .client
        .oneshot(
            Request::get(format!("http://{}{path}", n.addr))
                .body(Full::new(Bytes::new()))
                .unwrap(),
        )
        .await
        .unwrap();
    let status = res.status();
    let body = res.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

async fn serve(app: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

fn secured(app: Router, keys: &Arc<KeySet>, svc: &Svc, name: &str) -> Router {
    let verifier = Verifier::new(keys.clone()).audience("mesh.test");
    let policy = SharedPolicy::new(Policy::parse(POLICY, Format::Toml).unwrap());
    app.layer(AuthorizeLayer::new(policy))
        .layer(AuthenticateLayer::from_verifier(verifier, 100))
        .layer(AuditLayer::new(svc.auditor.clone(), name.to_owned()))
}

#[tokio::test]
async fn three_services_log_a_tree_that_traces_back() {
    let dir = tempfile::tempdir().unwrap();
    let audit_key = AuditKey::generate().unwrap();
    let key = SigningKey::generate(Algorithm::EdDsa).unwrap();
    let keys = Arc::new(KeySet::single(key.verifying_key(Some("gw".into()))));
    let issuer = Issuer::new(key, "gw", "https://gw.mesh.test").audience("mesh.test");

    let payments = service_log(dir.path(), "payments", &audit_key);
    let orders = service_log(dir.path(), "orders", &audit_key);
    let gateway = service_log(dir.path(), "gateway", &audit_key);

    let payments_addr = serve(secured(
        Router::new().route("/pay/{*rest}", get(|| async { "paid" })),
        &keys,
        &payments,
        "payments",
    ))
    .await;
    let orders_addr = serve(secured(
        Router::new()
            .route("/payments/{*rest}", get(forward))
            .with_state(Next {
                client: client("orders", &orders.auditor, payments_addr),
                addr: payments_addr,
                rewrite: ("/payments", "/pay"),
            }),
        &keys,
        &orders,
        "orders",
    ))
    .await;
    let gateway_addr = serve(secured(
        Router::new()
            .route("/api/payments/{*rest}", get(forward))
            .with_state(Next {
                client: client("gateway", &gateway.auditor, orders_addr),
                addr: orders_addr,
                rewrite: ("/api", ""),
            }),
        &keys,
        &gateway,
        "gateway",
    ))
    .await;

    // One allowed transaction, one denied at the last hop.
    let mut txns = Vec::new();
    for (path, status) in [("/api/payments/7", 200), ("/api/payments/refunds/7", 403)] {
        let token = issuer
            .mint(&MintRequest::new("user:alice", ExpiryClass::Fast))
            .unwrap();
        let claims = Verifier::new(keys.clone()).verify(&token).unwrap();
        txns.push(claims.txn.unwrap());
        let plain = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
        let res = plain
            .oneshot(
                Request::get(format!("http://{gateway_addr}{path}"))
                    .header("txn-token", token)
                    .body(Full::new(Bytes::new()))
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(
            res.status(),
            status,
            "{path}: the gateway passes on the status"
        );
    }

    let logs: Vec<PathBuf> = [gateway, orders, payments]
        .into_iter()
        .map(|s| {
            s.auditor.shutdown();
            s.log
        })
        .collect();
    for log in &logs {
        let report = verify_files(&[log], Some(audit_key.public_key())).unwrap();
        assert_eq!(report.after_last_checkpoint, 0, "closed with a checkpoint");
    }
    let (events, bad) = read_events(&logs).unwrap();
    assert_eq!(bad, 0);
    // gateway in+out, orders in+out, payments in: per transaction.
    assert_eq!(events.len(), 10);
    assert!(
        events
            .iter()
            .all(|e| e.token_sha256.is_some() && e.jti.is_some())
    );

    let ok = trace::build(txns[0], events.clone());
    assert_eq!(ok.roots.len(), 1);
    let gw = &ok.roots[0];
    assert_eq!(gw.inbound.service, "gateway");
    assert_eq!(gw.inbound.object.as_deref(), Some("api/payments/7"));
    let orders_hop = gw.calls[0].callee.as_ref().unwrap();
    assert_eq!(orders_hop.inbound.service, "orders");
    assert_eq!(orders_hop.inbound.dir, Direction::In);
    let payments_hop = orders_hop.calls[0].callee.as_ref().unwrap();
    assert_eq!(payments_hop.inbound.service, "payments");
    assert_eq!(payments_hop.inbound.decision, Decision::Allow);
    assert_eq!(payments_hop.inbound.rule.as_deref(), Some("users-read"));
    assert!(ok.orphan_calls.is_empty());

    let denied = trace::build(txns[1], events);
    let text = denied.render();
    let last = text.lines().nth(2).unwrap();
    assert!(
        last.starts_with("        payments read pay/refunds/7 -> deny (no-refunds) 403"),
        "{text}"
    );
}
