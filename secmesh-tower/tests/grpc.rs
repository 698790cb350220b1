//! A real tonic server on 127.0.0.1 behind authenticate + authorize, called through a tonic
//! client with the propagate layer from inside a request context. No protoc: the service is the
//! workspace's hand-written fixture (`secmesh-testkit`), prost derives and tonic's server API.
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::sync::Arc;

use secmesh_core::ExpiryClass;
use secmesh_core::policy::{Format, Policy, SharedPolicy};
use secmesh_testkit::inventory::{InventoryClient, InventoryServer, ReserveReply, ReserveRequest};
use secmesh_tokens::{Algorithm, Issuer, KeySet, MintRequest, SigningKey, Verifier};
use secmesh_tower::authorize::GrpcClassifier;
use secmesh_tower::context::RequestContext;
use secmesh_tower::deny::GrpcStatus;
use secmesh_tower::propagate::PropagateLayer;
use secmesh_tower::{AuthenticateLayer, AuthorizeLayer, SecureLayer};
use tonic::{Code, Status};
use tower::ServiceBuilder;

/// The shared fixture's `Reserve`, answered from the context the layers set: the handler never
/// sees the token.
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

async fn serve(keys: Arc<KeySet>) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let verifier = Verifier::new(keys)
        .issuer("https://gw.mesh.test")
        .audience("mesh.test");
    let policy = SharedPolicy::new(Policy::parse(POLICY, Format::Toml).unwrap());
    let layers = ServiceBuilder::new()
        .layer(AuthenticateLayer::from_verifier(verifier, 1000).denial(GrpcStatus))
        .layer(
            AuthorizeLayer::new(policy)
                .max_class(ExpiryClass::Fast)
                .classifier(GrpcClassifier)
                .denial(GrpcStatus),
        )
        .into_inner();
    tokio::spawn(async move {
        tonic::transport::Server::builder()
            .layer(layers)
            .add_service(InventoryServer::new(reserve_from_context))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
            .await
            .unwrap()
    });
    addr
}

/// The same service behind the one server stack: no `.denial(GrpcStatus)` anywhere, the
/// responder answers gRPC callers in gRPC.
async fn serve_secure(keys: Arc<KeySet>, auditor: Option<secmesh_audit::Auditor>) -> SocketAddr {
    serve_secure_with(keys, auditor, POLICY).await
}

async fn serve_secure_with(
    keys: Arc<KeySet>,
    auditor: Option<secmesh_audit::Auditor>,
    policy: &str,
) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let verifier = Verifier::new(keys)
        .issuer("https://gw.mesh.test")
        .audience("mesh.test");
    let policy = SharedPolicy::new(Policy::parse(policy, Format::Toml).unwrap());
    let mut builder = SecureLayer::builder(verifier, policy)
        .classifier(GrpcClassifier)
        .max_class(ExpiryClass::Fast);
    if let Some(a) = auditor {
        builder = builder.audit(a, "inventory");
    }
    let secure = builder.build().unwrap();
    tokio::spawn(async move {
        tonic::transport::Server::builder()
            .layer(secure)
            .add_service(InventoryServer::new(reserve_from_context))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
            .await
            .unwrap()
    });
    addr
}

async fn reserve(addr: SocketAddr, allowed: &str) -> Result<ReserveReply, Status> {
    let channel = tonic::transport::Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let svc = ServiceBuilder::new()
        .layer(PropagateLayer::new([allowed]))
        .service(channel);
    // With an origin, tonic puts the authority on the request URI, where the allowlist sees it.
    InventoryClient::with_origin(svc, format!("http://{addr}").parse().unwrap())
        .reserve("A-1")
        .await
}

fn setup() -> (Issuer, Arc<KeySet>) {
    let key = SigningKey::generate(Algorithm::Es256).unwrap();
    let keys = Arc::new(KeySet::single(key.verifying_key(Some("gw-1".into()))));
    (
        Issuer::new(key, "gw-1", "https://gw.mesh.test").audience("mesh.test"),
        keys,
    )
}

/// A request context as the authenticate layer would have set it in a calling service.
fn context_for(token: &str, keys: &Arc<KeySet>) -> RequestContext {
    let verifier = Verifier::new(keys.clone());
    let verified = Arc::new(verifier.verify(token).unwrap());
    RequestContext::authenticated(
        token,
        secmesh_tokens::cache::TokenHash::of(token),
        verified,
        None,
    )
}

#[tokio::test]
async fn token_travels_into_a_tonic_call() {
    let (issuer, keys) = setup();
    let addr = serve(keys.clone()).await;
    let token = issuer
        .mint(&MintRequest::new("user:alice", ExpiryClass::Fast))
        .unwrap();
    let ctx = context_for(&token, &keys);
    let txn = ctx.txn().unwrap().to_string();
    let reply = ctx
        .scope(reserve(addr, &format!("127.0.0.1:{}", addr.port())))
        .await
        .unwrap();
    assert_eq!(reply.sub, "user:alice");
    assert_eq!(reply.txn, txn);
    assert_eq!(
        reply.trace_id, txn,
        "the child traceparent continues the trace"
    );
}

#[tokio::test]
async fn grpc_refusals_are_statuses() {
    let (issuer, keys) = setup();
    let addr = serve(keys.clone()).await;
    let allowed = format!("127.0.0.1:{}", addr.port());

    // No context: no token is sent.
    let err = reserve(addr, &allowed).await.unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);

    // A destination off the allowlist gets no token either.
    let token = issuer
        .mint(&MintRequest::new("user:alice", ExpiryClass::Fast))
        .unwrap();
    let err = context_for(&token, &keys)
        .scope(reserve(addr, "inventory.invalid"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);

    // A subject the policy does not cover: PERMISSION_DENIED.
    let svc_token = issuer
        .mint(&MintRequest::new("svc:batch", ExpiryClass::Fast))
        .unwrap();
    let err = context_for(&svc_token, &keys)
        .scope(reserve(addr, &allowed))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);

    // A medium token on this fast-only route: PERMISSION_DENIED (class_not_allowed; the
    // token itself is valid).
    let medium = issuer
        .mint(&MintRequest::new("user:alice", ExpiryClass::Medium))
        .unwrap();
    let err = context_for(&medium, &keys)
        .scope(reserve(addr, &allowed))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
}

#[tokio::test]
async fn one_secure_layer_protects_a_tonic_server() {
    let (issuer, keys) = setup();
    let addr = serve_secure(keys.clone(), None).await;
    let allowed = format!("127.0.0.1:{}", addr.port());
    let mint = |sub: &str, class| issuer.mint(&MintRequest::new(sub, class)).unwrap();

    let token = mint("user:alice", ExpiryClass::Fast);
    let reply = context_for(&token, &keys)
        .scope(reserve(addr, &allowed))
        .await
        .unwrap();
    assert_eq!(reply.sub, "user:alice");

    let err = reserve(addr, &allowed).await.unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    let err = context_for(&mint("svc:batch", ExpiryClass::Fast), &keys)
        .scope(reserve(addr, &allowed))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    // The route's slowest class is the stack's: a medium token is PERMISSION_DENIED.
    let err = context_for(&mint("user:alice", ExpiryClass::Medium), &keys)
        .scope(reserve(addr, &allowed))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
}

#[tokio::test]
async fn an_unavailable_audit_log_is_grpc_unavailable() {
    use secmesh_audit::event::AuditEvent;
    use std::sync::{Mutex, mpsc};

    /// A sink whose first write waits until the test ends.
    struct Stuck(Mutex<mpsc::Receiver<()>>);
    impl secmesh_audit::sink::Sink for Stuck {
        fn write_batch(&mut self, _: &mut [AuditEvent]) -> std::io::Result<()> {
            let _ = self.0.lock().unwrap().recv();
            Ok(())
        }
    }
    let (gate, rx) = mpsc::channel();
    let auditor = secmesh_audit::Auditor::builder(Stuck(Mutex::new(rx)))
        .capacity(1)
        .batch_size(1)
        .full_policy(secmesh_audit::FullPolicy::FailClosed)
        .spawn();
    let (issuer, keys) = setup();
    let addr = serve_secure(keys.clone(), Some(auditor.clone())).await;
    let allowed = format!("127.0.0.1:{}", addr.port());
    let token = issuer
        .mint(&MintRequest::new("user:alice", ExpiryClass::Fast))
        .unwrap();
    let mut codes = Vec::new();
    for _ in 0..5 {
        let out = context_for(&token, &keys)
            .scope(reserve(addr, &allowed))
            .await;
        codes.push(out.err().map(|e| e.code()));
    }
    assert!(codes.contains(&Some(Code::Unavailable)), "{codes:?}");
    drop(gate);
    auditor.shutdown();
}

#[tokio::test]
async fn a_call_over_a_declared_limit_is_resource_exhausted() {
    let (issuer, keys) = setup();
    let policy =
        format!("{POLICY}\n[[limit]]\nid = \"reserves\"\nrate = \"2/h\"\nverbs = [\"call\"]\n");
    let addr = serve_secure_with(keys.clone(), None, &policy).await;
    let allowed = format!("127.0.0.1:{}", addr.port());
    let token = issuer
        .mint(&MintRequest::new("user:alice", ExpiryClass::Fast))
        .unwrap();
    let mut codes = Vec::new();
    for _ in 0..4 {
        let out = context_for(&token, &keys)
            .scope(reserve(addr, &allowed))
            .await;
        codes.push(out.err().map(|e| e.code()));
    }
    assert_eq!(
        codes,
        [
            None,
            None,
            Some(Code::ResourceExhausted),
            Some(Code::ResourceExhausted)
        ]
    );
}
