//! The facade alone is enough: a router protected with names from `secmesh::prelude` only,
//! served by the library on 127.0.0.1, refuses and allows as the README says, and its audit
//! log records every request, denials included.
#![allow(clippy::unwrap_used)]

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::Empty;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use secmesh::audit::verify::{read_events, verify_files};
use secmesh::prelude::*;

const POLICY: &str = r#"
[[rule]]
id = "owners-read-own-orders"
effect = "allow"
subjects = ["user:*"]
verbs = ["read"]
objects = ["orders/{sub}/*"]
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_router_protected_from_the_prelude() {
    let dir = tempfile::tempdir().unwrap();
    let key = SigningKey::generate(Algorithm::EdDsa).unwrap();
    let keys = KeySet::single(key.verifying_key(Some("gw-1".into())));
    let issuer = Issuer::new(key, "gw-1", "https://gw.mesh.test").audience("mesh.test");
    let verifier = Verifier::new(keys)
        .issuer("https://gw.mesh.test")
        .audience("mesh.test");
    let policy = SharedPolicy::new(Policy::parse(POLICY, Format::Toml).unwrap());
    let audit_key = AuditKey::generate().unwrap();
    let public = audit_key.public_key().to_vec();
    let log = dir.path().join("orders.jsonl");
    let sink = JsonLinesSink::open(&log, JsonLinesConfig::default().with_key(audit_key)).unwrap();
    let auditor = Auditor::builder(sink).spawn();

    let hello = |Subject(sub): Subject| async move { format!("hello {sub}") };
    let app = axum::Router::new()
        .route("/orders/{owner}/{id}", axum::routing::get(hello))
        .layer(AuthorizeLayer::new(policy))
        .layer(AuthenticateLayer::from_verifier(verifier, 100))
        .layer(AuditLayer::new(auditor.clone(), "orders"));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(PlainServer::new().serve(listener, app));

    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let alice = issuer
        .mint(&MintRequest::new("user:alice", ExpiryClass::Fast))
        .unwrap();
    let call = |path: &str, token: Option<&str>| {
        let mut req = Request::get(format!("http://{addr}{path}"));
        if let Some(t) = token {
            req = req.header("txn-token", t);
        }
        client.request(req.body(Empty::new()).unwrap())
    };
    let status = |path, token| async move { call(path, token).await.unwrap().status() };

    assert_eq!(
        status("/orders/user:alice/7", None).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        status("/orders/user:bob/7", Some(&alice)).await,
        StatusCode::FORBIDDEN
    );
    let res = call("/orders/user:alice/7", Some(&alice)).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let body = http_body_util::BodyExt::collect(res.into_body())
        .await
        .unwrap()
        .to_bytes();
    assert_eq!(&body[..], b"hello user:alice");

    // Audit is outermost: the two refusals are in the log beside the allowed call.
    auditor.flush().unwrap();
    let (events, bad) = read_events(&[&log]).unwrap();
    assert_eq!(bad, 0);
    let statuses: Vec<_> = events.iter().map(|e| e.status).collect();
    assert_eq!(statuses, [Some(401), Some(403), Some(200)]);
    auditor.shutdown();
    let report = verify_files(&[&log], Some(&public)).unwrap();
    assert_eq!(report.events, 3);
}
