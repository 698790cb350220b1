//! A batch job with a slow token: accepted on the batch route, refused on an API route, and
//! renewed before it expires (scope narrowed, never widened; txn, sub and aud kept).
//!
//! ```text
//! cargo run --example batch
//! ```
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use secmesh::core::claims::Scope;
use secmesh::prelude::*;
use secmesh::tokens::renew::Renewer;

const POLICY: &str = r#"
[[rule]]
id = "reconciler-reads-ledger"
effect = "allow"
subjects = ["svc:reconcile"]
verbs = ["read"]
objects = ["ledger/**", "api/ledger/**"]
"#;

async fn show(claims: Claims) -> String {
    format!(
        "ok: {} ({} token, jti {})",
        claims.sub, claims.cls, claims.jti
    )
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let key = SigningKey::generate(Algorithm::EdDsa)?;
    let keys = Arc::new(KeySet::single(key.verifying_key(Some("batch-1".into()))));
    let verifier = Verifier::new(keys)
        .issuer("https://batch.mesh.test")
        .audience("mesh.test");
    let policy = SharedPolicy::new(Policy::parse(POLICY, Format::Toml)?);

    // The batch route takes slow tokens; the API route takes fast ones only.
    let app = Router::new()
        .route(
            "/ledger/{day}",
            get(show).layer(AuthorizeLayer::new(policy.clone()).max_class(ExpiryClass::Slow)),
        )
        .route(
            "/api/ledger/{day}",
            get(show).layer(AuthorizeLayer::new(policy).max_class(ExpiryClass::Fast)),
        )
        .layer(AuthenticateLayer::from_verifier(verifier, 1000));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, app).await });

    // The job's token: slow class, short-lived here so the renewal shows within seconds.
    let issuer =
        Arc::new(Issuer::new(key, "batch-1", "https://batch.mesh.test").audience("mesh.test"));
    let renewer = Renewer::start(
        issuer,
        &MintRequest::new("svc:reconcile", ExpiryClass::Slow)
            .grant("read", "ledger/**")
            .grant("read", "api/ledger/**")
            .lifetime(3),
    )?
    .margin(2);

    let http = Client { addr };
    println!(
        "batch route: {}",
        http.get("/ledger/2026-11-24", &renewer.token()?).await
    );
    println!(
        "API route:   {}",
        http.get("/api/ledger/2026-11-24", &renewer.token()?).await
    );

    let before = renewer.claims();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let token = renewer.token()?;
    let after = renewer.claims();
    assert_ne!(before.jti, after.jti, "renewed within the margin");
    assert_eq!(
        (before.txn, &before.sub, &before.aud),
        (after.txn, &after.sub, &after.aud)
    );
    println!(
        "renewed:     {} (same txn {:?})",
        http.get("/ledger/2026-11-25", &token).await,
        after.txn
    );

    renewer.narrow(Scope::new("read:ledger/**")?)?;
    println!(
        "narrowed:    scope is now {:?}",
        renewer.claims().scope.map(|s| s.to_string())
    );
    let widened = renewer.narrow(Scope::new("read:ledger/** delete:ledger/**")?);
    println!("widening:    refused ({})", widened.unwrap_err());
    Ok(())
}

/// A tiny HTTP/1 client over hyper-util for the example.
struct Client {
    addr: std::net::SocketAddr,
}

impl Client {
    async fn get(&self, path: &str, token: &str) -> String {
        use http_body_util::BodyExt;
        use tower::ServiceExt;
        let client =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build_http::<http_body_util::Empty<bytes::Bytes>>();
        let req = http::Request::get(format!("http://{}{path}", self.addr))
            .header("txn-token", token)
            .body(http_body_util::Empty::new())
            .unwrap();
        let res = client.oneshot(req).await.unwrap();
        let status = res.status();
        let body = res.into_body().collect().await.unwrap().to_bytes();
        format!("{status} {}", String::from_utf8_lossy(&body))
    }
}
