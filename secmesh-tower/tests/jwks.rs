//! The JWKS endpoint on a real server (127.0.0.1, port 0): the three key states, Cache-Control,
//! ETag and 304, metadata, rotations picked up by the issuer and by another process, retired
//! keys leaving only after their tokens' lifetime, and jsonwebtoken reading what is published.
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode, header};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use secmesh_core::{Clock, ExpiryClass, ManualClock};
use secmesh_tokens::keyring::{KeyRing, KeyState, RingConfig};
use secmesh_tokens::{Algorithm, Issuer, KeySet, MintRequest, Verifier};
use secmesh_tower::jwks::{self, JwksLayer};
use secmesh_tower::serve::PlainServer;

const T0: u64 = 1_700_000_000;
const ISS: &str = "https://sts.mesh.test/tenant-a";

type HttpClient = Client<hyper_util::client::legacy::connect::HttpConnector, Empty<Bytes>>;

struct Server {
    addr: SocketAddr,
    client: HttpClient,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

async fn serve(layer: &JwksLayer) -> Server {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let svc = layer.service();
    tokio::spawn(
        PlainServer::new().serve_with_shutdown(listener, svc, async {
            let _ = stopped.await;
        }),
    );
    Server {
        addr,
        client: Client::builder(TokioExecutor::new()).build_http(),
        stop: Some(stop),
    }
}

impl Server {
    async fn send(
        &self,
        method: Method,
        path: &str,
        etag: Option<&str>,
    ) -> (StatusCode, HeaderMap, String) {
        let mut req = Request::builder()
            .method(method)
            .uri(format!("http://{}{path}", self.addr));
        if let Some(tag) = etag {
            req = req.header(header::IF_NONE_MATCH, tag);
        }
        let res = self
            .client
            .request(req.body(Empty::new()).unwrap())
            .await
            .unwrap();
        let (parts, body) = res.into_parts();
        let body = body.collect().await.unwrap().to_bytes();
        (
            parts.status,
            parts.headers,
            String::from_utf8(body.to_vec()).unwrap(),
        )
    }

    async fn jwks(&self) -> (String, String) {
        let (status, headers, body) = self.send(Method::GET, jwks::JWKS_PATH, None).await;
        assert_eq!(status, StatusCode::OK);
        (body, headers[header::ETAG].to_str().unwrap().to_owned())
    }

    /// The published set through the strict JWKS parser.
    async fn key_set(&self) -> KeySet {
        KeySet::from_jwks_json(&self.jwks().await.0).unwrap()
    }
}

fn kids(set: &KeySet) -> Vec<String> {
    set.kids().map(|k| k.unwrap().to_owned()).collect()
}

fn new_ring(dir: &std::path::Path, clock: &ManualClock, alg: Algorithm) -> Arc<KeyRing> {
    let config = RingConfig::default().alg(alg).issuer(ISS).max_cache(300);
    Arc::new(KeyRing::init(dir, config, Arc::new(clock.clone())).unwrap())
}

fn verifier(keys: KeySet, clock: &ManualClock) -> Verifier {
    Verifier::new(keys)
        .issuer(ISS)
        .audience("mesh.test")
        .clock(Arc::new(clock.clone()))
}

#[tokio::test]
async fn serves_next_current_and_retired_with_cache_headers_and_304() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let ring = new_ring(dir.path(), &clock, Algorithm::EdDsa);
    let server = serve(&JwksLayer::new(ring.clone())).await;

    let (status, headers, body) = server.send(Method::GET, jwks::JWKS_PATH, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers[header::CACHE_CONTROL], "public, max-age=300");
    assert_eq!(headers[header::CONTENT_TYPE], "application/jwk-set+json");
    let etag = headers[header::ETAG].to_str().unwrap().to_owned();
    assert!(
        etag.starts_with('"') && etag.ends_with('"'),
        "a strong ETag: {etag}"
    );
    assert!(!body.contains("\"d\""), "no private member");
    let first = kids(&KeySet::from_jwks_json(&body).unwrap());
    assert_eq!(
        first,
        [ring.current_kid(), ring.state().next().unwrap().kid.clone()]
    );

    // Conditional requests: the same ETag (or it among others, or weak) is 304 with no body.
    let (status, headers, body) = server.send(Method::GET, jwks::JWKS_PATH, Some(&etag)).await;
    assert_eq!(status, StatusCode::NOT_MODIFIED);
    assert!(body.is_empty());
    assert_eq!(headers[header::ETAG], etag.as_str());
    assert_eq!(headers[header::CACHE_CONTROL], "public, max-age=300");
    let listed = format!("\"other\", W/{etag}");
    assert_eq!(
        server
            .send(Method::GET, jwks::JWKS_PATH, Some(&listed))
            .await
            .0,
        StatusCode::NOT_MODIFIED
    );
    assert_eq!(
        server
            .send(Method::GET, jwks::JWKS_PATH, Some("\"other\""))
            .await
            .0,
        StatusCode::OK
    );
    let (status, headers, body) = server.send(Method::HEAD, jwks::JWKS_PATH, None).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, ""));
    assert_ne!(headers[header::CONTENT_LENGTH], "0");

    // After a rotation: three states, a new ETag, the old one no longer matches.
    clock.advance(300);
    let rot = ring.rotate(false).unwrap();
    let (body, etag2) = server.jwks().await;
    assert_ne!(etag, etag2);
    assert_eq!(
        server
            .send(Method::GET, jwks::JWKS_PATH, Some(&etag))
            .await
            .0,
        StatusCode::OK
    );
    let set = KeySet::from_jwks_json(&body).unwrap();
    assert_eq!(
        kids(&set),
        [
            rot.current.clone(),
            rot.next.clone(),
            rot.retired.clone().unwrap()
        ]
    );
    let states: Vec<KeyState> = ring.publication().kids.iter().map(|k| k.1).collect();
    assert_eq!(
        states,
        [KeyState::Current, KeyState::Next, KeyState::Retired]
    );

    // Other methods and paths.
    let (status, headers, _) = server.send(Method::POST, jwks::JWKS_PATH, None).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(headers[header::ALLOW], "GET, HEAD");
    assert_eq!(
        server.send(Method::GET, "/other", None).await.0,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn metadata_names_the_issuer_and_the_jwks_uri_where_both_specs_look() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let ring = new_ring(dir.path(), &clock, Algorithm::Es256);
    let server = serve(&JwksLayer::new(ring.clone())).await;
    for path in [
        "/.well-known/oauth-authorization-server",
        "/.well-known/openid-configuration",
        "/.well-known/oauth-authorization-server/tenant-a",
        "/tenant-a/.well-known/openid-configuration",
    ] {
        let (status, headers, body) = server.send(Method::GET, path, None).await;
        assert_eq!(status, StatusCode::OK, "{path}");
        assert_eq!(headers[header::CONTENT_TYPE], "application/json");
        let doc: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(doc["issuer"], ISS);
        assert_eq!(
            doc["jwks_uri"],
            "https://sts.mesh.test/.well-known/jwks.json"
        );
        let etag = headers[header::ETAG].to_str().unwrap().to_owned();
        assert_eq!(
            server.send(Method::GET, path, Some(&etag)).await.0,
            StatusCode::NOT_MODIFIED
        );
    }
    let custom = JwksLayer::new(ring.clone())
        .jwks_uri("https://keys.mesh.test/sts/jwks.json")
        .unwrap();
    let server = serve(&custom).await;
    let (_, _, body) = server
        .send(Method::GET, "/.well-known/openid-configuration", None)
        .await;
    assert!(
        body.contains("https://keys.mesh.test/sts/jwks.json"),
        "{body}"
    );
    assert!(
        JwksLayer::new(ring.clone())
            .issuer("sts.mesh.test")
            .is_err()
    );
    assert!(
        JwksLayer::new(ring.clone())
            .issuer("https://sts/x?y=1")
            .is_err()
    );
    assert!(JwksLayer::new(ring).jwks_uri("ftp://x/jwks").is_err());
}

#[tokio::test]
async fn tokens_signed_before_and_after_a_rotation_verify_with_the_published_set() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let ring = new_ring(dir.path(), &clock, Algorithm::EdDsa);
    let server = serve(&JwksLayer::new(ring.clone())).await;
    let issuer = Issuer::from_ring(&ring, ISS)
        .audience("mesh.test")
        .clock(Arc::new(clock.clone()));
    // A verifier that fetched the set before the rotation already knows the next key.
    let early = verifier(server.key_set().await, &clock);
    let before = issuer
        .mint(&MintRequest::new("user:alice", ExpiryClass::Medium))
        .unwrap();

    clock.advance(300);
    let rot = ring.rotate(false).unwrap();
    let after = issuer
        .mint(&MintRequest::new("user:alice", ExpiryClass::Fast))
        .unwrap();
    let late = verifier(server.key_set().await, &clock);
    for v in [&early, &late] {
        assert_eq!(v.verify(&before).unwrap().kid(), rot.retired.as_deref());
        assert_eq!(v.verify(&after).unwrap().kid(), Some(rot.current.as_str()));
    }
}

#[tokio::test]
async fn a_retired_key_is_served_until_its_last_token_has_expired() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let ring = new_ring(dir.path(), &clock, Algorithm::Es256);
    let server = serve(&JwksLayer::new(ring.clone())).await;
    let issuer = Issuer::from_ring(&ring, ISS)
        .audience("mesh.test")
        .clock(Arc::new(clock.clone()));
    clock.advance(300);
    let slow = issuer
        .mint(&MintRequest::new("user:batch", ExpiryClass::Slow))
        .unwrap();
    let rot = ring.rotate(false).unwrap();
    let old = rot.retired.unwrap();
    let retired_at = clock.now_unix();
    let retain = ring.state().retain;
    assert_eq!(retain, 86_400 + 60);

    clock.set(retired_at + retain - 1);
    let set = server.key_set().await;
    assert!(kids(&set).contains(&old));
    assert!(verifier(set, &clock).verify(&slow).is_ok());

    clock.set(retired_at + retain);
    let set = server.key_set().await;
    assert!(!kids(&set).contains(&old));
    assert!(verifier(set, &clock).verify(&slow).is_err());
}

#[tokio::test]
async fn another_process_rotating_is_picked_up_by_the_watch() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let ring = new_ring(dir.path(), &clock, Algorithm::EdDsa);
    // The serving process opens the ring and watches it; the operator's process rotates.
    let served = Arc::new(KeyRing::open(dir.path(), Arc::new(clock.clone())).unwrap());
    let watcher = jwks::watch(served.clone(), Duration::from_millis(20)).unwrap();
    let server = serve(&JwksLayer::new(served)).await;
    let (_, etag) = server.jwks().await;
    clock.advance(300);
    let rot = ring.rotate(false).unwrap();
    let mut seen = Vec::new();
    for _ in 0..500 {
        let (body, tag) = server.jwks().await;
        if tag != etag {
            seen = kids(&KeySet::from_jwks_json(&body).unwrap());
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(seen, [rot.current, rot.next, rot.retired.unwrap()]);
    watcher.shutdown().await;
}

#[tokio::test]
async fn the_layer_passes_other_requests_to_the_app() {
    use tower::ServiceExt;
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let ring = new_ring(dir.path(), &clock, Algorithm::EdDsa);
    let app = axum::Router::new()
        .route("/health", axum::routing::get(|| async { "ok" }))
        .layer(JwksLayer::new(ring));
    let res = app
        .clone()
        .oneshot(
            Request::get("/health")
                .body(axum::body::Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let res = app
        .oneshot(
            Request::get(jwks::JWKS_PATH)
                .body(axum::body::Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()[header::CACHE_CONTROL], "public, max-age=300");
}

#[tokio::test]
async fn jsonwebtoken_reads_the_published_set_and_verifies_the_issuers_tokens() {
    use jsonwebtoken::{DecodingKey, Validation, decode, decode_header, jwk::JwkSet};
    let dir = tempfile::tempdir().unwrap();
    for alg in [Algorithm::EdDsa, Algorithm::Es256] {
        let ring = new_ring(&dir.path().join(alg.as_str()), &ManualClock::new(T0), alg);
        let server = serve(&JwksLayer::new(ring.clone())).await;
        // System time: jsonwebtoken checks `exp` against the real clock.
        let issuer = Issuer::from_ring(&ring, ISS).audience("mesh.test");
        let mut tokens = vec![
            issuer
                .mint(&MintRequest::new("user:alice", ExpiryClass::Fast))
                .unwrap(),
        ];
        ring.rotate(true).unwrap();
        tokens.push(
            issuer
                .mint(&MintRequest::new("user:alice", ExpiryClass::Fast))
                .unwrap(),
        );

        let (body, _) = server.jwks().await;
        let set: JwkSet = serde_json::from_str(&body).unwrap();
        assert_eq!(set.keys.len(), 3);
        for token in &tokens {
            let header = decode_header(token).unwrap();
            let jwk = set.find(header.kid.as_deref().unwrap()).unwrap();
            let key = DecodingKey::from_jwk(jwk).unwrap();
            let mut validation = Validation::new(header.alg);
            validation.set_issuer(&[ISS]);
            validation.set_audience(&["mesh.test"]);
            let data = decode::<serde_json::Value>(token, &key, &validation).unwrap();
            assert_eq!(data.claims["sub"], "user:alice");
        }
    }
}
