//! The identity provider (simulated): its own Ed25519 key, published as a JWKS over plain HTTP
//! on 127.0.0.1; it issues RFC 9068 access tokens (`typ: at+jwt`) to users. Its tokens stay
//! outside the mesh: the gateway verifies them and the token service exchanges them.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::routing::get;
use secmesh::tokens::external::{IdpVerifier, IdpVerifiers};
use secmesh::tokens::jws::sign_compact;
use secmesh::tokens::source::{KeySource, SourceError};
use secmesh::tokens::{Algorithm, JwkSet, SigningKey};
use secmesh::tower::serve::{PlainServer, ServerLimits};

use crate::IDP;

/// The audience of the IdP's access tokens: the mesh's edge, as its client.
const AUDIENCE: &str = "gateway";

/// How long an access token lives.
const LIFETIME: u64 = 5400;

pub(crate) struct Idp {
    key: SigningKey,
    jwks: String,
    jti: AtomicU64,
}

impl Idp {
    pub(crate) fn new() -> Idp {
        let key = SigningKey::generate(Algorithm::EdDsa).unwrap();
        let jwks = JwkSet {
            keys: vec![key.verifying_key(Some("idp-1".into())).to_jwk()],
        }
        .to_json();
        Idp {
            key,
            jwks,
            jti: AtomicU64::new(1),
        }
    }

    /// Serves the IdP's JWKS at `http://127.0.0.1:PORT/jwks.json` and returns that URL.
    pub(crate) async fn serve(&self) -> std::io::Result<String> {
        let jwks = self.jwks.clone();
        let app = Router::new().route(
            "/jwks.json",
            get(move || async move { ([("content-type", "application/jwk-set+json")], jwks) }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        tokio::spawn(
            PlainServer::new()
                .limits(ServerLimits::default())
                .serve(listener, app),
        );
        Ok(format!("http://{addr}/jwks.json"))
    }

    /// An access token for `user` (the IdP's subject; the mesh's is `user:` + it).
    pub(crate) fn token(&self, user: &str) -> String {
        self.sign(user, now())
    }

    /// A token issued three hours ago (expired an hour and a half ago).
    pub(crate) fn expired_token(&self, user: &str) -> String {
        self.sign(user, now() - 3 * 3600)
    }

    fn sign(&self, user: &str, iat: u64) -> String {
        let jti = self.jti.fetch_add(1, Ordering::Relaxed);
        let claims = serde_json::json!({
            "iss": IDP, "sub": user, "aud": AUDIENCE,
            "iat": iat, "exp": iat + LIFETIME, "jti": format!("idp-{iat}-{jti}"),
        });
        sign_compact(
            &self.key,
            Some("idp-1"),
            Some("at+jwt"),
            claims.to_string().as_bytes(),
        )
        .unwrap()
    }
}

/// A verifier of the IdP's access tokens whose keys come from `jwks_url` (fetched now, then
/// refreshed; plain HTTP allowed: the IdP listens on loopback).
pub(crate) async fn verifiers(jwks_url: &str) -> Result<IdpVerifiers, SourceError> {
    let keys: Arc<KeySource> = KeySource::jwks_url(jwks_url)
        .allow_http(true)
        .build()
        .await?;
    Ok(IdpVerifiers::new().issuer(IdpVerifier::new(keys, IDP, AUDIENCE)))
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}
