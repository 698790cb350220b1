//! Backpressure passes through every layer: when the inner service is not ready, neither is
//! the stack, and a ready stack forwards exactly the request it was given.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use http::{Request, Response};
use secmesh_core::ExpiryClass;
use secmesh_core::policy::{Format, Policy, SharedPolicy};
use secmesh_tokens::{Algorithm, Issuer, KeySet, MintRequest, SigningKey, Verifier};
use secmesh_tower::{AuthenticateLayer, AuthorizeLayer, PropagateLayer};
use tokio_test::{assert_pending, assert_ready_ok};
use tower::ServiceBuilder;
use tower_test::mock;

#[tokio::test]
async fn poll_ready_is_forwarded() {
    let key = SigningKey::from_hmac_secret(Algorithm::Hs256, &[5; 32]).unwrap();
    let verifier = Verifier::new(Arc::new(KeySet::single(
        key.verifying_key(Some("k".into())),
    )));
    let token = Issuer::new(key, "k", "i")
        .audience("a")
        .mint(&MintRequest::new("user:a", ExpiryClass::Fast))
        .unwrap();
    let policy = Policy::parse(
        "[[rule]]\nid = \"r\"\neffect = \"allow\"\nsubjects = [\"*\"]\nverbs = [\"read\"]\nobjects = [\"**\"]\n",
        Format::Toml,
    )
    .unwrap();
    let layers = ServiceBuilder::new()
        .layer(AuthenticateLayer::from_verifier(verifier, 10))
        .layer(AuthorizeLayer::new(SharedPolicy::new(policy)))
        .layer(PropagateLayer::new(["upstream.test"]));
    let (mut svc, mut handle) =
        mock::spawn_with(|inner: mock::Mock<Request<String>, Response<String>>| {
            layers.service(inner)
        });

    handle.allow(0);
    assert_pending!(svc.poll_ready());

    handle.allow(1);
    assert_ready_ok!(svc.poll_ready());
    let req = Request::get("/x")
        .header("txn-token", &token)
        .body(String::new())
        .unwrap();
    let fut = tokio::spawn(svc.call(req));
    let (got, send) = handle.next_request().await.unwrap();
    assert_eq!(got.uri().path(), "/x");
    send.send_response(Response::new("done".to_owned()));
    assert_eq!(fut.await.unwrap().unwrap().into_body(), "done");
}
