//! A certificate revoked by a rewritten CRL loses its open connections and its next handshake,
//! within the watch interval and without a restart (issue 11 §5).

#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::routing::get;
use axum::{Extension, Router};
use bytes::Bytes;
use http::StatusCode;
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::{http1, http2};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use secmesh_tls::ca::Ca;
use secmesh_tls::config::{ClientAuth, ServerId, TlsFiles, Workload};
use secmesh_tower::serve::ServerStats;
use secmesh_tower::tls::{PeerInfo, TlsConnector, TlsServer};
use tokio::task::JoinHandle;

/// Bound on anything the watch thread must have done (the interval is 100 ms).
const PATIENCE: Duration = Duration::from_secs(20);

struct Pki {
    dir: tempfile::TempDir,
    ca: Ca,
}

impl Pki {
    /// A CA with an empty CRL file, watched by every workload.
    fn new() -> Pki {
        let dir = tempfile::tempdir().unwrap();
        let ca = Ca::init(dir.path().join("ca"), "mesh.test".parse().unwrap()).unwrap();
        let pki = Pki { dir, ca };
        pki.write_crl();
        pki
    }

    fn write_crl(&self) {
        std::fs::write(self.dir.path().join("ca.crl"), self.ca.crl(1).unwrap()).unwrap();
    }

    /// A workload `spiffe://mesh.test/<name>` and its certificate's serial.
    fn workload(&self, name: &str) -> (Workload, String) {
        let issued = self
            .ca
            .issue(&format!("spiffe://mesh.test/{name}").parse().unwrap(), 1)
            .unwrap();
        let p = |ext: &str| self.dir.path().join(format!("{name}.{ext}"));
        std::fs::write(p("crt"), &issued.cert_pem).unwrap();
        std::fs::write(p("key"), &issued.key_pem).unwrap();
        let files = TlsFiles::new(p("crt"), p("key"), self.dir.path().join("ca/ca.crt"))
            .crl(self.dir.path().join("ca.crl"));
        (Workload::load(files).unwrap(), issued.serial)
    }
}

/// A server answering `/port` with the client's port (one per connection).
async fn server(workload: &Workload) -> (SocketAddr, ServerStats) {
    let app = Router::new().route(
        "/port",
        get(|Extension(p): Extension<PeerInfo>| async move { p.remote_addr.port().to_string() }),
    );
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let server = TlsServer::from_workload(workload, ClientAuth::Required);
    let stats = server.stats();
    tokio::spawn(server.serve(l, app));
    (addr, stats)
}

fn config(w: &Workload, alpn: &[u8]) -> Arc<rustls::ClientConfig> {
    let mut c = (*w.client_config(ServerId::TrustDomain)).clone();
    c.alpn_protocols = vec![alpn.to_vec()];
    Arc::new(c)
}

fn request() -> http::Request<Empty<Bytes>> {
    http::Request::get("https://orders.mesh.test/port")
        .body(Empty::new())
        .unwrap()
}

async fn text(res: http::Response<hyper::body::Incoming>) -> (StatusCode, String) {
    let status = res.status();
    let body = res.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// One HTTP/1.1 connection: its sender and its task.
async fn h1_conn(
    addr: SocketAddr,
    w: &Workload,
) -> (
    http1::SendRequest<Empty<Bytes>>,
    JoinHandle<hyper::Result<()>>,
) {
    let io = TlsConnector::new(config(w, b"http/1.1"))
        .connect("127.0.0.1", addr.port())
        .await
        .unwrap();
    let (send, conn) = http1::handshake(io).await.unwrap();
    (send, tokio::spawn(conn))
}

/// One HTTP/2 connection: its sender and its task.
async fn h2_conn(
    addr: SocketAddr,
    w: &Workload,
) -> (
    http2::SendRequest<Empty<Bytes>>,
    JoinHandle<hyper::Result<()>>,
) {
    let io = TlsConnector::new(config(w, b"h2"))
        .connect("127.0.0.1", addr.port())
        .await
        .unwrap();
    let (send, conn) = http2::handshake(TokioExecutor::new(), io).await.unwrap();
    (send, tokio::spawn(conn))
}

/// A request on a new connection (both ALPN protocols offered): the error, if any.
async fn fresh_request(addr: SocketAddr, w: &Workload) -> Result<StatusCode, String> {
    let client: Client<TlsConnector, Empty<Bytes>> = Client::builder(TokioExecutor::new())
        .build(TlsConnector::new(w.client_config(ServerId::TrustDomain)));
    let uri = format!("https://{addr}/port");
    let req = http::Request::get(uri).body(Empty::new()).unwrap();
    client
        .request(req)
        .await
        .map(|r| r.status())
        .map_err(|e| format!("{e:?}"))
}

#[tokio::test]
async fn the_next_request_on_an_open_http1_connection_fails_once_the_crl_revokes_the_client() {
    let pki = Pki::new();
    let (orders, _) = pki.workload("orders");
    let _watch = orders.watch(Duration::from_millis(100)).unwrap();
    let (gateway, serial) = pki.workload("gateway");
    let (billing, _) = pki.workload("billing");
    let (addr, stats) = server(&orders).await;

    let (mut send, conn) = h1_conn(addr, &gateway).await;
    let (status, port) = text(send.send_request(request()).await.unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    // Keep-alive: the same connection answers again.
    let (status, again) = text(send.send_request(request()).await.unwrap()).await;
    assert_eq!((status, &again), (StatusCode::OK, &port));

    pki.ca.revoke(&serial).unwrap();
    pki.write_crl();

    // Within the watch interval the open connection stops serving the revoked client: the
    // request fails (the connection was closed at the reload) or is refused with 403.
    let deadline = Instant::now() + PATIENCE;
    let outcome = loop {
        if send.ready().await.is_err() {
            break "closed".to_owned();
        }
        match send.send_request(request()).await {
            Ok(res) if res.status() == StatusCode::OK => {}
            Ok(res) => break format!("status {}", res.status()),
            Err(e) => break format!("error {e}"),
        }
        assert!(
            Instant::now() < deadline,
            "the revoked client is still served"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(
        outcome == "closed" || outcome.starts_with("error") || outcome == "status 403 Forbidden",
        "{outcome}"
    );
    let ended = tokio::time::timeout(PATIENCE, conn).await;
    assert!(ended.is_ok(), "the connection stays open");
    assert_eq!(stats.revoked_closes(), 1);

    // A new handshake is refused too; another client is still served.
    let err = fresh_request(addr, &gateway).await.unwrap_err();
    assert!(err.contains("CertificateRevoked"), "{err}");
    assert_eq!(fresh_request(addr, &billing).await, Ok(StatusCode::OK));
}

#[tokio::test]
async fn an_idle_http2_connection_of_a_revoked_client_is_closed_and_the_others_stay_open() {
    let pki = Pki::new();
    let (orders, _) = pki.workload("orders");
    let _watch = orders.watch(Duration::from_millis(100)).unwrap();
    let (gateway, serial) = pki.workload("gateway");
    let (billing, _) = pki.workload("billing");
    let (addr, stats) = server(&orders).await;

    let (mut revoked, revoked_conn) = h2_conn(addr, &gateway).await;
    let (mut kept, _kept_conn) = h2_conn(addr, &billing).await;
    let (status, _) = text(revoked.send_request(request()).await.unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    let (status, kept_port) = text(kept.send_request(request()).await.unwrap()).await;
    assert_eq!(status, StatusCode::OK);

    pki.ca.revoke(&serial).unwrap();
    pki.write_crl();

    // No request is sent: the server closes the connection at the reload by itself.
    let ended = tokio::time::timeout(PATIENCE, revoked_conn).await;
    assert!(ended.is_ok(), "the revoked client's connection stays open");
    assert!(revoked.send_request(request()).await.is_err());
    assert_eq!(stats.revoked_closes(), 1);

    // The other client's connection was re-checked too, and is still the same connection.
    let (status, port) = text(kept.send_request(request()).await.unwrap()).await;
    assert_eq!((status, port), (StatusCode::OK, kept_port));
    let err = fresh_request(addr, &gateway).await.unwrap_err();
    assert!(err.contains("CertificateRevoked"), "{err}");
}

#[tokio::test]
async fn a_reload_that_revokes_someone_else_keeps_the_connection() {
    let pki = Pki::new();
    let (orders, _) = pki.workload("orders");
    let _watch = orders.watch(Duration::from_millis(100)).unwrap();
    let (gateway, _) = pki.workload("gateway");
    let (_, other_serial) = pki.workload("billing");
    let (addr, stats) = server(&orders).await;

    let (mut send, _conn) = h1_conn(addr, &gateway).await;
    let (status, port) = text(send.send_request(request()).await.unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    let before = orders.generation();
    pki.ca.revoke(&other_serial).unwrap();
    pki.write_crl();
    let deadline = Instant::now() + PATIENCE;
    while orders.generation() == before {
        assert!(Instant::now() < deadline, "the CRL was not reloaded");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (status, again) = text(send.send_request(request()).await.unwrap()).await;
    assert_eq!((status, again), (StatusCode::OK, port));
    assert_eq!(stats.revoked_closes(), 0);
}
