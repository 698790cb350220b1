//! The edge and renewal through the Txn-Token Service, with real servers on 127.0.0.1: an
//! external bearer token in, a narrow txn-token through the mesh, and a long-running job that
//! renews without a signing key.
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::routing::any;
use bytes::Bytes;
use http::{Request, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use secmesh_core::claims::Scope;
use secmesh_core::exchange::{SubjectToken, SubjectTokenType, TxnTokenRequest};
use secmesh_core::exchange_policy::ExchangePolicy;
use secmesh_core::{Clock, ExpiryClass, ManualClock, SystemClock};
use secmesh_tokens::external::{IdpVerifier, IdpVerifiers};
use secmesh_tokens::jws::sign_compact;
use secmesh_tokens::keyring::{KeyRing, RingConfig};
use secmesh_tokens::renew::{RenewError, Renewer};
use secmesh_tokens::source::KeySource;
use secmesh_tokens::{Algorithm, KeySet, SigningKey};
use secmesh_tower::context::RequestContext;
use secmesh_tower::edge::EdgeLayer;
use secmesh_tower::serve::PlainServer;
use secmesh_tower::sts::Sts;
use serde_json::json;

const IDP: &str = "https://idp.mesh.test";
const TD: &str = "mesh.test";

const POLICY: &str = r#"
[[exchange]]
id = "gateway"
effect = "allow"
workloads = ["spiffe://mesh.test/gateway"]
subject_token_types = ["access_token"]
issuers = ["https://idp.mesh.test"]
audiences = ["mesh.test"]
scopes = ["read:orders/{sub}/**", "create:orders/{sub}/*/dispute"]

[[exchange]]
id = "reconciler-starts"
effect = "allow"
workloads = ["spiffe://mesh.test/reconciler"]
subject_token_types = ["unsigned_json", "txn_token"]
audiences = ["mesh.test"]
scopes = ["create:orders/batch/**", "read:orders/batch/**"]
max_class = "slow"
"#;

struct Fixture {
    _dir: tempfile::TempDir,
    idp_key: SigningKey,
    idps: IdpVerifiers,
    sts: Sts,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let ring =
        Arc::new(KeyRing::init(dir.path(), RingConfig::default(), Arc::new(SystemClock)).unwrap());
    let idp_key = SigningKey::generate(Algorithm::EdDsa).unwrap();
    let idps = IdpVerifiers::new().issuer(IdpVerifier::new(
        Arc::new(KeySource::fixed(KeySet::single(
            idp_key.verifying_key(Some("idp-1".into())),
        ))),
        IDP,
        "gateway",
    ));
    let sts = Sts::builder(&ring, "https://sts.mesh.test", TD)
        .idps(idps.clone())
        .policy(ExchangePolicy::from_toml(POLICY).unwrap())
        .build()
        .unwrap();
    Fixture {
        _dir: dir,
        idp_key,
        idps,
        sts,
    }
}

impl Fixture {
    fn external(&self, sub: &str, exp_in: i64) -> String {
        let now = SystemClock.now_unix() as i64;
        let c = json!({"iss": IDP, "sub": sub, "aud": "gateway", "iat": now - 10,
                       "exp": now + exp_in, "client_id": "web"});
        sign_compact(
            &self.idp_key,
            Some("idp-1"),
            Some("at+jwt"),
            c.to_string().as_bytes(),
        )
        .unwrap()
    }

    /// The gateway on a real port: the edge layer over a handler that reports the context it
    /// runs in.
    async fn gateway(&self) -> SocketAddr {
        let edge = EdgeLayer::new(
            self.idps.clone(),
            Arc::new(self.sts.for_workload("spiffe://mesh.test/gateway")),
            Arc::new(self.sts.verifier().clone()),
            TD,
        );
        let app = Router::new()
            .route(
                "/{*rest}",
                any(|| async {
                    let ctx = RequestContext::current().unwrap();
                    let c = ctx.claims().unwrap();
                    json!({
                        "sub": c.sub.as_str(),
                        "scope": c.scope.as_ref().unwrap().as_str(),
                        "req_wl": c.req_wl,
                        "rctx": c.rctx,
                        "cls": c.cls,
                        "txn": c.txn.map(|t| t.to_string()),
                    })
                    .to_string()
                }),
            )
            .layer(edge);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(PlainServer::new().serve(listener, app));
        addr
    }
}

async fn get(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
) -> (StatusCode, http::HeaderMap, String) {
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let mut req = Request::get(format!("http://{addr}{path}"));
    for (n, v) in headers {
        req = req.header(*n, *v);
    }
    let res = client
        .request(req.body(Full::default()).unwrap())
        .await
        .unwrap();
    let (parts, body) = res.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    (
        parts.status,
        parts.headers,
        String::from_utf8_lossy(&body).into_owned(),
    )
}

#[tokio::test]
async fn the_edge_exchanges_each_request_for_a_narrow_token() {
    let f = fixture();
    let gw = f.gateway().await;
    let bearer = format!("Bearer {}", f.external("alice", 300));
    let (status, _, body) = get(gw, "/orders/user:alice/42", &[("authorization", &bearer)]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let seen: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(seen["sub"], "user:alice");
    assert_eq!(seen["scope"], "read:orders/user:alice/42");
    assert_eq!(seen["req_wl"], "spiffe://mesh.test/gateway");
    assert_eq!(seen["cls"], "fast");
    assert_eq!(seen["rctx"]["authn"], "bearer");
    assert_eq!(seen["rctx"]["req_ip"], "127.0.0.1");
    assert_eq!(seen["rctx"]["client_id"], "web");
    // Each request is its own transaction.
    let (_, _, again) = get(gw, "/orders/user:alice/42", &[("authorization", &bearer)]).await;
    let again: serde_json::Value = serde_json::from_str(&again).unwrap();
    assert_ne!(again["txn"], seen["txn"]);
}

#[tokio::test]
async fn the_edge_refuses_as_rfc_6750_says() {
    let f = fixture();
    let gw = f.gateway().await;
    let alice = format!("Bearer {}", f.external("alice", 300));
    // No token.
    let (status, headers, _) = get(gw, "/orders/user:alice/1", &[]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(headers[header::WWW_AUTHENTICATE], "Bearer");
    // Expired, or from an unknown issuer.
    let expired = format!("Bearer {}", f.external("alice", -3600));
    let (status, headers, _) =
        get(gw, "/orders/user:alice/1", &[("authorization", &expired)]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(
        headers[header::WWW_AUTHENTICATE]
            .to_str()
            .unwrap()
            .contains("invalid_token")
    );
    // A txn-token from outside, even alongside a good bearer token.
    let internal = f
        .sts
        .exchange(
            "spiffe://mesh.test/reconciler",
            &TxnTokenRequest::new(
                TD,
                Scope::new("read:orders/batch/1").unwrap(),
                SubjectToken::new("{}"),
                SubjectTokenType::UnsignedJson,
            ),
        )
        .await
        .unwrap()
        .token;
    let (status, _, _) = get(
        gw,
        "/orders/batch/1",
        &[("authorization", &alice), ("txn-token", &internal)],
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // The internal token as a bearer token: not an external token.
    let (status, _, _) = get(
        gw,
        "/orders/batch/1",
        &[("authorization", &format!("Bearer {internal}"))],
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // Another user's order: the exchange policy does not grant it (403 insufficient_scope).
    let (status, headers, body) = get(gw, "/orders/user:bob/1", &[("authorization", &alice)]).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(
        headers[header::WWW_AUTHENTICATE]
            .to_str()
            .unwrap()
            .contains("insufficient_scope")
    );
    assert!(!body.contains("orders/user:bob"), "the detail stays inside");
    // An encoded path that would name another object is classified, not guessed.
    let (status, _, _) = get(
        gw,
        "/orders/user:alice/..%2F..%2Fuser:bob/1",
        &[("authorization", &alice)],
    )
    .await;
    assert_ne!(status, StatusCode::OK);
    // A method with no verb.
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let res = client
        .request(
            Request::builder()
                .method("TRACE")
                .uri(format!("http://{gw}/orders/user:alice/1"))
                .header("authorization", &alice)
                .body(Full::default())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test]
async fn a_token_without_the_requests_own_grant_is_refused_at_the_edge() {
    let f = fixture();
    // The edge asks for the request's grant and a grant the policy does allow: the service
    // narrows the first away and issues the second.
    let edge = EdgeLayer::new(
        f.idps.clone(),
        Arc::new(f.sts.for_workload("spiffe://mesh.test/gateway")),
        Arc::new(f.sts.verifier().clone()),
        TD,
    )
    .scope(
        |_: &secmesh_tokens::external::ExternalClaims,
         verb: &secmesh_core::Verb,
         object: &secmesh_core::Object| {
            Scope::from_grants([
                (verb.as_str(), object.as_str()),
                ("read", "orders/{sub}/**"),
            ])
            .ok()
        },
    );
    let app = Router::new()
        .route("/{*rest}", any(|| async { "reached" }))
        .layer(edge);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let gw = listener.local_addr().unwrap();
    tokio::spawn(PlainServer::new().serve(listener, app));
    let alice = format!("Bearer {}", f.external("alice", 300));
    let (status, headers, body) = get(gw, "/orders/user:bob/1", &[("authorization", &alice)]).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(
        headers[header::WWW_AUTHENTICATE]
            .to_str()
            .unwrap()
            .contains("insufficient_scope")
    );
    assert_ne!(body, "reached");
    let (status, _, body) = get(gw, "/orders/user:alice/1", &[("authorization", &alice)]).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "reached"));
}

#[tokio::test]
async fn a_batch_job_renews_through_the_service_without_a_key() {
    let f = fixture();
    let reconciler = Arc::new(f.sts.for_workload("spiffe://mesh.test/reconciler"));
    let first = f
        .sts
        .exchange(
            "spiffe://mesh.test/reconciler",
            &TxnTokenRequest::new(
                TD,
                Scope::new("create:orders/batch/** read:orders/batch/**").unwrap(),
                SubjectToken::new("{}"),
                SubjectTokenType::UnsignedJson,
            )
            .class(ExpiryClass::Medium),
        )
        .await
        .unwrap();
    let clock = Arc::new(ManualClock::new(SystemClock.now_unix()));
    let renewer = Renewer::through(
        reconciler,
        Arc::new(f.sts.verifier().clone()),
        first.token.clone(),
    )
    .await
    .unwrap()
    .clock(clock.clone());
    assert_eq!(
        renewer.token_async().await.unwrap(),
        first.token,
        "fresh: no renewal"
    );
    // Within the margin (a fifth of 5400 s): renewed through the service.
    clock.advance(5400 - 600);
    let second = renewer.token_async().await.unwrap();
    assert_ne!(second, first.token);
    let (a, b) = (first.claims.clone(), renewer.claims());
    assert_eq!(
        (a.txn, a.sub.as_str(), a.cls),
        (b.txn, b.sub.as_str(), b.cls)
    );
    assert_ne!(a.jti, b.jti);
    // Narrowing goes through the service; widening is refused before asking.
    renewer
        .narrow_async(Scope::new("read:orders/batch/**").unwrap())
        .await
        .unwrap();
    assert_eq!(
        renewer.claims().scope.unwrap().as_str(),
        "read:orders/batch/**"
    );
    assert!(matches!(
        renewer
            .narrow_async(Scope::new("create:orders/batch/**").unwrap())
            .await,
        Err(RenewError::Widening)
    ));
    assert!(matches!(
        renewer.narrow(Scope::new("read:orders/batch/1").unwrap()),
        Err(RenewError::NeedsAsync)
    ));
    // The synchronous token() serves the current token while it is valid.
    assert!(renewer.token().is_ok());
}
