//! The server stack in front of real axum servers on 127.0.0.1: one `.layer(secure)` protects
//! a router; policy attributes reach the engine from the token's `tctx`; extractors refuse
//! through the responder; and under `FullPolicy::Block` a full audit queue is waited for inside
//! the request future, never parking the runtime's only thread.
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::get;
use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use secmesh_audit::event::AuditEvent;
use secmesh_audit::sink::Sink;
use secmesh_audit::{Auditor, FullPolicy};
use secmesh_core::ExpiryClass;
use secmesh_core::policy::{Format, Policy, SharedPolicy};
use secmesh_tokens::{Algorithm, Issuer, KeySet, MintRequest, SigningKey, Verifier};
use secmesh_tower::SecureLayer;
use secmesh_tower::extract::{Decision, Subject};

const POLICY: &str = r#"
[[rule]]
id = "gold-reads-vault"
effect = "allow"
subjects = ["user:*"]
verbs = ["read"]
objects = ["vault/**"]
attributes = { tier = ["gold", "platinum"] }

[[rule]]
id = "users-read-orders"
effect = "allow"
subjects = ["user:*"]
verbs = ["read"]
objects = ["orders/**"]
"#;

type HttpClient = Client<HttpConnector, Full<Bytes>>;

fn client() -> HttpClient {
    Client::builder(TokioExecutor::new()).build_http()
}

async fn send(
    client: &HttpClient,
    addr: SocketAddr,
    path: &str,
    token: Option<&str>,
) -> (StatusCode, String, Option<String>) {
    let mut b = Request::get(format!("http://{addr}{path}"));
    if let Some(t) = token {
        b = b.header("txn-token", t);
    }
    let res = client
        .request(b.body(Full::default()).unwrap())
        .await
        .unwrap();
    let status = res.status();
    let ct = res
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned());
    let body = res.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned(), ct)
}

fn keys() -> (Issuer, Verifier) {
    let key = SigningKey::generate(Algorithm::EdDsa).unwrap();
    let verifier = Verifier::new(KeySet::single(key.verifying_key(Some("k1".into()))))
        .issuer("gw")
        .audience("orders");
    (Issuer::new(key, "k1", "gw").audience("orders"), verifier)
}

async fn who(Subject(sub): Subject, decision: Decision) -> String {
    format!(
        "{sub} {} {} by {}",
        decision.permitted.verb(),
        decision.permitted.object(),
        decision.permitted.rule().unwrap_or("-")
    )
}

#[tokio::test]
async fn one_layer_protects_a_router_and_attributes_reach_the_policy() {
    let (issuer, verifier) = keys();
    let policy = SharedPolicy::new(Policy::parse(POLICY, Format::Toml).unwrap());
    let secure = SecureLayer::builder(verifier, policy)
        .max_class(ExpiryClass::Fast)
        .build()
        .unwrap();
    let app = Router::new()
        .route("/vault/{id}", get(who))
        .route("/orders/{id}", get(who))
        .layer(secure);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let mint = |tier: Option<&str>| {
        let mut m = MintRequest::new("user:alice", ExpiryClass::Fast);
        if let Some(t) = tier {
            m = m.tctx(
                serde_json::json!({ "tier": t })
                    .as_object()
                    .cloned()
                    .unwrap(),
            );
        }
        issuer.mint(&m).unwrap()
    };
    let c = client();
    let (status, body, _) = send(&c, addr, "/vault/1", Some(&mint(Some("gold")))).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, "user:alice read vault/1 by gold-reads-vault");
    let (status, body, ct) = send(&c, addr, "/vault/1", Some(&mint(Some("tin")))).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(ct.as_deref(), Some("application/problem+json"));
    assert!(!body.contains("gold"), "{body}");
    let (status, _, _) = send(&c, addr, "/vault/1", Some(&mint(None))).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, body, _) = send(&c, addr, "/orders/9", Some(&mint(None))).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, "user:alice read orders/9 by users-read-orders");
    let (status, _, ct) = send(&c, addr, "/orders/9", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(ct.as_deref(), Some("application/problem+json"));
    let slow = issuer
        .mint(&MintRequest::new("user:alice", ExpiryClass::Slow))
        .unwrap();
    let (status, _, _) = send(&c, addr, "/orders/9", Some(&slow)).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "class_not_allowed");
}

#[tokio::test]
async fn extractors_refuse_through_the_responder() {
    // A route outside any secmesh layer that asks for the subject: no outcome, so 401 as a
    // problem+json with the challenge (not a bare status).
    let app = Router::new().route("/me", get(|Subject(s): Subject| async move { s }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let res = client()
        .request(
            Request::get(format!("http://{addr}/me"))
                .body(Full::default())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(res.headers()["www-authenticate"], "Bearer");
    assert_eq!(res.headers()["content-type"], "application/problem+json");
}

/// A sink whose writes wait for the test to open a gate, one message per batch.
#[derive(Clone)]
struct Gated {
    gate: Arc<Mutex<mpsc::Receiver<()>>>,
    written: Arc<Mutex<Vec<AuditEvent>>>,
}

impl Sink for Gated {
    fn write_batch(&mut self, events: &mut [AuditEvent]) -> std::io::Result<()> {
        // A closed gate (the sender dropped) lets everything through.
        let _ = self.gate.lock().unwrap().recv();
        self.written.lock().unwrap().extend(events.iter().cloned());
        Ok(())
    }
}

#[test]
fn a_full_block_queue_is_waited_for_in_the_request_future_not_on_a_runtime_thread() {
    const REQUESTS: usize = 6;
    let (gate_tx, gate_rx) = mpsc::channel::<()>();
    let written = Arc::new(Mutex::new(Vec::new()));
    let auditor = Auditor::builder(Gated {
        gate: Arc::new(Mutex::new(gate_rx)),
        written: written.clone(),
    })
    .capacity(1)
    .batch_size(1)
    .full_policy(FullPolicy::Block)
    .spawn();
    let (issuer, verifier) = keys();
    let policy = SharedPolicy::new(Policy::parse(POLICY, Format::Toml).unwrap());
    let secure = SecureLayer::builder(verifier, policy)
        .audit(auditor.clone(), "orders")
        .build()
        .unwrap();
    // The server runs on a runtime with one thread: a parked thread would stop it entirely.
    let app = Router::new()
        .route("/orders/{id}", get(who))
        .layer(secure)
        .route("/health", get(|| async { "up" }));
    let std_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    std_listener.set_nonblocking(true).unwrap();
    let addr = std_listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(std_listener).unwrap();
            axum::serve(listener, app).await.unwrap();
        });
    });

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let token = issuer
            .mint(&MintRequest::new("user:alice", ExpiryClass::Fast))
            .unwrap();
        let c = client();
        let calls: Vec<_> = (0..REQUESTS)
            .map(|i| {
                let (c, token) = (c.clone(), token.clone());
                tokio::spawn(
                    async move { send(&c, addr, &format!("/orders/{i}"), Some(&token)).await },
                )
            })
            .collect();
        // The writer holds one event at the closed gate and the queue holds another: the rest
        // of the requests wait for room.
        let deadline = Instant::now() + Duration::from_secs(30);
        while !auditor.is_full() {
            assert!(Instant::now() < deadline, "the queue never filled");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        // The server's only thread still serves.
        let (status, body, _) =
            tokio::time::timeout(Duration::from_secs(30), send(&c, addr, "/health", None))
                .await
                .expect("the server thread is parked");
        assert_eq!((status, body.as_str()), (StatusCode::OK, "up"));
        let finished = calls.iter().filter(|h| h.is_finished()).count();
        assert!(finished < REQUESTS, "requests wait while the queue is full");
        // Open the gate: every waiting request completes, and every event is written.
        drop(gate_tx);
        for call in calls {
            let (status, _, _) = call.await.unwrap();
            assert_eq!(status, StatusCode::OK);
        }
        auditor.flush().unwrap();
        let events = written.lock().unwrap().clone();
        assert_eq!(events.len(), REQUESTS, "nothing dropped under Block");
        auditor.shutdown();
    });
}
