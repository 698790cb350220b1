//! An axum service behind secmesh, called the way another service would call it.
//!
//! Starts `orders` on 127.0.0.1 with authenticate + authorize and a policy file that reloads,
//! mints a token as the gateway would, and makes a few calls: allowed, another user's order,
//! no token, a widened grant that the policy still refuses.
//!
//! ```text
//! cargo run --example axum_service
//! ```
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use axum::Router;
use axum::routing::get;
use http_body_util::BodyExt;
use secmesh::prelude::*;
use tower::ServiceExt;

const POLICY: &str = r#"
[[rule]]
id = "owners-read-own-orders"
effect = "allow"
subjects = ["user:*"]
verbs = ["read"]
objects = ["orders/{sub}/**"]
callers = ["spiffe://mesh.test/gateway"]
"#;

async fn order(Subject(sub): Subject, claims: Claims, decision: Decision) -> String {
    format!(
        "{sub} may {} {} (rule {}, txn {})",
        decision.permitted.verb(),
        decision.permitted.object(),
        decision.permitted.rule().unwrap_or("-"),
        claims.txn.map(|t| t.to_string()).unwrap_or_default()
    )
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The gateway's key; services only see its JWKS.
    let key = SigningKey::generate(Algorithm::EdDsa)?;
    let jwks = KeySet::single(key.verifying_key(Some("gw-1".into())))
        .to_jwks()
        .to_json();
    let gateway = Issuer::new(key, "gw-1", "https://gw.mesh.test").audience("mesh.test");

    // The orders service: keys from the JWKS, policy from a file it watches.
    let dir = std::env::temp_dir().join(format!("secmesh-axum-example-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let policy_file = dir.join("orders-policy.toml");
    std::fs::write(&policy_file, POLICY)?;
    let policy = SharedPolicy::default();
    let _watch = PolicyWatcher::spawn(&policy_file, policy.clone(), Duration::from_millis(200))?;
    let verifier = Verifier::new(KeySet::from_jwks_json(&jwks)?)
        .issuer("https://gw.mesh.test")
        .audience("mesh.test")
        .max_class(ExpiryClass::Fast);
    let app = Router::new()
        .route("/orders/{owner}/{id}", get(order))
        .layer(AuthorizeLayer::new(policy))
        .layer(AuthenticateLayer::from_verifier(verifier, 10_000));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, app).await });
    println!("orders listening on http://{addr}");

    let alice = gateway.mint(
        &MintRequest::new("user:alice", ExpiryClass::Fast)
            .grant("read", "orders/**")
            .actor("spiffe://mesh.test/gateway"),
    )?;
    let no_actor = gateway.mint(&MintRequest::new("user:alice", ExpiryClass::Fast))?;
    for (what, path, token) in [
        (
            "alice reads her order",
            "/orders/user:alice/7",
            Some(&alice),
        ),
        (
            "alice reads bob's order",
            "/orders/user:bob/7",
            Some(&alice),
        ),
        ("no token", "/orders/user:alice/7", None),
        (
            "not through the gateway",
            "/orders/user:alice/7",
            Some(&no_actor),
        ),
    ] {
        let (status, body) = get_with(addr, path, token.map(String::as_str)).await;
        println!("{what:<26} -> {status} {body}");
    }
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}

async fn get_with(
    addr: std::net::SocketAddr,
    path: &str,
    token: Option<&str>,
) -> (http::StatusCode, String) {
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Empty<bytes::Bytes>>();
    let mut req = http::Request::get(format!("http://{addr}{path}"));
    if let Some(t) = token {
        req = req.header("txn-token", t);
    }
    let res = client
        .oneshot(req.body(http_body_util::Empty::new()).unwrap())
        .await
        .unwrap();
    let status = res.status();
    let body = res.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}
