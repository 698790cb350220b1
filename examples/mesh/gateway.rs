//! gateway (axum, the edge; plain HTTP on 127.0.0.1 for the outside): verifies the IdP's bearer
//! tokens and exchanges each for an internal fast token narrowed to the request, which travels
//! through the mesh in the `Txn-Token` header without any handler touching it.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use axum::{Extension, Router};
use http::{Request, StatusCode};
use secmesh::core::ExpiryClass;
use secmesh::tokens::cache::TokenHash;
use secmesh::tokens::{Issuer, KeySet, MintRequest, Verifier};
use secmesh::tower::AuthenticateLayer;
use secmesh::tower::audit::{AuditLayer, AuditSlot};
use secmesh::tower::authorize::{Classify, DefaultClassifier};
use secmesh::tower::context::RequestContext;
use secmesh::tower::deny::{DenialResponse, ProblemJson};
use secmesh::tower::extract::Claims;
use secmesh::tower::serve::{PlainServer, ServerLimits};

use crate::idp::Idp;
use crate::node::{HttpsClient, Node, reply, send};
use crate::{IDP, TRUST_DOMAIN};

#[derive(Clone)]
struct Gateway {
    orders: HttpsClient,
    orders_addr: SocketAddr,
    mesh: Arc<Issuer>,
    mesh_verifier: Arc<Verifier>,
}

/// Serves the gateway on a new port of 127.0.0.1 and returns its address; it accepts `idp`'s
/// bearer tokens and mints internal ones with `mesh`.
pub(crate) async fn start(
    node: &Node,
    idp: &Idp,
    orders_addr: SocketAddr,
    mesh: Arc<Issuer>,
    mesh_keys: &Arc<KeySet>,
) -> Result<SocketAddr, Box<dyn std::error::Error>> {
    let idp_verifier = Verifier::new(KeySet::from_jwks_json(&idp.jwks)?)
        .issuer(IDP)
        .audience("gateway")
        .max_class(ExpiryClass::Medium);
    let state = Gateway {
        orders: node.client_to(orders_addr, "spiffe://mesh.test/orders"),
        orders_addr,
        mesh,
        mesh_verifier: Arc::new(Verifier::new(mesh_keys.clone())),
    };
    let app = Router::new()
        .route("/orders/{*rest}", any(edge))
        .with_state(state)
        .layer(AuthenticateLayer::from_verifier(idp_verifier, 10_000).accept_bearer())
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

/// Exchange the caller's external token for an internal fast token narrowed to this request
/// (never wider than the subject's own objects), then forward to orders inside its context.
async fn edge(
    State(gw): State<Gateway>,
    Extension(slot): Extension<AuditSlot>,
    external: Claims,
    req: Request<axum::body::Body>,
) -> Response {
    // The library's classification: the same verb mapping and canonical object as every
    // service (a refused path or method is answered, and audited, as a denial).
    let (parts, _body) = req.into_parts();
    let (verb, object) = match DefaultClassifier.classify(&parts) {
        Ok(c) => c,
        Err(e) => return ProblemJson.response(&parts.headers, &e.denial()),
    };
    let path = parts.uri.path().to_owned();
    let (verb, object) = (verb.as_str(), object.as_str());
    let mut mint = MintRequest::new(external.sub.clone(), ExpiryClass::Fast)
        .grant(verb, object)
        .req_wl(format!("spiffe://{TRUST_DOMAIN}/gateway"));
    // What orders will ask downstream for this request, and nothing else.
    if let [_, user, order, rest @ ..] = object.split('/').collect::<Vec<_>>().as_slice() {
        match rest {
            [] => {
                mint = mint
                    .grant("read", &format!("payments/{user}/{order}"))
                    .grant("call", "inventory.v1.Inventory/Reserve");
            }
            ["dispute"] => {
                mint = mint
                    .grant("create", &format!("payments/{user}/{order}/dispute"))
                    .grant("create", &format!("orders/{user}/{order}/refund"));
            }
            _ => {}
        }
    }
    let minted = gw
        .mesh
        .mint(&mint)
        .map_err(|e| e.to_string())
        .and_then(|token| {
            let verified = gw.mesh_verifier.verify(&token).map_err(|e| e.to_string())?;
            Ok((token, Arc::new(verified)))
        });
    let (internal, verified) = match minted {
        Ok(m) => m,
        Err(e) => {
            // The reason goes to the log; the caller gets the status only.
            eprintln!("gateway: token exchange failed: {e}");
            return StatusCode::INTERNAL_SERVER_ERROR.into_response();
        }
    };
    let txn = verified
        .claims()
        .txn
        .map(|t| t.to_string())
        .unwrap_or_default();
    let ctx = RequestContext::authenticated(&internal, TokenHash::of(&internal), verified, None);
    slot.set_context(&ctx);
    let url = format!("https://{}{path}", gw.orders_addr);
    let (status, body) = reply(ctx.scope(send(&gw.orders, parts.method, url)).await);
    (status, [("txn-id", txn)], body).into_response()
}
