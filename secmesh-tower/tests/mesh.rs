//! Real axum servers on 127.0.0.1: gateway (the test) -> orders -> payments. The token travels
//! from orders to payments with no handler code touching it, also from a spawned task.
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::routing::get;
use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use secmesh_core::ExpiryClass;
use secmesh_core::policy::{Format, Policy, SharedPolicy};
use secmesh_tokens::{Algorithm, Issuer, KeySet, MintRequest, SigningKey, Verifier};
use secmesh_tower::SecureLayer;

use secmesh_tower::context::{self, RequestContext};
use secmesh_tower::propagate::{Propagate, PropagateLayer};
use tower::{Layer, ServiceExt};

type HttpClient = Propagate<Client<HttpConnector, Full<Bytes>>>;

/// Users may do anything here: these tests are about tokens and classes, not rules.
const USERS: &str = r#"
[[rule]]
id = "users"
effect = "allow"
subjects = ["user:*"]
verbs = ["*"]
objects = ["**"]
"#;

async fn serve(app: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

fn client(allowed: &[String]) -> HttpClient {
    let inner = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    PropagateLayer::new(allowed).layer(inner)
}

async fn get_text(client: HttpClient, url: String) -> (StatusCode, String) {
    let res = client
        .oneshot(Request::get(url).body(Full::new(Bytes::new())).unwrap())
        .await
        .unwrap();
    let status = res.status();
    let body = res.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8(body.to_vec()).unwrap())
}

/// What payments saw: the authenticated subject, txn and the trace id of the call.
async fn payments_charge(req: Request<Body>) -> String {
    let ctx = RequestContext::current().expect("authenticated");
    let claims = ctx.claims().unwrap();
    serde_json::json!({
        "sub": claims.sub,
        "txn": claims.txn.map(|t| t.to_string()),
        "trace_id": ctx.trace_id().to_string(),
        "parent": ctx.parent_span_id().map(|s| s.to_string()),
        "forged": req.headers().contains_key("x-secmesh-caller"),
    })
    .to_string()
}

#[derive(Clone)]
struct Orders {
    client: HttpClient,
    payments: SocketAddr,
}

/// Calls payments; the handler never touches the token.
async fn orders_pay(State(o): State<Orders>) -> String {
    get_text(o.client.clone(), format!("http://{}/charge", o.payments))
        .await
        .1
}

/// Calls payments from a spawned task.
async fn orders_pay_later(State(o): State<Orders>) -> String {
    context::spawn(async move {
        get_text(o.client, format!("http://{}/charge", o.payments))
            .await
            .1
    })
    .await
    .unwrap()
}

/// Calls a service that is not on the allowlist.
async fn orders_leak(State(o): State<Orders>) -> String {
    let other = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let elsewhere = PropagateLayer::new(["payments.invalid"]).layer(other);
    get_text(elsewhere, format!("http://{}/charge", o.payments))
        .await
        .0
        .as_u16()
        .to_string()
}

struct Mesh {
    issuer: Issuer,
    orders: SocketAddr,
}

async fn mesh() -> Mesh {
    let key = SigningKey::generate(Algorithm::EdDsa).unwrap();
    let keys = Arc::new(KeySet::single(key.verifying_key(Some("gw-1".into()))));
    // Each service: the one stack, its route's slowest class, a policy that lets users in.
    let secure = |max: ExpiryClass| {
        let verifier = Verifier::new(keys.clone())
            .issuer("https://gw.mesh.test")
            .audience("mesh.test");
        let policy = Policy::parse(USERS, Format::Toml).unwrap();
        SecureLayer::builder(verifier, SharedPolicy::new(policy))
            .max_class(max)
            .cache_capacity(1000)
            .build()
            .unwrap()
    };
    let payments = serve(
        Router::new()
            .route("/charge", get(payments_charge))
            .layer(secure(ExpiryClass::Fast)),
    )
    .await;
    let state = Orders {
        client: client(&[format!("127.0.0.1:{}", payments.port())]),
        payments,
    };
    let orders = serve(
        Router::new()
            .route("/orders/pay", get(orders_pay))
            .route("/orders/pay-later", get(orders_pay_later))
            .route("/orders/leak", get(orders_leak))
            .with_state(state)
            .layer(secure(ExpiryClass::Medium)),
    )
    .await;
    Mesh {
        issuer: Issuer::new(key, "gw-1", "https://gw.mesh.test").audience("mesh.test"),
        orders,
    }
}

async fn call(addr: SocketAddr, path: &str, token: Option<&str>) -> (StatusCode, String) {
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let mut req =
        Request::get(format!("http://{addr}{path}")).header("x-secmesh-caller", "spiffe://forged");
    if let Some(t) = token {
        req = req.header("txn-token", t);
    }
    let res = client
        .oneshot(req.body(Full::new(Bytes::new())).unwrap())
        .await
        .unwrap();
    let status = res.status();
    let body = res.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8(body.to_vec()).unwrap())
}

#[tokio::test]
async fn token_travels_two_hops_without_handler_code() {
    let m = mesh().await;
    let token = m
        .issuer
        .mint(
            &MintRequest::new("user:alice", ExpiryClass::Fast)
                .grant("read", "orders/*")
                // Both services authorize now: payments' own object.
                .grant("read", "charge"),
        )
        .unwrap();
    for path in ["/orders/pay", "/orders/pay-later"] {
        let (status, body) = call(m.orders, path, Some(&token)).await;
        assert_eq!(status, StatusCode::OK, "{path}: {body}");
        let seen: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(seen["sub"], "user:alice", "{path}");
        let txn = seen["txn"].as_str().unwrap();
        assert_eq!(
            seen["trace_id"], txn,
            "{path}: the trace continues the transaction"
        );
        assert!(
            seen["parent"].is_string(),
            "{path}: a child traceparent arrived"
        );
        assert_eq!(seen["forged"], false, "{path}");
    }
}

#[tokio::test]
async fn refusals_at_the_first_and_second_hop() {
    let m = mesh().await;
    // No token, a tampered one, another audience: refused by orders.
    assert_eq!(
        call(m.orders, "/orders/pay", None).await.0,
        StatusCode::UNAUTHORIZED
    );
    let token = m
        .issuer
        .mint(&MintRequest::new("user:alice", ExpiryClass::Fast))
        .unwrap();
    let mut tampered = token.clone();
    let i = tampered.find('.').unwrap() + 5;
    tampered.replace_range(i..=i, if &token[i..=i] == "A" { "B" } else { "A" });
    assert_eq!(
        call(m.orders, "/orders/pay", Some(&tampered)).await.0,
        StatusCode::UNAUTHORIZED
    );
    let other_aud = m
        .issuer
        .mint(&MintRequest::new("user:alice", ExpiryClass::Fast).audience("other.test"))
        .unwrap();
    assert_eq!(
        call(m.orders, "/orders/pay", Some(&other_aud)).await.0,
        StatusCode::UNAUTHORIZED
    );
    // A medium token passes orders (medium route) but payments accepts fast only: the
    // refusal (403 class_not_allowed) comes back through orders as payments' body.
    let medium = m
        .issuer
        .mint(&MintRequest::new("user:alice", ExpiryClass::Medium))
        .unwrap();
    let (status, body) = call(m.orders, "/orders/pay", Some(&medium)).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("\"status\":403"), "{body}");
    // A slow token is refused on the medium route itself.
    let slow = m
        .issuer
        .mint(&MintRequest::new("user:alice", ExpiryClass::Slow))
        .unwrap();
    assert_eq!(
        call(m.orders, "/orders/pay", Some(&slow)).await.0,
        StatusCode::FORBIDDEN
    );
}

#[tokio::test]
async fn no_token_to_destinations_off_the_allowlist() {
    let m = mesh().await;
    let token = m
        .issuer
        .mint(&MintRequest::new("user:alice", ExpiryClass::Fast))
        .unwrap();
    // orders calls payments through a client whose allowlist does not name it: payments sees
    // no token and refuses.
    let (status, body) = call(m.orders, "/orders/leak", Some(&token)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, "401");
}
