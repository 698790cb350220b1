//! gateway (axum, the edge; plain HTTP on 127.0.0.1 for the outside): the library's edge layer
//! verifies the IdP's bearer tokens and exchanges each, through the token service over mutual
//! TLS, for an internal fast txn-token narrowed to the request. The gateway holds no signing
//! key; the handler only forwards to orders, and the token travels in the `Txn-Token` header
//! without any handler touching it.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use http::{Request, StatusCode};
use secmesh::core::claims::Scope;
use secmesh::core::{Object, Verb};
use secmesh::tokens::external::ExternalClaims;
use secmesh::tower::audit::AuditLayer;
use secmesh::tower::context::RequestContext;
use secmesh::tower::edge::EdgeLayer;
use secmesh::tower::serve::{PlainServer, ServerLimits};

use crate::node::{HttpsClient, Node, mesh_verifier, reply, send, sts_client};
use crate::{MESH_AUD, idp};

#[derive(Clone)]
struct Gateway {
    orders: HttpsClient,
    orders_addr: SocketAddr,
}

/// Serves the gateway on a new port of 127.0.0.1 and returns its address; it accepts the
/// access tokens of the IdP whose keys are at `idp_jwks` and exchanges them through the token
/// service at `sts`.
pub(crate) async fn start(
    node: &Node,
    idp_jwks: &str,
    sts: SocketAddr,
    orders_addr: SocketAddr,
) -> Result<SocketAddr, Box<dyn std::error::Error>> {
    let edge = EdgeLayer::new(
        idp::verifiers(idp_jwks).await?,
        // The exchanger: the token service, asked as this node's workload.
        Arc::new(sts_client(&node.workload, sts)?),
        // The issued token is verified like in every service: the token service's keys.
        Arc::new(mesh_verifier(&node.workload, sts).await?),
        MESH_AUD,
    )
    .scope(scope_for);
    let state = Gateway {
        orders: node.client_to(orders_addr, "spiffe://mesh.test/orders"),
        orders_addr,
    };
    let app = Router::new()
        .route("/orders/{*rest}", any(forward))
        .with_state(state)
        .layer(edge)
        .layer(AuditLayer::new(node.auditor.clone(), node.name));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    // The library's plain-HTTP server: header-read, idle and connection limits (the demo's
    // edge listens on loopback; a real edge sits behind a TLS-terminating proxy).
    tokio::spawn(
        PlainServer::new()
            .limits(ServerLimits::default())
            .serve(listener, app),
    );
    Ok(addr)
}

/// The scope the edge asks for: the request's own grant and what orders will ask downstream
/// for this request, nothing else (the token service then narrows it to the exchange policy:
/// the user's own orders only).
fn scope_for(_: &ExternalClaims, verb: &Verb, object: &Object) -> Option<Scope> {
    let mut grants = vec![(verb.as_str().to_owned(), object.as_str().to_owned())];
    if let [_, user, order, rest @ ..] = object.as_str().split('/').collect::<Vec<_>>().as_slice() {
        match rest {
            [] => {
                grants.push(("read".into(), format!("payments/{user}/{order}")));
                grants.push(("call".into(), "inventory.v1.Inventory/Reserve".into()));
            }
            ["dispute"] => {
                grants.push(("create".into(), format!("payments/{user}/{order}/dispute")));
                grants.push(("create".into(), format!("orders/{user}/{order}/refund")));
            }
            _ => {}
        }
    }
    Scope::from_grants(grants.iter().map(|(v, o)| (v.as_str(), o.as_str()))).ok()
}

/// Forward to orders: the edge layer runs this inside the exchanged token's context, so the
/// client's propagation sends the token along. The transaction id goes back to the caller.
async fn forward(State(gw): State<Gateway>, req: Request<axum::body::Body>) -> Response {
    let Some(txn) = RequestContext::current()
        .and_then(|ctx| ctx.claims().and_then(|c| c.txn))
        .map(|t| t.to_string())
    else {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    let (parts, _body) = req.into_parts();
    let url = format!("https://{}{}", gw.orders_addr, parts.uri.path());
    let (status, body) = reply(send(&gw.orders, parts.method, url).await);
    (status, [("txn-id", txn)], body).into_response()
}
