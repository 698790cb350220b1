//! inventory (tonic, mutual TLS): `inventory.v1.Inventory/Reserve`, the workspace's shared
//! hand-written gRPC fixture (no protoc), behind the same server stack as the HTTP services,
//! which answers gRPC callers with gRPC statuses.

use std::net::SocketAddr;

use http::Request;
use secmesh::core::policy::SharedPolicy;
use secmesh::core::{ExpiryClass, PeerIdentity};
use secmesh::tls::config::{ClientAuth, ServerId};
use secmesh::tokens::Verifier;
use secmesh::tower::audit::AuditOutLayer;
use secmesh::tower::authorize::GrpcClassifier;
use secmesh::tower::context::RequestContext;
use secmesh::tower::propagate::PropagateLayer;
use secmesh::tower::tls::{TlsConnector, TlsServer};
use secmesh_testkit::inventory::{InventoryClient, InventoryServer, ReserveReply};
use tonic::Status;
use tower::{Layer, ServiceBuilder};

use crate::node::Node;

/// A gRPC channel of one node to inventory.
pub(crate) type GrpcChannel = tower::util::BoxCloneSyncService<
    Request<tonic::body::Body>,
    http::Response<tonic::body::Body>,
    tonic::transport::Error,
>;

/// Serves inventory on a new port of 127.0.0.1 and returns its address.
pub(crate) async fn start(
    node: &Node,
    verifier: &Verifier,
    policy: &SharedPolicy,
) -> std::io::Result<SocketAddr> {
    let server = InventoryServer::new(|req: tonic::Request<_>| {
        let caller = req
            .extensions()
            .get::<PeerIdentity>()
            .map(|p| p.spiffe_id.to_string())
            .unwrap_or_default();
        RequestContext::current()
            .and_then(|ctx| ctx.claims().map(|c| c.sub.to_string()))
            .map(|sub| ReserveReply {
                sub,
                caller,
                ..ReserveReply::default()
            })
            .ok_or_else(|| Status::internal("no request context"))
    });
    // The same stack as the HTTP services: it answers gRPC callers with gRPC statuses.
    let svc = node
        .stack(verifier, policy, ExpiryClass::Fast, GrpcClassifier)
        .layer(tonic::service::Routes::new(server));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let server = TlsServer::from_workload(&node.workload, ClientAuth::Required);
    tokio::spawn(server.serve(listener, svc));
    Ok(addr)
}

/// `from`'s gRPC channel to inventory at `addr`: mutual TLS, the token carried, `out` audited.
pub(crate) fn channel(
    from: &Node,
    addr: SocketAddr,
) -> Result<GrpcChannel, Box<dyn std::error::Error>> {
    let connector = TlsConnector::new(
        from.workload
            .client_config(ServerId::exact("spiffe://mesh.test/inventory".parse()?)),
    );
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))?
        .connect_with_connector_lazy(connector);
    Ok(tower::util::BoxCloneSyncService::new(
        ServiceBuilder::new()
            .layer(PropagateLayer::new([format!("127.0.0.1:{}", addr.port())]))
            .layer(AuditOutLayer::new(from.auditor.clone(), from.name))
            .service(channel),
    ))
}

/// Reserves stock through `channel`.
pub(crate) async fn reserve(
    channel: GrpcChannel,
    addr: SocketAddr,
) -> Result<ReserveReply, Status> {
    let origin = format!("https://{addr}").parse().unwrap();
    InventoryClient::with_origin(channel, origin)
        .reserve("A-1")
        .await
}
