//! One client must not take the process down (issue 11 §3): hostile connection patterns on
//! 127.0.0.1 against `PlainServer` and `TlsServer`, bounded in number and time. Each test
//! shows that the hostile connections are closed after the (shortened) limits and that a
//! legitimate client is served meanwhile. No test asserts a timing: waits are bounded by
//! generous timeouts.
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::get;
use bytes::Bytes;
use http::StatusCode;
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::{http1, http2};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::ServerName;
use secmesh_tls::ca::Ca;
use secmesh_tls::config::{ClientAuth, ServerId, TlsFiles, Workload};
use secmesh_tower::serve::{PlainServer, ServerLimits, ServerStats};
use secmesh_tower::tls::{TlsConnector, TlsServer};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinSet;

/// Bound on anything the server must have done by itself.
const PATIENCE: Duration = Duration::from_secs(30);
/// Bound on a legitimate request.
const PROMPT: Duration = Duration::from_secs(10);

/// Short limits for the tests.
fn short() -> ServerLimits {
    ServerLimits::default()
        .header_read_timeout(Duration::from_secs(1))
        .idle_timeout(Duration::from_secs(2))
        .handshake_timeout(Duration::from_secs(1))
}

fn app() -> Router {
    Router::new().route("/", get(|| async { "ok" }))
}

async fn plain(limits: ServerLimits) -> (SocketAddr, ServerStats) {
    plain_with(limits, app()).await
}

async fn plain_with(limits: ServerLimits, app: Router) -> (SocketAddr, ServerStats) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let server = PlainServer::new().limits(limits);
    let stats = server.stats();
    tokio::spawn(server.serve(l, app));
    (addr, stats)
}

/// A legitimate HTTP/1.1 request on a new connection: the response head's status line.
async fn legit(addr: SocketAddr) -> Result<String, String> {
    let exchange = async {
        let mut s = TcpStream::connect(addr).await?;
        s.write_all(b"GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
            .await?;
        let mut out = Vec::new();
        s.read_to_end(&mut out).await?;
        Ok::<_, std::io::Error>(String::from_utf8_lossy(&out).into_owned())
    };
    match tokio::time::timeout(PROMPT, exchange).await {
        Ok(Ok(answer)) if answer.starts_with("HTTP/1.1 200") && answer.ends_with("ok") => {
            Ok(answer)
        }
        Ok(Ok(answer)) => Err(format!("answered {answer:?}")),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("no answer in time".into()),
    }
}

async fn assert_served(addr: SocketAddr) {
    if let Err(e) = legit(addr).await {
        panic!("the legitimate client was not served: {e}");
    }
}

/// Whether the server closes `s` (EOF or reset) within `patience`; whatever it sends before is
/// read and ignored.
async fn closed_by_server(mut s: impl AsyncRead + Unpin, patience: Duration) -> bool {
    let mut buf = [0u8; 4096];
    let read = async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    tokio::time::timeout(patience, read).await.is_ok()
}

/// Open `n` connections, each sending `opening`, then dribbling `dribble` one byte every
/// 100 ms (if not empty) until the server closes it. Returns the tasks, each resolving to
/// whether the server closed the connection in time.
async fn hostile(addr: SocketAddr, n: usize, opening: &[u8], dribble: &[u8]) -> JoinSet<bool> {
    let mut set = JoinSet::new();
    for _ in 0..n {
        let s = TcpStream::connect(addr).await.unwrap();
        let opening = opening.to_vec();
        let dribble = dribble.to_vec();
        set.spawn(async move {
            let (mut r, mut w) = s.into_split();
            if w.write_all(&opening).await.is_err() {
                return true;
            }
            let writer = tokio::spawn(async move {
                for b in dribble.iter().cycle() {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    if w.write_all(&[*b]).await.is_err() {
                        return;
                    }
                }
                // Nothing to dribble: hold the connection open.
                std::future::pending::<()>().await;
            });
            let mut buf = [0u8; 4096];
            let closed = tokio::time::timeout(PATIENCE, async {
                loop {
                    match r.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(_) => {}
                    }
                }
            })
            .await
            .is_ok();
            writer.abort();
            closed
        });
    }
    set
}

async fn all_closed(mut set: JoinSet<bool>) -> usize {
    let mut open = 0;
    while let Some(closed) = set.join_next().await {
        if !closed.unwrap() {
            open += 1;
        }
    }
    open
}

const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = u32::try_from(payload.len()).unwrap().to_be_bytes();
    let mut f = vec![len[1], len[2], len[3], kind, flags];
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// `GET /` on `http://x`, HPACK without Huffman: :method GET, :scheme http, :path /,
/// :authority x.
const GET_BLOCK: &[u8] = &[0x82, 0x86, 0x84, 0x41, 0x01, b'x'];

#[tokio::test]
async fn silent_connections_are_closed_after_the_header_read_timeout() {
    let (addr, stats) = plain(short()).await;
    let set = hostile(addr, 300, b"", b"").await;
    assert_served(addr).await;
    assert_eq!(all_closed(set).await, 0, "silent connections left open");
    assert!(stats.first_request_timeouts() >= 300);
    assert_served(addr).await;
}

#[tokio::test]
async fn partial_and_slow_request_heads_are_closed() {
    let (addr, stats) = plain(short()).await;
    let mut h2_partial = H2_PREFACE.to_vec();
    h2_partial.extend(frame(4, 0, 0, &[]));
    // HEADERS without END_HEADERS: a CONTINUATION that never comes.
    h2_partial.extend(frame(1, 0x1, 1, GET_BLOCK));
    let variants: [(&str, &[u8], &[u8]); 6] = [
        (
            "head without its blank line",
            b"GET / HTTP/1.1\r\nhost: x\r\n",
            b"",
        ),
        ("unfinished request line", b"GET /aaaaaaaa", b""),
        ("one byte at a time", b"", b"GET / HTTP/1.1\r\nx-a: b\r\n"),
        (
            "headers one byte at a time",
            b"GET / HTTP/1.1\r\n",
            b"x-slow: 1\r\n",
        ),
        ("HTTP/2 preface only", H2_PREFACE, b""),
        ("HTTP/2 header block never finished", &h2_partial, b""),
    ];
    let mut sets = Vec::new();
    for (name, opening, dribble) in variants {
        sets.push((name, hostile(addr, 50, opening, dribble).await));
    }
    assert_served(addr).await;
    for (name, set) in sets {
        assert_eq!(all_closed(set).await, 0, "{name}: connections left open");
    }
    assert!(stats.first_request_timeouts() >= 300);
    assert_served(addr).await;
}

#[tokio::test]
async fn a_request_head_dribbled_on_a_keep_alive_connection_is_closed() {
    let (addr, stats) = plain(short().idle_timeout(Duration::from_secs(600))).await;
    let mut set = JoinSet::new();
    for _ in 0..50 {
        let mut s = TcpStream::connect(addr).await.unwrap();
        set.spawn(async move {
            s.write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
                .await
                .unwrap();
            // Read the whole first response (it ends with the body "ok").
            let mut got = Vec::new();
            let mut buf = [0u8; 1024];
            while !got.ends_with(b"ok") {
                let n = s.read(&mut buf).await.unwrap();
                assert!(n > 0, "closed before the first response");
                got.extend_from_slice(&buf[..n]);
            }
            let (mut r, mut w) = s.into_split();
            let writer = tokio::spawn(async move {
                for b in b"GET / HTTP/1.1\r\nx-a: b\r\n".iter().cycle() {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    if w.write_all(&[*b]).await.is_err() {
                        return;
                    }
                }
            });
            let closed = closed_by_server(&mut r, PATIENCE).await;
            writer.abort();
            closed
        });
    }
    assert_served(addr).await;
    assert_eq!(all_closed(set).await, 0);
    // Closed for the slow head, long before the (10 minute) idle timeout.
    assert_eq!(stats.header_read_timeouts(), 50);
    assert_eq!(stats.idle_closes(), 0);
}

#[tokio::test]
async fn idle_keep_alive_connections_are_closed_after_the_idle_timeout() {
    let (addr, stats) = plain(short()).await;
    // HTTP/1.1: one request, then silence.
    let mut set = JoinSet::new();
    for _ in 0..100 {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
            .await
            .unwrap();
        set.spawn(closed_by_server(s, PATIENCE));
    }
    // HTTP/2 (prior knowledge): one request, then silence; the server ends the connection.
    let mut h2 = JoinSet::new();
    for _ in 0..50 {
        let io = TokioIo::new(TcpStream::connect(addr).await.unwrap());
        let (mut send, conn) = http2::handshake(TokioExecutor::new(), io).await.unwrap();
        let conn = tokio::spawn(conn);
        let req = http::Request::get("http://x/")
            .body(Empty::<Bytes>::new())
            .unwrap();
        assert_eq!(
            send.send_request(req).await.unwrap().status(),
            StatusCode::OK
        );
        h2.spawn(async move {
            // The client keeps its side open: dropping `send` would close the connection.
            let _send = send;
            tokio::time::timeout(PATIENCE, conn).await.is_ok()
        });
    }
    assert_served(addr).await;
    assert_eq!(
        all_closed(set).await,
        0,
        "idle HTTP/1.1 connections left open"
    );
    assert_eq!(all_closed(h2).await, 0, "idle HTTP/2 connections left open");
    assert_eq!(stats.idle_closes(), 150);
    assert_eq!(stats.header_read_timeouts(), 0);
}

#[tokio::test]
async fn over_the_connection_cap_new_connections_are_refused_and_open_ones_are_served() {
    let limits = ServerLimits::default()
        .max_connections(50)
        .header_read_timeout(Duration::from_secs(600));
    let (addr, stats) = plain(limits).await;
    // A legitimate client with a keep-alive connection, before the storm.
    let io = TokioIo::new(TcpStream::connect(addr).await.unwrap());
    let (mut send, conn) = http1::handshake(io).await.unwrap();
    tokio::spawn(conn);
    let get = || {
        http::Request::get("/")
            .header("host", "x")
            .body(Empty::<Bytes>::new())
            .unwrap()
    };
    assert_eq!(
        send.send_request(get()).await.unwrap().status(),
        StatusCode::OK
    );

    // 200 silent connections: 49 take the remaining places, the rest are closed at once.
    let mut storm = Vec::new();
    for _ in 0..200 {
        storm.push(TcpStream::connect(addr).await.unwrap());
    }
    let deadline = Instant::now() + PATIENCE;
    while stats.refused_connections() < 151 {
        assert!(
            Instant::now() < deadline,
            "refused {}",
            stats.refused_connections()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(stats.open_connections(), 50);
    // The refused ones see their connection closed, without an answer.
    let mut refused = 0;
    for s in &mut storm {
        let mut buf = [0u8; 16];
        if let Ok(Ok(0) | Err(_)) =
            tokio::time::timeout(Duration::from_millis(200), s.read(&mut buf)).await
        {
            refused += 1;
        }
    }
    assert_eq!(refused, 151);
    // The open connection keeps being served.
    for _ in 0..10 {
        let res = tokio::time::timeout(PROMPT, send.send_request(get())).await;
        assert_eq!(res.unwrap().unwrap().status(), StatusCode::OK);
    }
    // A new one is refused while the cap is reached ...
    assert!(legit(addr).await.is_err());
    // ... and served once the storm is over.
    drop(storm);
    let deadline = Instant::now() + PATIENCE;
    while legit(addr).await.is_err() {
        assert!(Instant::now() < deadline, "still refused after the storm");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn oversized_request_heads_are_refused_with_431() {
    let (addr, stats) = plain(ServerLimits::default()).await;
    let big_value = "a".repeat(20 * 1024);
    let many: String = (0..150).map(|i| format!("x-h{i}: v\r\n")).collect();
    let spread: String = (0..90)
        .map(|i| format!("x-h{i}: {}\r\n", "b".repeat(200)))
        .collect();
    let long_uri = format!("/{}", "u".repeat(20 * 1024));
    let variants = [
        (
            "one huge header",
            format!("GET / HTTP/1.1\r\nhost: x\r\nx-big: {big_value}\r\n\r\n"),
        ),
        (
            "150 headers",
            format!("GET / HTTP/1.1\r\nhost: x\r\n{many}\r\n"),
        ),
        (
            "18 KB over 90 headers",
            format!("GET / HTTP/1.1\r\nhost: x\r\n{spread}\r\n"),
        ),
        (
            "20 KB URI",
            format!("GET {long_uri} HTTP/1.1\r\nhost: x\r\n\r\n"),
        ),
    ];
    for (name, req) in variants {
        let mut s = TcpStream::connect(addr).await.unwrap();
        // The server may answer and close before reading all of it.
        let _ = s.write_all(req.as_bytes()).await;
        let mut out = Vec::new();
        let _ = tokio::time::timeout(PROMPT, s.read_to_end(&mut out)).await;
        let answer = String::from_utf8_lossy(&out);
        assert!(
            answer.starts_with("HTTP/1.1 431") || answer.starts_with("HTTP/1.1 414"),
            "{name}: {answer:?}"
        );
    }
    // HTTP/2: a header list over the limit is not served.
    let io = TokioIo::new(TcpStream::connect(addr).await.unwrap());
    let (mut send, conn) = http2::handshake(TokioExecutor::new(), io).await.unwrap();
    tokio::spawn(conn);
    let req = http::Request::get("http://x/")
        .header("x-big", big_value)
        .body(Empty::<Bytes>::new())
        .unwrap();
    // Refused by the server (431), or not even sent by a client that read the limit.
    if let Ok(res) = send.send_request(req).await {
        assert_eq!(res.status(), StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
    }
    assert_eq!(stats.first_request_timeouts(), 0);
    assert_served(addr).await;
}

#[tokio::test]
async fn http2_streams_per_connection_are_capped() {
    let now = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let (n, p) = (Arc::clone(&now), Arc::clone(&peak));
    let app = Router::new().route(
        "/",
        get(move || {
            let (now, peak) = (Arc::clone(&n), Arc::clone(&p));
            async move {
                let here = now.fetch_add(1, Ordering::SeqCst) + 1;
                peak.fetch_max(here, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(20)).await;
                now.fetch_sub(1, Ordering::SeqCst);
                "ok"
            }
        }),
    );
    let (addr, _) = plain_with(ServerLimits::default().h2_max_concurrent_streams(8), app).await;
    let io = TokioIo::new(TcpStream::connect(addr).await.unwrap());
    let (send, conn) = http2::handshake(TokioExecutor::new(), io).await.unwrap();
    tokio::spawn(conn);
    let mut set = JoinSet::new();
    for _ in 0..64 {
        let mut send = send.clone();
        set.spawn(async move {
            let req = http::Request::get("http://x/")
                .body(Empty::<Bytes>::new())
                .unwrap();
            send.send_request(req).await.map(|r| r.status())
        });
    }
    let mut served = 0;
    while let Some(res) = set.join_next().await {
        if res.unwrap().is_ok_and(|s| s == StatusCode::OK) {
            served += 1;
        }
    }
    assert!(served >= 8, "served {served}");
    let peak = peak.load(Ordering::SeqCst);
    assert!((1..=8).contains(&peak), "{peak} streams at once");
    assert_served(addr).await;
}

#[tokio::test]
async fn an_http2_rapid_reset_flood_is_cut_off() {
    let (addr, _) = plain(ServerLimits::default()).await;
    let mut conns = JoinSet::new();
    for _ in 0..10 {
        let mut s = TcpStream::connect(addr).await.unwrap();
        conns.spawn(async move {
            let mut flood = H2_PREFACE.to_vec();
            flood.extend(frame(4, 0, 0, &[]));
            for i in 0..2000u32 {
                let id = 2 * i + 1;
                flood.extend(frame(1, 0x5, id, GET_BLOCK));
                flood.extend(frame(3, 0, id, &8u32.to_be_bytes()));
            }
            // The server may cut the connection before it has read everything.
            let _ = s.write_all(&flood).await;
            // Read frames until GOAWAY or the end of the connection.
            let mut got = Vec::new();
            let mut buf = [0u8; 16 * 1024];
            let read = async {
                loop {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return false,
                        Ok(n) => got.extend_from_slice(&buf[..n]),
                    }
                    // Walk the frames received so far (after nothing: the server sends no
                    // preface of its own besides SETTINGS).
                    let mut at = 0;
                    while got.len() >= at + 9 {
                        let len = usize::from(got[at]) << 16
                            | usize::from(got[at + 1]) << 8
                            | usize::from(got[at + 2]);
                        if got[at + 3] == 7 {
                            return true;
                        }
                        at += 9 + len;
                    }
                }
            };
            tokio::time::timeout(PATIENCE, read).await
        });
    }
    assert_served(addr).await;
    while let Some(res) = conns.join_next().await {
        // GOAWAY, or the connection closed: in time either way.
        assert!(
            res.unwrap().is_ok(),
            "a flooding connection was neither cut nor closed"
        );
    }
    assert_served(addr).await;
}

// ---- TLS ----------------------------------------------------------------------------------

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

    fn workload(&self, name: &str) -> Workload {
        let issued = self
            .ca
            .issue(&format!("spiffe://mesh.test/{name}").parse().unwrap(), 1)
            .unwrap();
        let p = |ext: &str| self.dir.path().join(format!("{name}.{ext}"));
        std::fs::write(p("crt"), &issued.cert_pem).unwrap();
        std::fs::write(p("key"), &issued.key_pem).unwrap();
        Workload::load(TlsFiles::new(
            p("crt"),
            p("key"),
            self.dir.path().join("ca/ca.crt"),
        ))
        .unwrap()
    }
}

async fn tls_server(pki: &Pki, limits: ServerLimits) -> (SocketAddr, ServerStats) {
    let orders = pki.workload("orders");
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let server = TlsServer::from_workload(&orders, ClientAuth::Required).limits(limits);
    let stats = server.stats();
    tokio::spawn(server.serve(l, app()));
    (addr, stats)
}

/// A legitimate mTLS request on a new connection.
async fn tls_legit(addr: SocketAddr, client: &Workload) -> Result<StatusCode, String> {
    let c: Client<TlsConnector, Empty<Bytes>> = Client::builder(TokioExecutor::new()).build(
        TlsConnector::new(client.client_config(ServerId::TrustDomain)),
    );
    let req = http::Request::get(format!("https://{addr}/"))
        .body(Empty::new())
        .unwrap();
    match tokio::time::timeout(PROMPT, c.request(req)).await {
        Ok(Ok(res)) => {
            let status = res.status();
            let _ = res.into_body().collect().await;
            Ok(status)
        }
        Ok(Err(e)) => Err(format!("{e:?}")),
        Err(_) => Err("no answer in time".into()),
    }
}

#[tokio::test]
async fn tls_handshakes_never_finished_are_closed() {
    let pki = Pki::new();
    let gateway = pki.workload("gateway");
    let (addr, stats) = tls_server(&pki, short().max_handshakes(1000)).await;
    // A TLS record header announcing a 512-byte ClientHello, and 6 bytes of it.
    let partial_hello: &[u8] = &[
        0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03,
    ];
    let silent = hostile(addr, 150, b"", b"").await;
    let partial = hostile(addr, 150, partial_hello, b"").await;
    let dribbled = hostile(addr, 50, b"", partial_hello).await;
    assert_eq!(tls_legit(addr, &gateway).await, Ok(StatusCode::OK));
    assert_eq!(all_closed(silent).await, 0);
    assert_eq!(all_closed(partial).await, 0);
    assert_eq!(all_closed(dribbled).await, 0);
    assert!(stats.handshake_timeouts() >= 350);
    assert_eq!(tls_legit(addr, &gateway).await, Ok(StatusCode::OK));
}

#[tokio::test]
async fn mtls_connections_idle_after_the_handshake_are_closed() {
    let pki = Pki::new();
    let gateway = pki.workload("gateway");
    let (addr, stats) = tls_server(&pki, short()).await;
    let name = ServerName::try_from("127.0.0.1").unwrap().to_owned();
    let mut set = JoinSet::new();
    for i in 0..200 {
        let mut config = (*gateway.client_config(ServerId::TrustDomain)).clone();
        // Both protocols: the server cannot tell from ALPN what will (not) come.
        config.alpn_protocols = vec![if i % 2 == 0 {
            b"h2".to_vec()
        } else {
            b"http/1.1".to_vec()
        }];
        let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
        let tcp = TcpStream::connect(addr).await.unwrap();
        let mut tls = connector.connect(name.clone(), tcp).await.unwrap();
        if i % 4 == 0 {
            // An HTTP/2 preface and nothing else.
            tls.write_all(H2_PREFACE).await.unwrap();
        }
        set.spawn(closed_by_server(tls, PATIENCE));
    }
    assert_eq!(tls_legit(addr, &gateway).await, Ok(StatusCode::OK));
    assert_eq!(all_closed(set).await, 0, "idle mTLS connections left open");
    assert!(stats.first_request_timeouts() >= 200);
    assert_eq!(tls_legit(addr, &gateway).await, Ok(StatusCode::OK));
    // Every one of those connections was accepted and finished its handshake; none failed.
    assert_eq!(stats.handshakes(), 202);
    assert_eq!(stats.accepted_connections(), 202);
    assert_eq!(stats.handshake_failures(), 0);
}

#[tokio::test]
async fn over_the_handshake_cap_new_connections_are_refused_and_established_ones_are_served() {
    let pki = Pki::new();
    let gateway = pki.workload("gateway");
    let limits = ServerLimits::default()
        .max_handshakes(20)
        .handshake_timeout(Duration::from_secs(600));
    let (addr, stats) = tls_server(&pki, limits).await;
    let io = TlsConnector::new(gateway.client_config(ServerId::TrustDomain))
        .connect("127.0.0.1", addr.port())
        .await
        .unwrap();
    let (mut send, conn) = http2::handshake(TokioExecutor::new(), io).await.unwrap();
    tokio::spawn(conn);
    let get = || {
        http::Request::get("https://x/")
            .body(Empty::<Bytes>::new())
            .unwrap()
    };
    assert_eq!(
        send.send_request(get()).await.unwrap().status(),
        StatusCode::OK
    );

    let mut storm = Vec::new();
    for _ in 0..60 {
        storm.push(TcpStream::connect(addr).await.unwrap());
    }
    let deadline = Instant::now() + PATIENCE;
    while stats.refused_handshakes() < 40 {
        assert!(
            Instant::now() < deadline,
            "refused {}",
            stats.refused_handshakes()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for _ in 0..10 {
        let res = tokio::time::timeout(PROMPT, send.send_request(get())).await;
        assert_eq!(res.unwrap().unwrap().status(), StatusCode::OK);
    }
    assert!(tls_legit(addr, &gateway).await.is_err());
    drop(storm);
    let deadline = Instant::now() + PATIENCE;
    while tls_legit(addr, &gateway).await.is_err() {
        assert!(Instant::now() < deadline, "still refused after the storm");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

// ---- measure ------------------------------------------------------------------------------

fn percentile(sorted: &[Duration], p: usize) -> Duration {
    sorted[(sorted.len() * p / 100).min(sorted.len() - 1)]
}

/// Latencies of `n` legitimate requests, each on a new connection (plain, or mTLS).
async fn legit_latencies(
    addr: SocketAddr,
    n: usize,
    tls: Option<&Workload>,
) -> (Vec<Duration>, usize) {
    let mut times = Vec::with_capacity(n);
    let mut failed = 0;
    for _ in 0..n {
        let start = Instant::now();
        let ok = match tls {
            None => legit(addr).await.is_ok(),
            Some(w) => tls_legit(addr, w).await == Ok(StatusCode::OK),
        };
        if ok {
            times.push(start.elapsed());
        } else {
            failed += 1;
        }
    }
    times.sort();
    (times, failed)
}

/// Prints how many hostile connections a server holds while a legitimate client's p99 stays
/// under 100 ms: `cargo test -p secmesh-tower --test conn_limits -- --ignored --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement, prints numbers"]
async fn measure_hostile_connections_held_against_legitimate_p99() {
    let limits = ServerLimits::default()
        .max_connections(19_000)
        .header_read_timeout(Duration::from_secs(600))
        .idle_timeout(Duration::from_secs(600));
    let (addr, stats) = plain(limits).await;
    let mut held = Vec::new();
    for target in [0usize, 1000, 2000, 4000, 8000] {
        while held.len() < target {
            let mut s = TcpStream::connect(addr).await.unwrap();
            // Half silent, half a partial head.
            if held.len() % 2 == 1 {
                s.write_all(b"GET / HTTP/1.1\r\nhost: x\r\n").await.unwrap();
            }
            held.push(s);
        }
        let (times, failed) = legit_latencies(addr, 300, None).await;
        println!(
            "plain: {} hostile held (server open {}): legit new-connection requests p50 {:?} p99 {:?} max {:?}, {failed} failed",
            held.len(),
            stats.open_connections(),
            percentile(&times, 50),
            percentile(&times, 99),
            times.last().unwrap(),
        );
    }
    drop(held);

    let pki = Pki::new();
    let gateway = pki.workload("gateway");
    let (addr, stats) = tls_server(&pki, limits_for_tls()).await;
    let name = ServerName::try_from("127.0.0.1").unwrap().to_owned();
    let connector = tokio_rustls::TlsConnector::from(gateway.client_config(ServerId::TrustDomain));
    let mut held = Vec::new();
    for target in [0usize, 500, 1000, 2000] {
        while held.len() < target {
            let tcp = TcpStream::connect(addr).await.unwrap();
            held.push(connector.connect(name.clone(), tcp).await.unwrap());
        }
        let (times, failed) = legit_latencies(addr, 200, Some(&gateway)).await;
        println!(
            "mTLS: {} idle-after-handshake held (server open {}): legit new-connection requests p50 {:?} p99 {:?} max {:?}, {failed} failed",
            held.len(),
            stats.open_connections(),
            percentile(&times, 50),
            percentile(&times, 99),
            times.last().unwrap(),
        );
    }
}

fn limits_for_tls() -> ServerLimits {
    ServerLimits::default()
        .max_connections(19_000)
        .header_read_timeout(Duration::from_secs(600))
        .idle_timeout(Duration::from_secs(600))
}
