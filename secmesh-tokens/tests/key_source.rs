//! Live key sources against real HTTP(S) servers on 127.0.0.1 (no mocks): unknown-kid floods,
//! rotation under load, single-flight, a server that goes down and comes back, hostile answers,
//! OIDC / RFC 8414 discovery, https with mutual TLS, several issuers.
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use secmesh_core::ExpiryClass;
use secmesh_tokens::multi::MultiVerifier;
use secmesh_tokens::source::{KeySource, SourceError, Startup};
use secmesh_tokens::{
    ActiveKey, Algorithm, ErrorKind, Issuer, KeySet, LiveKey, MintRequest, SigningKey, Verifier,
};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;

// ---------------------------------------------------------------------------------------------
// A small HTTP server: answers by path, counts hits, can drop every connection ("down").

#[derive(Clone)]
struct Route {
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: String,
}

impl Route {
    fn ok(body: impl Into<String>) -> Route {
        Route {
            status: 200,
            headers: vec![("cache-control", "max-age=0".into())],
            body: body.into(),
        }
    }
}

#[derive(Default)]
struct State {
    routes: Mutex<HashMap<String, Route>>,
    hits: Mutex<HashMap<String, usize>>,
    down: AtomicBool,
}

impl State {
    fn set(&self, path: &str, route: Route) {
        self.routes.lock().unwrap().insert(path.to_owned(), route);
    }
    fn hits(&self, path: &str) -> usize {
        self.hits.lock().unwrap().get(path).copied().unwrap_or(0)
    }
}

async fn answer(state: Arc<State>, req: Request<hyper::body::Incoming>) -> Response<Full<Bytes>> {
    let path = req.uri().path().to_owned();
    *state.hits.lock().unwrap().entry(path.clone()).or_default() += 1;
    let route = state.routes.lock().unwrap().get(&path).cloned();
    let Some(route) = route else {
        let mut res = Response::new(Full::new(Bytes::from_static(b"not found")));
        *res.status_mut() = hyper::StatusCode::NOT_FOUND;
        return res;
    };
    let mut res = Response::new(Full::new(Bytes::from(route.body)));
    *res.status_mut() = hyper::StatusCode::from_u16(route.status).unwrap();
    for (name, value) in route.headers {
        res.headers_mut().insert(name, value.parse().unwrap());
    }
    res
}

/// Serve `state` on 127.0.0.1:0, over TLS when `tls` is given.
async fn serve(state: Arc<State>, tls: Option<Arc<rustls::ServerConfig>>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            if state.down.load(Ordering::SeqCst) {
                drop(tcp);
                continue;
            }
            let state = state.clone();
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req| {
                    let state = state.clone();
                    async move { Ok::<_, Infallible>(answer(state, req).await) }
                });
                let http = hyper::server::conn::http1::Builder::new();
                match acceptor {
                    Some(acceptor) => {
                        if let Ok(tls) = acceptor.accept(tcp).await {
                            let _ = http.serve_connection(TokioIo::new(tls), svc).await;
                        }
                    }
                    None => {
                        let _ = http.serve_connection(TokioIo::new(tcp), svc).await;
                    }
                }
            });
        }
    });
    addr
}

// ---------------------------------------------------------------------------------------------
// Keys and tokens.

const ISS: &str = "https://gw.mesh.test";

struct Signer {
    keys: Vec<(String, Arc<SigningKey>)>,
    live: LiveKey,
    issuer: Issuer,
}

impl Signer {
    fn new(iss: &str, kid: &str) -> Signer {
        let key = Arc::new(SigningKey::generate(Algorithm::EdDsa).unwrap());
        let live = LiveKey::new(key.clone(), kid);
        Signer {
            keys: vec![(kid.to_owned(), key)],
            issuer: Issuer::live(live.clone(), iss).audience("mesh.test"),
            live,
        }
    }

    /// Publish a new key (not signing yet); its kid.
    fn add_next(&mut self, kid: &str) {
        let key = Arc::new(SigningKey::generate(Algorithm::EdDsa).unwrap());
        self.keys.push((kid.to_owned(), key));
    }

    /// Sign with the key `kid` from now on.
    fn promote(&self, kid: &str) {
        let key = self.keys.iter().find(|(k, _)| k == kid).unwrap().1.clone();
        self.live.replace(ActiveKey::new(key, kid));
    }

    /// Stop publishing the key `kid`.
    fn retire(&mut self, kid: &str) {
        self.keys.retain(|(k, _)| k != kid);
    }

    fn jwks(&self) -> String {
        let mut set = KeySet::new();
        for (kid, key) in &self.keys {
            set.insert(key.verifying_key(Some(kid.clone()))).unwrap();
        }
        set.to_jwks().to_json()
    }

    fn mint(&self) -> String {
        self.issuer
            .mint(&MintRequest::new("user:alice", ExpiryClass::Fast))
            .unwrap()
    }

    /// A token signed by the current key under another `kid`.
    fn mint_as(&self, kid: &str) -> String {
        let key = self.keys[0].1.clone();
        Issuer::new(key, kid, ISS)
            .audience("mesh.test")
            .mint(&MintRequest::new("user:mallory", ExpiryClass::Fast))
            .unwrap()
    }
}

fn verifier(source: Arc<KeySource>) -> Verifier {
    Verifier::with_source(source)
        .issuer(ISS)
        .audience("mesh.test")
}

async fn jwks_server(signer: &Signer) -> (Arc<State>, String) {
    let state = Arc::new(State::default());
    state.set("/jwks.json", Route::ok(signer.jwks()));
    let addr = serve(state.clone(), None).await;
    (state, format!("http://{addr}/jwks.json"))
}

// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_kid_flood_fetches_at_most_once_per_interval() {
    let signer = Signer::new(ISS, "k1");
    let (state, url) = jwks_server(&signer).await;
    let source = KeySource::jwks_url(&url)
        .allow_http(true)
        .build()
        .await
        .unwrap();
    let verifier = Arc::new(verifier(source.clone()));
    assert_eq!(state.hits("/jwks.json"), 1);

    let tokens: Vec<String> = (0..10_000)
        .map(|i| {
            signer.mint_as(&format!(
                "rnd-{:x}",
                (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)
            ))
        })
        .collect();
    let started = Instant::now();
    let mut tasks = Vec::new();
    for token in tokens {
        let verifier = verifier.clone();
        tasks.push(tokio::spawn(
            async move { verifier.verify_async(&token).await },
        ));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap().unwrap_err().kind(), ErrorKind::UnknownKid);
    }
    let elapsed = started.elapsed();
    let fetches = state.hits("/jwks.json") - 1;
    println!(
        "unknown-kid flood: 10000 verify_async in {elapsed:?}, {fetches} fetch(es) at the server"
    );
    assert!(fetches <= 1, "{fetches} fetches");
    assert_eq!(source.status().unknown_kid_refreshes, 1);
    // The known kid still verifies.
    assert_eq!(
        verifier.verify_async(&signer.mint()).await.unwrap().sub,
        "user:alice"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_flight_one_fetch_for_a_hundred_waiters() {
    let mut signer = Signer::new(ISS, "k1");
    let (state, url) = jwks_server(&signer).await;
    let source = KeySource::jwks_url(&url)
        .allow_http(true)
        .build()
        .await
        .unwrap();
    let verifier = Arc::new(verifier(source));
    // A new key starts signing before the verifier has seen it.
    signer.add_next("k2");
    signer.promote("k2");
    state.set("/jwks.json", Route::ok(signer.jwks()));
    let token = Arc::new(signer.mint());
    let barrier = Arc::new(tokio::sync::Barrier::new(100));
    let mut tasks = Vec::new();
    for _ in 0..100 {
        let (verifier, token, barrier) = (verifier.clone(), token.clone(), barrier.clone());
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            verifier.verify_async(&token).await
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap().unwrap().kid(), Some("k2"));
    }
    assert_eq!(
        state.hits("/jwks.json"),
        2,
        "the first fetch and one refresh"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_under_load_fails_no_request() {
    let mut signer = Signer::new(ISS, "k1");
    let (state, url) = jwks_server(&signer).await;
    let max_refresh = Duration::from_millis(100);
    let build = || {
        KeySource::jwks_url(&url)
            .allow_http(true)
            .refresh(Duration::from_millis(50), max_refresh)
            .build()
    };
    let verifiers = [
        Arc::new(verifier(build().await.unwrap())),
        Arc::new(verifier(build().await.unwrap())),
    ];
    let signer_slot = Arc::new(Mutex::new(signer.mint()));
    let stop = Arc::new(AtomicBool::new(false));
    let (requests, failures) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for v in &verifiers {
        let (v, slot, stop) = (v.clone(), signer_slot.clone(), stop.clone());
        let (requests, failures) = (requests.clone(), failures.clone());
        tasks.push(tokio::spawn(async move {
            while !stop.load(Ordering::SeqCst) {
                let token = slot.lock().unwrap().clone();
                requests.fetch_add(1, Ordering::Relaxed);
                if let Err(e) = v.verify_async(&token).await {
                    eprintln!("failed: {e}");
                    failures.fetch_add(1, Ordering::Relaxed);
                }
                tokio::task::yield_now().await;
            }
        }));
    }
    for round in 2..=4 {
        let (old, new) = (format!("k{}", round - 1), format!("k{round}"));
        // Published as next for more than one refresh period before it signs.
        signer.add_next(&new);
        state.set("/jwks.json", Route::ok(signer.jwks()));
        tokio::time::sleep(max_refresh * 3).await;
        signer.promote(&new);
        for _ in 0..20 {
            *signer_slot.lock().unwrap() = signer.mint();
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // No token of the old key is in flight any more: retire it.
        signer.retire(&old);
        state.set("/jwks.json", Route::ok(signer.jwks()));
        tokio::time::sleep(max_refresh * 3).await;
    }
    stop.store(true, Ordering::SeqCst);
    for t in tasks {
        t.await.unwrap();
    }
    let (requests, failures) = (
        requests.load(Ordering::Relaxed),
        failures.load(Ordering::Relaxed),
    );
    println!(
        "rotation: 3 rotations, {requests} verifications on 2 verifiers, {failures} failed, {:?}, {} JWKS fetches",
        started.elapsed(),
        state.hits("/jwks.json")
    );
    assert_eq!(failures, 0);
    assert!(requests > 100);
    assert_eq!(
        verifiers[0].keys().kids().flatten().collect::<Vec<_>>(),
        ["k4"]
    );
    for v in &verifiers {
        assert_eq!(
            v.source().status().unknown_kid_refreshes,
            0,
            "the refresh saw every key first"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_down_serves_stale_until_max_staleness_then_recovers() {
    let signer = Signer::new(ISS, "k1");
    let (state, url) = jwks_server(&signer).await;
    let staleness = Duration::from_millis(1200);
    let source = KeySource::jwks_url(&url)
        .allow_http(true)
        .refresh(Duration::from_millis(100), Duration::from_millis(100))
        .retry(Duration::from_millis(50), Duration::from_millis(100))
        .max_staleness(staleness)
        .build()
        .await
        .unwrap();
    let verifier = verifier(source.clone());
    let token = signer.mint();
    assert!(verifier.verify(&token).is_ok());

    state.down.store(true, Ordering::SeqCst);
    let down_at = Instant::now();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        verifier.verify(&token).is_ok(),
        "the stale set still verifies"
    );
    let status = source.status();
    assert!(status.failures >= 1, "{status:?}");
    assert!(status.last_error.is_some());
    assert!(!status.unavailable);

    tokio::time::sleep(staleness + Duration::from_millis(200) - down_at.elapsed().min(staleness))
        .await;
    let err = verifier.verify(&token).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::KeysUnavailable);
    assert_eq!(err.kind().as_str(), "keys_unavailable");
    assert!(source.status().unavailable);

    state.down.store(false, Ordering::SeqCst);
    let back = Instant::now();
    while verifier.verify(&token).is_err() {
        assert!(back.elapsed() < Duration::from_secs(3), "no recovery");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let status = source.status();
    assert!(
        !status.unavailable && status.last_error.is_none(),
        "{status:?}"
    );
}

/// A source on a good set, then `bad` is served: the fetch fails as `check` says, within the
/// timeout, and the good set stays.
async fn last_good_set_stays(bad: Route, check: impl Fn(&SourceError) -> bool) {
    let signer = Signer::new(ISS, "k1");
    let (state, url) = jwks_server(&signer).await;
    let source = KeySource::jwks_url(&url)
        .allow_http(true)
        .timeout(Duration::from_secs(1))
        .build()
        .await
        .unwrap();
    let verifier = verifier(source.clone());
    state.set("/jwks.json", bad);
    let started = Instant::now();
    let err = source.refresh().await.unwrap_err();
    assert!(check(&err), "{err:?}");
    // The 1 s timeout, with room for a loaded machine.
    assert!(started.elapsed() < Duration::from_millis(2500));
    assert!(
        verifier.verify(&signer.mint()).is_ok(),
        "the last good set stays"
    );
    assert_eq!(source.status().failures, 1);
}

#[tokio::test]
async fn malformed_json_keeps_the_last_good_set() {
    last_good_set_stays(Route::ok(r#"{"keys": [ {"kty": "#), |e| {
        matches!(e, SourceError::Keys(_))
    })
    .await;
    last_good_set_stays(Route::ok(r#"{"keys": []}"#), |e| {
        matches!(e, SourceError::Keys(_))
    })
    .await;
}

#[tokio::test]
async fn oversized_body_is_refused() {
    let big = format!(r#"{{"keys": [], "pad": "{}"}}"#, "x".repeat(300 * 1024));
    last_good_set_stays(Route::ok(big), |e| {
        matches!(e, SourceError::TooLarge { .. })
    })
    .await;
}

#[tokio::test]
async fn redirect_is_never_followed() {
    let route = Route {
        status: 302,
        headers: vec![("location", "http://evil.test/jwks.json".into())],
        body: String::new(),
    };
    last_good_set_stays(route, |e| {
        matches!(e, SourceError::Redirect { status: 302 })
    })
    .await;
}

#[tokio::test]
async fn unavailable_503_keeps_the_last_good_set() {
    let route = Route {
        status: 503,
        headers: vec![],
        body: "down".into(),
    };
    last_good_set_stays(route, |e| matches!(e, SourceError::Status { status: 503 })).await;
}

#[tokio::test]
async fn slowloris_ends_within_the_timeout() {
    let signer = Signer::new(ISS, "k1");
    let jwks = signer.jwks();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let connections = Arc::new(AtomicUsize::new(0));
    let count = connections.clone();
    tokio::spawn(async move {
        loop {
            let (mut tcp, _) = listener.accept().await.unwrap();
            let n = count.fetch_add(1, Ordering::SeqCst);
            let jwks = jwks.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = tokio::io::AsyncReadExt::read(&mut tcp, &mut buf).await;
                if n == 0 {
                    let res = format!(
                        "HTTP/1.1 200 OK\r\ncontent-length: {}\r\ncache-control: max-age=600\r\n\r\n{jwks}",
                        jwks.len()
                    );
                    let _ = tcp.write_all(res.as_bytes()).await;
                } else {
                    // Headers dribbled, one byte every 100 ms, for ever.
                    for b in b"HTTP/1.1 200 OK\r\nx-slow: "
                        .iter()
                        .chain(std::iter::repeat(&b'a'))
                    {
                        if tcp.write_all(&[*b]).await.is_err() {
                            return;
                        }
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            });
        }
    });
    let source = KeySource::jwks_url(format!("http://{addr}/jwks.json"))
        .allow_http(true)
        .timeout(Duration::from_millis(800))
        .build()
        .await
        .unwrap();
    let verifier = verifier(source.clone());
    let started = Instant::now();
    let err = source.refresh().await.unwrap_err();
    let elapsed = started.elapsed();
    assert!(matches!(err, SourceError::Timeout(_)), "{err:?}");
    // The 800 ms timeout, with room for a loaded machine (the server would dribble for ever).
    assert!(elapsed < Duration::from_millis(2000), "{elapsed:?}");
    assert!(verifier.verify(&signer.mint()).is_ok());
    assert_eq!(connections.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn first_fetch_failure_fails_the_build_unless_told_to_wait() {
    let signer = Signer::new(ISS, "k1");
    let (state, url) = jwks_server(&signer).await;
    state.down.store(true, Ordering::SeqCst);
    assert!(
        KeySource::jwks_url(&url)
            .allow_http(true)
            .build()
            .await
            .is_err()
    );
    assert!(matches!(
        KeySource::jwks_url(&url).build().await.unwrap_err(),
        SourceError::InsecureScheme
    ));
    let waiting = tokio::spawn(
        KeySource::jwks_url(url)
            .allow_http(true)
            .retry(Duration::from_millis(20), Duration::from_millis(50))
            .startup(Startup::Wait)
            .build(),
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!waiting.is_finished());
    state.down.store(false, Ordering::SeqCst);
    let source = waiting.await.unwrap().unwrap();
    assert_eq!(source.status().kids, ["k1"]);
}

// ---------------------------------------------------------------------------------------------
// Discovery.

async fn issuer_server(
    signer: &Signer,
    meta_path: &str,
    issuer_path: &str,
    named: Option<&str>,
) -> (Arc<State>, String) {
    let state = Arc::new(State::default());
    let addr = serve(state.clone(), None).await;
    let issuer = format!("http://{addr}{issuer_path}");
    state.set("/jwks.json", Route::ok(signer.jwks()));
    let meta = serde_json::json!({
        "issuer": named.map_or(issuer.clone(), str::to_owned),
        "jwks_uri": format!("http://{addr}/jwks.json"),
        "token_endpoint": format!("http://{addr}/token"),
    });
    state.set(meta_path, Route::ok(meta.to_string()));
    (state, issuer)
}

#[tokio::test]
async fn oidc_discovery_with_the_same_issuer() {
    let signer = Signer::new(ISS, "k1");
    let (state, issuer) =
        issuer_server(&signer, "/.well-known/openid-configuration", "", None).await;
    let source = KeySource::discover(&issuer)
        .allow_http(true)
        .build()
        .await
        .unwrap();
    assert_eq!(source.status().kids, ["k1"]);
    assert_eq!(state.hits("/.well-known/oauth-authorization-server"), 0);
    assert!(verifier(source).verify(&signer.mint()).is_ok());
}

#[tokio::test]
async fn discovery_refuses_another_issuer() {
    let signer = Signer::new(ISS, "k1");
    let (state, issuer) = issuer_server(
        &signer,
        "/.well-known/openid-configuration",
        "",
        Some("http://127.0.0.1:1"),
    )
    .await;
    let err = KeySource::discover(&issuer)
        .allow_http(true)
        .build()
        .await
        .unwrap_err();
    assert!(
        matches!(&err, SourceError::IssuerMismatch { found, .. } if found == "http://127.0.0.1:1"),
        "{err:?}"
    );
    // A trailing slash is another issuer too (byte-exact).
    let err = KeySource::discover(format!("{issuer}/"))
        .allow_http(true)
        .build()
        .await
        .unwrap_err();
    assert!(matches!(err, SourceError::IssuerMismatch { .. }), "{err:?}");
    assert_eq!(state.hits("/jwks.json"), 0, "no key fetched");
}

#[tokio::test]
async fn rfc8414_metadata_when_there_is_no_oidc_document() {
    let signer = Signer::new(ISS, "k1");
    let (state, issuer) = issuer_server(
        &signer,
        "/.well-known/oauth-authorization-server/tenant",
        "/tenant",
        None,
    )
    .await;
    let source = KeySource::discover(&issuer)
        .allow_http(true)
        .build()
        .await
        .unwrap();
    assert_eq!(state.hits("/tenant/.well-known/openid-configuration"), 1);
    assert_eq!(source.status().kids, ["k1"]);
}

// ---------------------------------------------------------------------------------------------
// https and mutual TLS.

struct Pki {
    server: Arc<rustls::ServerConfig>,
    client: Arc<rustls::ClientConfig>,
    client_without_cert: Arc<rustls::ClientConfig>,
}

fn pki() -> Pki {
    use rcgen::{
        BasicConstraints, CertificateParams, CertifiedIssuer, ExtendedKeyUsagePurpose, IsCa,
        KeyPair, KeyUsagePurpose, SanType,
    };
    use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let ca_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca = CertifiedIssuer::self_signed(ca_params, ca_key).unwrap();
    let leaf = |san: SanType, eku: ExtendedKeyUsagePurpose| {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.subject_alt_names.push(san);
        p.extended_key_usages = vec![eku];
        let cert = p.signed_by(&key, &ca).unwrap();
        (
            vec![cert.der().clone()],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        )
    };
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.der().clone()).unwrap();
    let roots = Arc::new(roots);
    let (server_chain, server_key) = leaf(
        SanType::IpAddress("127.0.0.1".parse().unwrap()),
        ExtendedKeyUsagePurpose::ServerAuth,
    );
    let (client_chain, client_key) = leaf(
        SanType::URI("spiffe://mesh.test/gateway".try_into().unwrap()),
        ExtendedKeyUsagePurpose::ClientAuth,
    );
    let client_verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        roots.clone(),
        provider.clone(),
    )
    .build()
    .unwrap();
    let server = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_client_cert_verifier(client_verifier)
        .with_single_cert(server_chain, server_key)
        .unwrap();
    let client_builder = || {
        rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots.clone())
    };
    Pki {
        server: Arc::new(server),
        client: Arc::new(
            client_builder()
                .with_client_auth_cert(client_chain, client_key)
                .unwrap(),
        ),
        client_without_cert: Arc::new(client_builder().with_no_client_auth()),
    }
}

#[tokio::test]
async fn https_with_mutual_tls() {
    let pki = pki();
    let signer = Signer::new(ISS, "k1");
    let state = Arc::new(State::default());
    state.set("/jwks.json", Route::ok(signer.jwks()));
    let addr = serve(state.clone(), Some(pki.server.clone())).await;
    let url = format!("https://{addr}/jwks.json");

    let source = KeySource::jwks_url(&url)
        .tls(pki.client.clone())
        .build()
        .await
        .unwrap();
    assert!(verifier(source).verify(&signer.mint()).is_ok());

    let err = KeySource::jwks_url(&url)
        .tls(pki.client_without_cert.clone())
        .build()
        .await
        .unwrap_err();
    assert!(
        matches!(err, SourceError::Http(_) | SourceError::Connect(_)),
        "{err:?}"
    );
    assert!(matches!(
        KeySource::jwks_url(&url).build().await.unwrap_err(),
        SourceError::NoTlsConfig
    ));
    assert_eq!(
        state.hits("/jwks.json"),
        1,
        "only the client with a certificate was answered"
    );
}

// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn multi_verifier_with_two_remote_issuers() {
    let a = Signer::new("https://a.test", "a1");
    let b = Signer::new("https://b.test", "b1");
    let (_sa, url_a) = jwks_server(&a).await;
    let (_sb, url_b) = jwks_server(&b).await;
    let source_a = KeySource::jwks_url(url_a)
        .allow_http(true)
        .build()
        .await
        .unwrap();
    let source_b = KeySource::jwks_url(url_b)
        .allow_http(true)
        .build()
        .await
        .unwrap();
    let multi = MultiVerifier::new()
        .issuer(
            "https://a.test",
            Verifier::with_source(source_a).audience("mesh.test"),
        )
        .issuer(
            "https://b.test",
            Verifier::with_source(source_b).audience("mesh.test"),
        );
    assert_eq!(
        multi.verify_async(&a.mint()).await.unwrap().iss,
        "https://a.test"
    );
    assert_eq!(multi.verify(&b.mint()).unwrap().iss, "https://b.test");

    // b's token claiming to be from a: a's keys do not hold b1.
    let forged = Issuer::new(b.keys[0].1.clone(), "b1", "https://a.test")
        .audience("mesh.test")
        .mint(&MintRequest::new("user:eve", ExpiryClass::Fast))
        .unwrap();
    assert_eq!(
        multi.verify_async(&forged).await.unwrap_err().kind(),
        ErrorKind::UnknownKid
    );
    let c = Signer::new("https://c.test", "c1");
    assert_eq!(
        multi.verify(&c.mint()).unwrap_err().kind(),
        ErrorKind::WrongIss
    );
}

#[tokio::test]
async fn file_source_reloads_on_change() {
    let mut signer = Signer::new(ISS, "k1");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("jwks.json");
    std::fs::write(&path, signer.jwks()).unwrap();
    let source = KeySource::file_every(&path, Duration::from_millis(20)).unwrap();
    let verifier = verifier(source.clone());
    assert!(verifier.verify(&signer.mint()).is_ok());
    signer.add_next("k2");
    signer.promote("k2");
    std::fs::write(&path, "{ not json").unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        source.status().last_error.is_some(),
        "the bad file was reported"
    );
    std::fs::write(&path, signer.jwks()).unwrap();
    let started = Instant::now();
    while verifier.verify(&signer.mint()).is_err() {
        assert!(started.elapsed() < Duration::from_secs(3), "not reloaded");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(source.status().kids.len(), 2);
}

#[tokio::test]
async fn dropping_the_source_stops_its_refresh() {
    let signer = Signer::new(ISS, "k1");
    let (state, url) = jwks_server(&signer).await;
    let source = KeySource::jwks_url(&url)
        .allow_http(true)
        .refresh(Duration::from_millis(30), Duration::from_millis(30))
        .build()
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let status = source.status();
    assert!(
        status.fetches >= 3,
        "refreshed in the background: {status:?}"
    );
    assert!(status.next_refresh.is_some() && status.fetched_at.is_some());
    drop(source);
    tokio::time::sleep(Duration::from_millis(50)).await;
    let hits = state.hits("/jwks.json");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(state.hits("/jwks.json"), hits, "no fetch after the drop");
}

/// The synchronous `verify` (what the tower stack calls) cannot wait for a fetch: a kid it does
/// not hold fails at once, and starts one background refresh (single-flight, rate-limited), so
/// the signer's new key is learnt without any caller waiting. A thousand such failures start
/// one fetch, not a thousand.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_verify_learns_a_new_kid_in_the_background() {
    let mut signer = Signer::new(ISS, "k1");
    let (state, url) = jwks_server(&signer).await;
    let source = KeySource::jwks_url(&url)
        .allow_http(true)
        .build()
        .await
        .unwrap();
    let verifier = verifier(source.clone());
    signer.add_next("k2");
    signer.promote("k2");
    state.set("/jwks.json", Route::ok(signer.jwks()));
    let token = signer.mint();
    for _ in 0..1_000 {
        match verifier.verify(&token) {
            Err(e) => assert_eq!(e.kind(), ErrorKind::UnknownKid),
            Ok(v) => assert_eq!(v.kid(), Some("k2")),
        }
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match verifier.verify(&token) {
            Ok(v) => {
                assert_eq!(v.kid(), Some("k2"));
                break;
            }
            Err(e) => assert_eq!(e.kind(), ErrorKind::UnknownKid),
        }
        assert!(Instant::now() < deadline, "the new key was never fetched");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(
        state.hits("/jwks.json"),
        2,
        "the first fetch and one refresh"
    );
    assert_eq!(source.status().unknown_kid_refreshes, 1);
    // Within the interval, another unknown kid starts no fetch.
    let forged = signer.mint_as("k-unknown");
    for _ in 0..1_000 {
        assert_eq!(
            verifier.verify(&forged).unwrap_err().kind(),
            ErrorKind::UnknownKid
        );
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(state.hits("/jwks.json"), 2);
}

/// Outside a tokio runtime the synchronous `verify` starts nothing (and does not panic).
#[test]
fn sync_verify_outside_a_runtime_starts_nothing() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let signer = Signer::new(ISS, "k1");
    let (state, source) = runtime.block_on(async {
        let (state, url) = jwks_server(&signer).await;
        let source = KeySource::jwks_url(&url)
            .allow_http(true)
            .build()
            .await
            .unwrap();
        (state, source)
    });
    let verifier = verifier(source);
    let forged = signer.mint_as("k-unknown");
    assert_eq!(
        verifier.verify(&forged).unwrap_err().kind(),
        ErrorKind::UnknownKid
    );
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(state.hits("/jwks.json"), 1);
    drop(runtime);
}
