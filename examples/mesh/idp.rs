//! The identity provider (simulated): its own Ed25519 key, published as a JWKS; it issues
//! external bearer tokens to users.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use secmesh::core::{ExpiryClass, ManualClock};
use secmesh::tokens::{Algorithm, Issuer, JwkSet, MintRequest, SigningKey};

use crate::IDP;

pub(crate) struct Idp {
    issuer: Issuer,
    key_pem: zeroize::Zeroizing<String>,
    /// The IdP's public keys, as the gateway fetches them.
    pub(crate) jwks: String,
}

impl Idp {
    pub(crate) fn new() -> Idp {
        let key = SigningKey::generate(Algorithm::EdDsa).unwrap();
        let jwks = JwkSet {
            keys: vec![key.verifying_key(Some("idp-1".into())).to_jwk()],
        }
        .to_json();
        let key_pem = key.to_pkcs8_pem().unwrap();
        Idp {
            issuer: Issuer::new(key, "idp-1", IDP).audience("gateway"),
            key_pem,
            jwks,
        }
    }

    /// A bearer token for `user`, a medium-class session token.
    pub(crate) fn token(&self, user: &str) -> String {
        self.issuer
            .mint(&MintRequest::new(
                format!("user:{user}"),
                ExpiryClass::Medium,
            ))
            .unwrap()
    }

    /// A token minted three hours ago (expired an hour and a half ago).
    pub(crate) fn expired_token(&self, user: &str) -> String {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let key = SigningKey::from_pkcs8_pem(Algorithm::EdDsa, &self.key_pem).unwrap();
        Issuer::new(key, "idp-1", IDP)
            .audience("gateway")
            .clock(Arc::new(ManualClock::new(now - 3 * 3600)))
            .mint(&MintRequest::new(
                format!("user:{user}"),
                ExpiryClass::Medium,
            ))
            .unwrap()
    }
}
