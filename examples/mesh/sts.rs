//! sts (the Txn-Token Service, mutual TLS): the one node with a signing key. It turns the
//! gateway's IdP tokens and the reconciler's own requests into txn-tokens as the exchange
//! policy (`exchange.toml`) allows, replaces (renews) them, signs with its key ring's current
//! key, records every exchange in its audit log, and publishes the ring's keys at
//! `/.well-known/jwks.json` on the same listener, where every service fetches them.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use axum::Router;
use secmesh::core::SystemClock;
use secmesh::core::exchange_policy::ExchangePolicy;
use secmesh::tls::config::ClientAuth;
use secmesh::tokens::keyring::{KeyRing, RingConfig};
use secmesh::tower::jwks::JwksLayer;
use secmesh::tower::serve::ServerLimits;
use secmesh::tower::sts::{Sts, TxnTokenService};
use secmesh::tower::tls::TlsServer;
use tower::Layer;

use crate::node::Node;
use crate::{MESH_AUD, STS_ISS, idp};

/// Who may exchange what for txn-tokens.
const EXCHANGE: &str = include_str!("exchange.toml");

/// The running token service.
pub(crate) struct TokenService {
    pub(crate) addr: SocketAddr,
    /// Its signing keys (`DIR/sts-keys/`, recreated on every run): rotated in the scenario.
    pub(crate) ring: Arc<KeyRing>,
}

/// Serves the token service on a new port of 127.0.0.1: `POST /token` and the JWKS. It
/// accepts the access tokens of the IdP whose keys are at `idp_jwks`.
pub(crate) async fn start(
    node: &Node,
    audit_dir: &Path,
    idp_jwks: &str,
) -> Result<TokenService, Box<dyn std::error::Error>> {
    let dir = audit_dir.join("sts-keys");
    if dir.exists() {
        std::fs::remove_dir_all(&dir)?;
    }
    let ring = Arc::new(KeyRing::init(
        &dir,
        RingConfig::default().issuer(STS_ISS),
        Arc::new(SystemClock),
    )?);
    let sts = Sts::builder(&ring, STS_ISS, MESH_AUD)
        .policy(ExchangePolicy::from_toml(EXCHANGE)?)
        // The mesh subject of the IdP's `alice` is `user:alice` (the default prefix).
        .idps(idp::verifiers(idp_jwks).await?)
        .auditor(node.auditor.clone(), node.name)
        .build()?;
    let app = JwksLayer::new(ring.clone()).issuer(STS_ISS)?.layer(
        Router::new().route_service("/token", TxnTokenService::<axum::body::Body>::new(sts)),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(
        TlsServer::from_workload(&node.workload, ClientAuth::Required)
            .limits(ServerLimits::default())
            .serve(listener, app),
    );
    Ok(TokenService { addr, ring })
}
