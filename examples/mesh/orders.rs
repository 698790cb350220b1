//! orders (axum, mutual TLS): reads an order by asking payments (HTTP) and inventory (gRPC),
//! takes disputes and refunds, and has a batch route, the one that accepts slow tokens.

use std::net::SocketAddr;

use axum::Router;
use axum::extract::{Path as UrlPath, State};
use axum::routing::{get, post};
use http::{Method, StatusCode};
use secmesh::core::ExpiryClass;
use secmesh::core::policy::SharedPolicy;
use secmesh::tls::config::ClientAuth;
use secmesh::tokens::Verifier;
use secmesh::tower::extract::{Claims, Peer};
use secmesh::tower::tls::TlsServer;
use tokio::net::TcpListener;

use crate::inventory::{self, GrpcChannel};
use crate::node::{HttpsClient, Node, reply, send};

#[derive(Clone)]
struct Orders {
    payments: HttpsClient,
    payments_addr: SocketAddr,
    inventory: GrpcChannel,
    inventory_addr: SocketAddr,
}

/// Serves orders on `listener`; it calls payments and inventory at their addresses.
pub(crate) fn start(
    node: &Node,
    listener: TcpListener,
    payments_addr: SocketAddr,
    inventory_addr: SocketAddr,
    verifier: &Verifier,
    policy: &SharedPolicy,
) -> Result<(), Box<dyn std::error::Error>> {
    let state = Orders {
        payments: node.client_to(payments_addr, "spiffe://mesh.test/payments"),
        payments_addr,
        inventory: inventory::channel(node, inventory_addr)?,
        inventory_addr,
    };
    let api = Router::new()
        .route("/orders/{user}/{order}", get(get_order))
        .route("/orders/{user}/{order}/dispute", post(dispute_order))
        .route("/orders/{user}/{order}/refund", post(refund))
        .with_state(state);
    // The batch route is the one that accepts slow tokens.
    let batch = Router::new().route("/orders/batch/reconcile", post(reconcile));
    let app = node
        .secure(api, verifier, policy, ExpiryClass::Fast)
        .merge(node.secure(batch, verifier, policy, ExpiryClass::Slow));
    tokio::spawn(
        TlsServer::from_workload(&node.workload, ClientAuth::Required).serve(listener, app),
    );
    Ok(())
}

/// Reads the order: asks payments (HTTP) and inventory (gRPC). The token travels by itself.
async fn get_order(
    State(o): State<Orders>,
    UrlPath((user, order)): UrlPath<(String, String)>,
) -> (StatusCode, String) {
    let url = format!("https://{}/payments/{user}/{order}", o.payments_addr);
    let (paid, reserved) = tokio::join!(
        send(&o.payments, Method::GET, url),
        inventory::reserve(o.inventory.clone(), o.inventory_addr)
    );
    let (status, paid) = reply(paid);
    let reserved = match reserved {
        Ok(r) => format!("stock reserved for {} (asked by {})", r.sub, r.caller),
        Err(s) => format!("inventory said {:?}", s.code()),
    };
    (status, format!("order {order}: {paid}; {reserved}"))
}

async fn dispute_order(
    State(o): State<Orders>,
    UrlPath((user, order)): UrlPath<(String, String)>,
) -> (StatusCode, String) {
    let url = format!(
        "https://{}/payments/{user}/{order}/dispute",
        o.payments_addr
    );
    reply(send(&o.payments, Method::POST, url).await)
}

async fn refund(UrlPath((_user, order)): UrlPath<(String, String)>) -> String {
    format!("order {order} refunded")
}

async fn reconcile(claims: Claims, Peer(peer): Peer) -> String {
    format!(
        "batch reconciled by {} ({}) with a {} token",
        claims.sub, peer.spiffe_id, claims.cls
    )
}
