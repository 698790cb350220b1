//! secmesh in one screen: make a signing key and its JWKS, mint a token in each expiry class,
//! verify them from async tasks, and check them against a route that accepts at most `medium`
//! (what the server stack's `max_class` does for a route).
//!
//! ```text
//! cargo run --example quickstart
//! ```
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use secmesh::core::{ExpiryClass, ManualClock};
use secmesh::tokens::{Algorithm, ErrorKind, Issuer, KeySet, MintRequest, SigningKey, Verifier};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("backend: {}", secmesh::tokens::BACKEND);

    // 1. A key for the gateway, and the key set every service verifies with.
    let key = SigningKey::generate(Algorithm::EdDsa)?;
    let keys = KeySet::single(key.verifying_key(Some("gw-2026-11".into())));
    println!("JWKS: {}", keys.to_jwks().to_json());

    // 2. The gateway mints; a manual clock lets us show expiry without waiting.
    let clock = Arc::new(ManualClock::new(1_800_000_000));
    let issuer = Issuer::new(key, "gw-2026-11", "https://gw.mesh.test")
        .audience("mesh.test")
        .clock(clock.clone());

    // 3. A service verifies (signature, issuer, audience, time, and the lifetime bound of the
    //    class the token claims). Its route takes fast and medium tokens, not slow ones: in a
    //    service that is `SecureLayer::builder(..).max_class(ExpiryClass::Medium)`.
    let verifier = Arc::new(
        Verifier::new(keys)
            .issuer("https://gw.mesh.test")
            .audience("mesh.test")
            .clock(clock.clone()),
    );
    let route_max = ExpiryClass::Medium;

    let mut tasks = Vec::new();
    for class in ExpiryClass::ALL {
        let token = issuer.mint(
            &MintRequest::new("user:alice", class)
                .grant("read", "orders/*")
                .actor("spiffe://mesh.test/gateway"),
        )?;
        let verifier = verifier.clone();
        // Verification is synchronous and takes microseconds: call it from any task.
        tasks.push(tokio::spawn(async move {
            let outcome = match verifier.verify(&token) {
                Ok(claims) if !claims.cls.accepted_by(route_max) => {
                    format!(
                        "refused on this route: class_not_allowed ({} > {route_max})",
                        claims.cls
                    )
                }
                Ok(claims) => format!(
                    "accepted: sub={} txn={} lifetime={}s scope={:?}",
                    claims.sub,
                    claims.txn.map(|t| t.to_string()).unwrap_or_default(),
                    claims.lifetime(),
                    claims.scope.as_ref().map(|s| s.as_str()),
                ),
                Err(e) => format!("refused: {e}"),
            };
            (class, token.len(), outcome)
        }));
    }
    for task in tasks {
        let (class, len, outcome) = task.await?;
        println!("{:>6} token ({len} bytes): {outcome}", class.as_str());
    }

    // 4. Time moves on: a fast token is dead three minutes (plus skew) later.
    let fast = issuer.mint(&MintRequest::new("user:alice", ExpiryClass::Fast))?;
    clock.advance(180 + 60);
    let err = verifier.verify(&fast).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Expired);
    println!("after 240 s the fast token is refused: {err}");
    Ok(())
}
