//! A tonic gRPC service behind secmesh, no protoc needed: the service is the workspace's
//! hand-written fixture (`secmesh-testkit`: prost derives and tonic's server API, as tonic-build
//! would generate them); yours comes from your codegen. A client in another service's request
//! context calls it through a tonic channel with the propagate layer.
//!
//! ```text
//! cargo run --example tonic_service
//! ```
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use secmesh::prelude::*;
use secmesh::tokens::cache::TokenHash;
use secmesh_testkit::inventory::{InventoryClient, InventoryServer, ReserveReply, ReserveRequest};
use tonic::Status;
use tower::ServiceBuilder;

/// `Reserve`, answered from the context the layers set: the handler never sees the token.
fn reserve_from_context(_req: tonic::Request<ReserveRequest>) -> Result<ReserveReply, Status> {
    RequestContext::current()
        .and_then(|ctx| {
            let c = ctx.claims()?;
            Some(ReserveReply {
                sub: c.sub.to_string(),
                txn: c.txn.map(|t| t.to_string()).unwrap_or_default(),
                trace_id: ctx.trace_id().to_string(),
                ..ReserveReply::default()
            })
        })
        .ok_or_else(|| Status::internal("no request context"))
}

const POLICY: &str = r#"
[[rule]]
id = "users-reserve-stock"
effect = "allow"
subjects = ["user:*"]
verbs = ["call"]
objects = ["inventory.v1.Inventory/Reserve"]
"#;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let key = SigningKey::generate(Algorithm::Es256)?;
    let keys = Arc::new(KeySet::single(key.verifying_key(Some("gw-1".into()))));
    let issuer = Issuer::new(key, "gw-1", "https://gw.mesh.test").audience("mesh.test");

    // The inventory server: authenticate + authorize answer with gRPC statuses.
    let verifier = Verifier::new(keys.clone())
        .issuer("https://gw.mesh.test")
        .audience("mesh.test")
        .max_class(ExpiryClass::Fast);
    let layers = ServiceBuilder::new()
        .layer(AuthenticateLayer::from_verifier(verifier, 1000).denial(GrpcStatus))
        .layer(
            AuthorizeLayer::new(SharedPolicy::new(Policy::parse(POLICY, Format::Toml)?))
                .classifier(GrpcClassifier)
                .denial(GrpcStatus),
        )
        .into_inner();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(
        tonic::transport::Server::builder()
            .layer(layers)
            .add_service(InventoryServer::new(reserve_from_context))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    println!("inventory listening on {addr}");

    // A caller: inside its own request context (as its authenticate layer would set it), the
    // token travels on the tonic channel without the caller touching it.
    for sub in ["user:alice", "svc:batch"] {
        let token = issuer.mint(&MintRequest::new(sub, ExpiryClass::Fast))?;
        let verified = Arc::new(Verifier::new(keys.clone()).verify(&token)?);
        let ctx = RequestContext::authenticated(&token, TokenHash::of(&token), verified, None);
        let result = ctx.scope(reserve(addr)).await;
        match result {
            Ok(r) => println!("{sub:<12} -> reserved for {} in txn {}", r.sub, r.txn),
            Err(status) => println!("{sub:<12} -> {:?}: {}", status.code(), status.message()),
        }
    }
    Ok(())
}

async fn reserve(addr: std::net::SocketAddr) -> Result<ReserveReply, Status> {
    let channel = tonic::transport::Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .map_err(|e| Status::unavailable(e.to_string()))?;
    let svc = ServiceBuilder::new()
        .layer(PropagateLayer::new([format!("127.0.0.1:{}", addr.port())]))
        .service(channel);
    InventoryClient::with_origin(svc, format!("http://{addr}").parse().unwrap())
        .reserve("A-1")
        .await
}
