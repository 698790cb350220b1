//! Three real axum servers on 127.0.0.1, orders -> payments -> inventory, each behind a
//! `SecureLayer` with the same allow-all-users policy; orders and payments call the next one
//! through a propagating client inside a span of the handler's own (`handler.forward`, target
//! [`HANDLER_TARGET`]). Shared by the span tests (`spans.rs`, `otlp.rs`).
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use secmesh_core::policy::{Format, Policy, SharedPolicy};
use secmesh_tokens::{Algorithm, Issuer, KeySet, SigningKey, Verifier};
use secmesh_tower::SecureLayer;
use secmesh_tower::propagate::{Propagate, PropagateLayer};
use tower::{Layer, ServiceExt};
use tracing::Instrument;

/// The `tracing` target of the handlers' own spans.
pub(crate) const HANDLER_TARGET: &str = "mesh_test";

const POLICY: &str = r#"
[[rule]]
id = "users"
effect = "allow"
subjects = ["user:*"]
verbs = ["read"]
objects = ["**"]
"#;

type HttpClient = Propagate<Client<HttpConnector, Full<Bytes>>>;

#[derive(Clone)]
struct Next {
    client: HttpClient,
    url: String,
}

/// Call the next service inside a span of the handler's own.
async fn forward(State(n): State<Next>) -> String {
    let call = async {
        let res = n
            .client
            .oneshot(Request::get(&n.url).body(Full::new(Bytes::new())).unwrap())
            .await
            .unwrap();
        let status = res.status();
        let body = res.into_body().collect().await.unwrap().to_bytes();
        format!("{status} {}", String::from_utf8_lossy(&body))
    };
    call.instrument(tracing::info_span!(target: HANDLER_TARGET, "handler.forward"))
        .await
}

async fn serve(app: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

/// The three services, running: orders' address (`GET /orders/pay` answers
/// `200 OK 200 OK in stock` when the whole chain allows) and the issuer of their tokens.
pub(crate) async fn orders_payments_inventory() -> (SocketAddr, Issuer) {
    let key = SigningKey::generate(Algorithm::EdDsa).unwrap();
    let keys = KeySet::single(key.verifying_key(Some("k".into())));
    let issuer = Issuer::new(key, "k", "gw").audience("mesh");
    let secure = |name: &str| {
        let policy = SharedPolicy::new(Policy::parse(POLICY, Format::Toml).unwrap());
        SecureLayer::builder(Verifier::new(keys.clone()), policy)
            .name(name)
            .build()
            .unwrap()
    };
    let client = |to: SocketAddr| {
        PropagateLayer::new([format!("127.0.0.1:{}", to.port())])
            .layer(Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>())
    };
    let inventory = serve(
        Router::new()
            .route("/stock", get(|| async { "in stock" }))
            .layer(secure("inventory")),
    )
    .await;
    let payments = serve(
        Router::new()
            .route("/charge", get(forward))
            .with_state(Next {
                client: client(inventory),
                url: format!("http://{inventory}/stock"),
            })
            .layer(secure("payments")),
    )
    .await;
    let orders = serve(
        Router::new()
            .route("/orders/pay", get(forward))
            .with_state(Next {
                client: client(payments),
                url: format!("http://{payments}/charge"),
            })
            .layer(secure("orders")),
    )
    .await;
    (orders, issuer)
}
