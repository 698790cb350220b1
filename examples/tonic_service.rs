//! A tonic gRPC service behind secmesh, no protoc needed: messages are prost derives and the
//! service is written against tonic's server API. A client in another service's request
//! context calls it through a tonic channel with the propagate layer.
//!
//! ```text
//! cargo run --example tonic_service
//! ```
#![allow(clippy::unwrap_used)]

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::uri::PathAndQuery;
use secmesh::core::ExpiryClass;
use secmesh::core::policy::{Format, Policy, SharedPolicy};
use secmesh::tokens::cache::TokenHash;
use secmesh::tokens::{Algorithm, Issuer, KeySet, MintRequest, SigningKey, Verifier};
use secmesh_tower::authorize::GrpcClassifier;
use secmesh_tower::context::RequestContext;
use secmesh_tower::deny::GrpcStatus;
use secmesh_tower::propagate::PropagateLayer;
use secmesh_tower::{AuthenticateLayer, AuthorizeLayer};
use tonic::Status;
use tonic::body::Body;
use tower::ServiceBuilder;

#[derive(Clone, PartialEq, prost::Message)]
struct ReserveRequest {
    #[prost(string, tag = "1")]
    sku: String,
}

#[derive(Clone, PartialEq, prost::Message)]
struct ReserveReply {
    #[prost(string, tag = "1")]
    sub: String,
    #[prost(string, tag = "2")]
    txn: String,
    #[prost(string, tag = "3")]
    trace_id: String,
}

/// `inventory.v1.Inventory` with one method, `Reserve`.
#[derive(Clone)]
struct Inventory;

impl tonic::server::NamedService for Inventory {
    const NAME: &'static str = "inventory.v1.Inventory";
}

struct Reserve;

impl tonic::server::UnaryService<ReserveRequest> for Reserve {
    type Response = ReserveReply;
    type Future = std::future::Ready<Result<tonic::Response<ReserveReply>, Status>>;

    fn call(&mut self, _req: tonic::Request<ReserveRequest>) -> Self::Future {
        // The handler reads the context the layers set; it never sees the token.
        let reply = RequestContext::current()
            .and_then(|ctx| {
                let c = ctx.claims()?;
                Some(ReserveReply {
                    sub: c.sub.to_string(),
                    txn: c.txn.map(|t| t.to_string()).unwrap_or_default(),
                    trace_id: ctx.trace_id().to_string(),
                })
            })
            .ok_or_else(|| Status::internal("no request context"));
        std::future::ready(reply.map(tonic::Response::new))
    }
}

impl tower::Service<http::Request<Body>> for Inventory {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<Body>) -> Self::Future {
        Box::pin(async move {
            if req.uri().path() == "/inventory.v1.Inventory/Reserve" {
                let mut grpc = tonic::server::Grpc::new(tonic_prost::ProstCodec::default());
                Ok(grpc.unary(Reserve, req).await)
            } else {
                Ok(Status::unimplemented("no such method").into_http())
            }
        })
    }
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
            .add_service(Inventory)
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
    let mut client =
        tonic::client::Grpc::with_origin(svc, format!("http://{addr}").parse().unwrap());
    client
        .ready()
        .await
        .map_err(|e| Status::unavailable(e.to_string()))?;
    client
        .unary(
            tonic::Request::new(ReserveRequest { sku: "A-1".into() }),
            PathAndQuery::from_static("/inventory.v1.Inventory/Reserve"),
            tonic_prost::ProstCodec::default(),
        )
        .await
        .map(tonic::Response::into_inner)
}
