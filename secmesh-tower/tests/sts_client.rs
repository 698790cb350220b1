//! The STS client against real servers on 127.0.0.1 (mutual TLS with a per-test CA): a
//! stand-in token service that reads the form strictly and answers success, RFC 6749 errors,
//! a 500, oversized and slow bodies, a redirect; connection reuse; the server's SPIFFE ID pin.
#![allow(clippy::unwrap_used)]

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use secmesh_core::exchange::{
    ErrorCode, ExchangeError, MAX_RESPONSE, ResponseError, SubjectToken, SubjectTokenType,
    TxnTokenRequest, TxnTokenResponse,
};
use secmesh_core::{ExpiryClass, Scope};
use secmesh_tls::ca::Ca;
use secmesh_tls::config::{ClientAuth, ServerId, TlsFiles, Workload};
use secmesh_tower::serve::PlainServer;
use secmesh_tower::sts_client::{StsClient, StsClientError};
use secmesh_tower::tls::TlsServer;
use tokio_stream::StreamExt as _;

const SUBJECT_TOKEN: &str = "idp-access-token-SECRET";
const ISSUED: &str = "eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJ1c2VyOmFsaWNlIn0.c2ln";

/// A trust domain's CA in a temporary directory.
struct Pki {
    dir: tempfile::TempDir,
    ca: Ca,
}

impl Pki {
    fn new() -> Pki {
        let dir = tempfile::tempdir().unwrap();
        let ca = Ca::init(dir.path().join("ca"), "mesh.test".parse().unwrap()).unwrap();
        Pki { dir, ca }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn workload(&self, name: &str) -> Workload {
        let issued = self
            .ca
            .issue(&format!("spiffe://mesh.test/{name}").parse().unwrap(), 1)
            .unwrap();
        std::fs::write(self.path(&format!("{name}.crt")), &issued.cert_pem).unwrap();
        std::fs::write(self.path(&format!("{name}.key")), &issued.key_pem).unwrap();
        Workload::load(TlsFiles::new(
            self.path(&format!("{name}.crt")),
            self.path(&format!("{name}.key")),
            self.path("ca/ca.crt"),
        ))
        .unwrap()
    }
}

/// The remote addresses requests came from: one per connection.
type Peers = Arc<Mutex<HashSet<SocketAddr>>>;

/// The stand-in service's token endpoint: reads the form with the strict reader and answers
/// like the Txn-Token Service would.
async fn token(
    State(peers): State<Peers>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    body: Bytes,
) -> Response {
    peers.lock().unwrap().insert(addr);
    let request = match TxnTokenRequest::from_form(&body) {
        Ok(r) => r,
        Err(e) => return refuse(&e),
    };
    if request.subject_token.expose() != SUBJECT_TOKEN {
        return refuse(&ExchangeError::new(
            ErrorCode::InvalidGrant,
            "the subject token is not valid",
        ));
    }
    if request.scope.as_str().contains("admin") {
        return refuse(&ExchangeError::new(
            ErrorCode::InvalidScope,
            "the scope is wider than allowed",
        ));
    }
    if request.audience != "mesh.test" {
        return refuse(&ExchangeError::new(ErrorCode::InvalidClient, "who are you"));
    }
    let mut response = TxnTokenResponse::new(ISSUED.to_owned()).expires_in(180);
    if request.class == Some(ExpiryClass::Medium) {
        response = response.scope(Scope::new("read:orders/42").unwrap());
    }
    json(StatusCode::OK, response.to_json())
}

fn refuse(e: &ExchangeError) -> Response {
    json(StatusCode::from_u16(e.status()).unwrap(), e.to_json())
}

fn json(status: StatusCode, body: String) -> Response {
    (
        status,
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        body,
    )
        .into_response()
}

fn app(peers: Peers) -> Router {
    let success = TxnTokenResponse::new(ISSUED.to_owned()).to_json();
    Router::new()
        .route("/token", post(token))
        .route(
            "/error",
            post(|| async { (StatusCode::INTERNAL_SERVER_ERROR, "oops") }),
        )
        .route(
            "/not-oauth",
            post(|| async { (StatusCode::FORBIDDEN, r#"{"message":"forbidden"}"#) }),
        )
        .route(
            "/redirect",
            post(|| async {
                (
                    StatusCode::TEMPORARY_REDIRECT,
                    [(header::LOCATION, "https://127.0.0.1:1/token")],
                )
            }),
        )
        .route(
            "/big",
            post(|| async { json(StatusCode::OK, " ".repeat(MAX_RESPONSE + 1)) }),
        )
        .route(
            // Chunked, no Content-Length, and it never ends.
            "/endless",
            post(|| async {
                let chunks = tokio_stream::iter(std::iter::repeat_with(|| {
                    Ok::<_, std::io::Error>(Bytes::from(vec![b' '; 16 * 1024]))
                }));
                Body::from_stream(chunks)
            }),
        )
        .route(
            // The start of an answer, then nothing.
            "/slow",
            post(move || {
                let start = Bytes::from(success[..10].to_owned());
                async move {
                    let first = tokio_stream::once(Ok::<_, std::io::Error>(start));
                    Body::from_stream(first.chain(tokio_stream::pending()))
                }
            }),
        )
        .route(
            "/not-json",
            post(|| async { json(StatusCode::OK, "access_token=x".to_owned()) }),
        )
        .route(
            "/hostile",
            post(|| async {
                let body = serde_json::json!({
                    "access_token": "eyJ\u{1b}[2J.e30.c2ln",
                    "issued_token_type": "urn:ietf:params:oauth:token-type:txn_token",
                    "token_type": "N_A",
                });
                json(StatusCode::OK, body.to_string())
            }),
        )
        .with_state(peers)
}

/// A token service (`spiffe://mesh.test/sts`) and an asking workload (`orders`).
struct World {
    _pki: Pki,
    orders: Workload,
    addr: SocketAddr,
    peers: Peers,
}

async fn world() -> World {
    let pki = Pki::new();
    let sts = pki.workload("sts");
    let orders = pki.workload("orders");
    let peers = Peers::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = TlsServer::from_workload(&sts, ClientAuth::Required);
    tokio::spawn(server.serve(listener, app(peers.clone())));
    World {
        _pki: pki,
        orders,
        addr,
        peers,
    }
}

impl World {
    fn client(&self, path: &str) -> StsClient {
        self.client_pinned(path, "spiffe://mesh.test/sts")
    }

    fn client_pinned(&self, path: &str, id: &str) -> StsClient {
        StsClient::builder(
            &self.orders,
            ServerId::exact(id.parse().unwrap()),
            format!("https://{}{path}", self.addr),
        )
        .build()
        .unwrap()
    }
}

fn request(scope: &str) -> TxnTokenRequest {
    TxnTokenRequest::new(
        "mesh.test",
        Scope::new(scope).unwrap(),
        SubjectToken::new(SUBJECT_TOKEN),
        SubjectTokenType::AccessToken,
    )
}

/// Neither the subject token nor an issued token shows in an error.
fn assert_no_token(e: &StsClientError) {
    let shown = format!("{e} {e:?}");
    assert!(!shown.contains(SUBJECT_TOKEN), "{shown}");
    assert!(!shown.contains("eyJ"), "{shown}");
}

#[tokio::test]
async fn exchange_returns_the_issued_token() {
    let w = world().await;
    let client = w.client("/token");
    let response = client.exchange(&request("read:orders/*")).await.unwrap();
    assert_eq!(response.access_token(), ISSUED);
    assert_eq!(response.expires_in_secs(), Some(180));
    assert_eq!(response.issued_scope(), None);
    // Every optional parameter reaches the service and reads back strictly.
    let mut context = serde_json::Map::new();
    context.insert("req_ip".into(), "192.0.2.7".into());
    let narrowed = client
        .exchange(
            &request("read:orders/*")
                .class(ExpiryClass::Medium)
                .request_context(context.clone())
                .request_details(context),
        )
        .await
        .unwrap();
    assert_eq!(narrowed.issued_scope().unwrap().as_str(), "read:orders/42");
    assert!(!format!("{client:?} {narrowed:?}").contains("eyJ"));
}

#[tokio::test]
async fn sequential_exchanges_reuse_one_connection() {
    let w = world().await;
    let client = w.client("/token");
    for i in 0..5 {
        // Clones share the pool.
        let response = client
            .clone()
            .exchange(&request("read:orders/*"))
            .await
            .unwrap();
        assert_eq!(response.access_token(), ISSUED, "exchange {i}");
    }
    // A refusal leaves the connection reusable too.
    client.exchange(&request("admin:*")).await.unwrap_err();
    client.exchange(&request("read:orders/*")).await.unwrap();
    assert_eq!(w.peers.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn rfc6749_errors_are_refusals_with_their_code() {
    let w = world().await;
    let client = w.client("/token");
    let e = client.exchange(&request("admin:*")).await.unwrap_err();
    assert_no_token(&e);
    match &e {
        StsClientError::Refused(refused) => {
            assert_eq!(refused.code(), ErrorCode::InvalidScope);
            assert_eq!(refused.description(), "the scope is wider than allowed");
        }
        other => panic!("{other:?}"),
    }
    assert!(e.is_refused());
    // invalid_client comes with 401.
    let other_audience = TxnTokenRequest::new(
        "other.test",
        Scope::new("read:x").unwrap(),
        SubjectToken::new(SUBJECT_TOKEN),
        SubjectTokenType::AccessToken,
    );
    let e = client.exchange(&other_audience).await.unwrap_err();
    assert!(
        matches!(&e, StsClientError::Refused(r) if r.code() == ErrorCode::InvalidClient),
        "{e:?}"
    );
    let wrong_subject = TxnTokenRequest::new(
        "mesh.test",
        Scope::new("read:x").unwrap(),
        SubjectToken::new("not-the-token"),
        SubjectTokenType::Jwt,
    );
    let e = client.exchange(&wrong_subject).await.unwrap_err();
    assert!(
        matches!(&e, StsClientError::Refused(r) if r.code() == ErrorCode::InvalidGrant),
        "{e:?}"
    );
    assert!(!e.to_string().contains("not-the-token"));
}

#[tokio::test]
async fn other_statuses_and_redirects_are_not_followed_or_read() {
    let w = world().await;
    let e = w
        .client("/error")
        .exchange(&request("read:x"))
        .await
        .unwrap_err();
    assert!(matches!(e, StsClientError::Status(500)), "{e:?}");
    // A 4xx without an RFC 6749 body is a status, not a refusal.
    let e = w
        .client("/not-oauth")
        .exchange(&request("read:x"))
        .await
        .unwrap_err();
    assert!(matches!(e, StsClientError::Status(403)), "{e:?}");
    let e = w
        .client("/redirect")
        .exchange(&request("read:x"))
        .await
        .unwrap_err();
    assert!(matches!(e, StsClientError::Redirect(307)), "{e:?}");
    // A path the service does not have.
    let e = w
        .client("/nothing")
        .exchange(&request("read:x"))
        .await
        .unwrap_err();
    assert!(matches!(e, StsClientError::Status(404)), "{e:?}");
    assert_no_token(&e);
}

#[tokio::test]
async fn bodies_are_read_with_a_limit() {
    let w = world().await;
    // Declared too large.
    let e = w
        .client("/big")
        .exchange(&request("read:x"))
        .await
        .unwrap_err();
    assert!(
        matches!(e, StsClientError::Malformed(ResponseError::TooLarge)),
        "{e:?}"
    );
    // Never ends: refused once the limit is crossed, not read to the end.
    let e = w
        .client("/endless")
        .exchange(&request("read:x"))
        .await
        .unwrap_err();
    assert!(
        matches!(e, StsClientError::Malformed(ResponseError::TooLarge)),
        "{e:?}"
    );
}

#[tokio::test]
async fn malformed_answers_are_refused() {
    let w = world().await;
    let e = w
        .client("/not-json")
        .exchange(&request("read:x"))
        .await
        .unwrap_err();
    assert!(
        matches!(e, StsClientError::Malformed(ResponseError::NotJson)),
        "{e:?}"
    );
    // A token that could drive a terminal is not a txn-token.
    let e = w
        .client("/hostile")
        .exchange(&request("read:x"))
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            StsClientError::Malformed(ResponseError::Malformed("access_token"))
        ),
        "{e:?}"
    );
    assert!(!e.to_string().contains('\u{1b}'));
}

#[tokio::test]
async fn a_slow_body_times_out() {
    let w = world().await;
    let client = StsClient::builder(
        &w.orders,
        ServerId::exact("spiffe://mesh.test/sts".parse().unwrap()),
        format!("https://{}/slow", w.addr),
    )
    .timeout(Duration::from_millis(300))
    .build()
    .unwrap();
    let e = client.exchange(&request("read:x")).await.unwrap_err();
    assert!(matches!(e, StsClientError::Timeout(_)), "{e:?}");
}

#[tokio::test]
async fn the_service_must_present_the_pinned_spiffe_id() {
    let w = world().await;
    let e = w
        .client_pinned("/token", "spiffe://mesh.test/impostor-check")
        .exchange(&request("read:x"))
        .await
        .unwrap_err();
    assert!(matches!(e, StsClientError::Connect(_)), "{e:?}");
    assert_no_token(&e);
    // Nothing reached the handler.
    assert!(w.peers.lock().unwrap().is_empty());
    // Any workload of the trust domain, when the caller says so.
    let any = StsClient::builder(
        &w.orders,
        ServerId::TrustDomain,
        format!("https://{}/token", w.addr),
    )
    .build()
    .unwrap();
    any.exchange(&request("read:x")).await.unwrap();
}

#[tokio::test]
async fn unreachable_service_is_a_connect_error() {
    let w = world().await;
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let client = StsClient::builder(
        &w.orders,
        ServerId::TrustDomain,
        format!("https://{closed}/token"),
    )
    .build()
    .unwrap();
    let e = client.exchange(&request("read:x")).await.unwrap_err();
    assert!(matches!(e, StsClientError::Connect(_)), "{e:?}");
    assert!(
        e.to_string()
            .starts_with("cannot connect to the token service: ")
    );
}

#[tokio::test]
async fn plain_http_only_when_allowed() {
    let w = world().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/token", listener.local_addr().unwrap());
    tokio::spawn(PlainServer::new().serve(listener, app(Peers::default())));
    let builder = StsClient::builder(&w.orders, ServerId::TrustDomain, url);
    let e = builder.clone().build().unwrap_err();
    assert!(matches!(e, StsClientError::Endpoint(_)), "{e:?}");
    let client = builder.allow_http(true).build().unwrap();
    let response = client.exchange(&request("read:x")).await.unwrap();
    assert_eq!(response.access_token(), ISSUED);
}
