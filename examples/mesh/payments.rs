//! payments (axum, mutual TLS): reports a payment, and takes disputes, for which it asks orders
//! for the refund itself with the user's token — a confused deputy the policy refuses.

use std::net::SocketAddr;

use axum::Router;
use axum::extract::{Path as UrlPath, State};
use axum::routing::{get, post};
use http::{Method, StatusCode};
use secmesh::core::ExpiryClass;
use secmesh::core::policy::SharedPolicy;
use secmesh::tls::config::ClientAuth;
use secmesh::tokens::Verifier;
use secmesh::tower::tls::TlsServer;
use tokio::net::TcpListener;

use crate::node::{HttpsClient, Node, reply, send};

#[derive(Clone)]
struct Payments {
    orders: HttpsClient,
    orders_addr: SocketAddr,
}

/// Serves payments on `listener`; its disputes call orders at `orders_addr`.
pub(crate) fn start(
    node: &Node,
    listener: TcpListener,
    orders_addr: SocketAddr,
    verifier: &Verifier,
    policy: &SharedPolicy,
) {
    let app = node.secure(
        Router::new()
            .route("/payments/{user}/{order}", get(payment_status))
            .route("/payments/{user}/{order}/dispute", post(dispute))
            .with_state(Payments {
                orders: node.client_to(orders_addr, "spiffe://mesh.test/orders"),
                orders_addr,
            }),
        verifier,
        policy,
        ExpiryClass::Fast,
    );
    tokio::spawn(
        TlsServer::from_workload(&node.workload, ClientAuth::Required).serve(listener, app),
    );
}

async fn payment_status(UrlPath((user, order)): UrlPath<(String, String)>) -> String {
    format!("{user} paid for order {order}")
}

/// A dispute: payments then asks orders for the refund itself, with the user's token (the
/// layers carry it) — a confused deputy: the policy only takes refunds from the gateway.
async fn dispute(
    State(p): State<Payments>,
    UrlPath((user, order)): UrlPath<(String, String)>,
) -> (StatusCode, String) {
    let url = format!("https://{}/orders/{user}/{order}/refund", p.orders_addr);
    let (status, body) = reply(send(&p.orders, Method::POST, url).await);
    (status, format!("refund through orders: {status} {body}"))
}
