//! The scenario: a call allowed through three hops; a call denied with its reason; a
//! confused-deputy attempt denied; a path that smuggles another user's order refused at the
//! edge; a batch job's slow token, from and renewed through the token service, accepted on a
//! batch route and refused on an API route; a tampered token and an expired one refused; the
//! token service's key rotated while requests flow. Each step prints what came back and what
//! the logs say.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use secmesh::core::claims::Scope;
use secmesh::core::exchange::{SubjectToken, SubjectTokenType, TxnTokenRequest};
use secmesh::core::{Clock, ExpiryClass, ManualClock, SystemClock};
use secmesh::tls::config::ServerId;
use secmesh::tokens::renew::Renewer;
use secmesh::tower::tls::TlsConnector;
use tokio::task::JoinSet;

use crate::MESH_AUD;
use crate::idp::Idp;
use crate::node::{Node, Pki, mesh_verifier, sts_client};
use crate::report::{print_last, print_tree};
use crate::sts::TokenService;

/// What the scenario talks to.
pub(crate) struct Mesh<'a> {
    pub(crate) gateway: &'a Node,
    /// Every node, for the transaction trees.
    pub(crate) nodes: [&'a Node; 5],
    pub(crate) gateway_addr: SocketAddr,
    pub(crate) orders_addr: SocketAddr,
    pub(crate) sts: &'a TokenService,
    pub(crate) idp: &'a Idp,
    pub(crate) pki: &'a Pki,
}

/// The steps' outcomes, printed as they come.
#[derive(Default)]
struct Steps {
    failures: usize,
}

impl Steps {
    /// A step that went as expected when `got` is `want`.
    fn check(&mut self, step: &str, got: StatusCode, want: StatusCode, detail: &str) {
        self.expect(step, got == want, &format!("{got} {detail}"));
    }

    /// A step that went as expected when `ok`.
    fn expect(&mut self, step: &str, ok: bool, detail: &str) {
        let mark = if ok { "ok " } else { "FAIL" };
        if !ok {
            self.failures += 1;
        }
        println!("[{mark}] {step}\n       -> {detail}");
    }
}

/// Runs every step; returns how many did not go as expected.
pub(crate) async fn run(m: &Mesh<'_>) -> Result<usize, Box<dyn std::error::Error>> {
    let gateway_addr = m.gateway_addr;
    let edge_client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let call_gateway = |method: Method, path: &str, token: String| {
        let req = edge_request(gateway_addr, method, path, &token);
        let client = edge_client.clone();
        async move {
            let res = client.request(req).await.unwrap();
            let status = res.status();
            let txn = res
                .headers()
                .get("txn-id")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_owned();
            let challenge = res
                .headers()
                .get("www-authenticate")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            let body = res.into_body().collect().await.unwrap().to_bytes();
            let body = String::from_utf8_lossy(&body).into_owned();
            (status, txn, challenge.unwrap_or(body))
        }
    };

    let mut steps = Steps::default();

    let alice = m.idp.token("alice");
    for (step, method, path, want) in [
        (
            "1. alice reads her order: gateway -> orders -> payments + inventory",
            Method::GET,
            "/orders/user:alice/42",
            StatusCode::OK,
        ),
        (
            "2. alice reads bob's order: the token service leaves it out of her token, so the edge refuses it",
            Method::GET,
            "/orders/user:bob/7",
            StatusCode::FORBIDDEN,
        ),
        (
            "3. confused deputy: payments asks orders to refund on alice's behalf",
            Method::POST,
            "/orders/user:alice/42/dispute",
            StatusCode::FORBIDDEN,
        ),
        (
            "3b. an encoded separator smuggles bob's order into alice's: refused at the edge",
            Method::GET,
            "/orders/user:alice/x%2F..%2F..%2Fuser:bob%2F7",
            StatusCode::BAD_REQUEST,
        ),
        (
            "3c. HEAD is a read, through the library's verb mapping",
            Method::HEAD,
            "/orders/user:alice/42",
            StatusCode::OK,
        ),
    ] {
        let (s, txn, body) = call_gateway(method, path, alice.clone()).await;
        steps.check(step, s, want, &body);
        print_tree(&m.nodes, &txn);
    }

    // 4. A batch job (its own workload, no signing key): it starts its own slow transaction at
    //    the token service and renews it there. Its token is accepted on the batch route only.
    let reconciler = m.pki.workload("reconciler");
    let to_sts = sts_client(&reconciler, m.sts.addr)?;
    let first = to_sts
        .exchange(
            &TxnTokenRequest::new(
                MESH_AUD,
                Scope::new("create:orders/batch/**")?,
                SubjectToken::new("{}"),
                SubjectTokenType::UnsignedJson,
            )
            .class(ExpiryClass::Slow),
        )
        .await?
        .into_access_token();
    // The renewer's own clock, to show a renewal now rather than in 19 hours.
    let clock = Arc::new(ManualClock::new(SystemClock.now_unix()));
    let renewer = Renewer::through(
        Arc::new(to_sts.clone()),
        Arc::new(mesh_verifier(&reconciler, m.sts.addr).await?),
        first,
    )
    .await?
    .clock(clock.clone());
    let batch_client =
        Client::builder(TokioExecutor::new()).build::<_, Full<Bytes>>(TlsConnector::new(
            reconciler.client_config(ServerId::exact("spiffe://mesh.test/orders".parse()?)),
        ));
    let call_orders = |method: Method, path: &str, token: String| {
        let req = Request::builder()
            .method(method)
            .uri(format!("https://{}{path}", m.orders_addr))
            .header("txn-token", token)
            .body(Full::new(Bytes::new()))
            .unwrap();
        let client = batch_client.clone();
        async move {
            let res = client.request(req).await?;
            let status = res.status();
            let body = res.into_body().collect().await?.to_bytes();
            Ok::<_, Box<dyn std::error::Error>>((
                status,
                String::from_utf8_lossy(&body).into_owned(),
            ))
        }
    };
    for (step, method, path, want) in [
        (
            "4a. a slow batch token from the token service, on the batch route",
            Method::POST,
            "/orders/batch/reconcile",
            StatusCode::OK,
        ),
        (
            "4b. the same slow token on an API route",
            Method::GET,
            "/orders/user:alice/42",
            StatusCode::FORBIDDEN,
        ),
    ] {
        let (status, body) = call_orders(method, path, renewer.token_async().await?).await?;
        steps.check(step, status, want, &body);
    }
    // Past the renewal margin (a fifth of the lifetime by default): the next token is a
    // replacement from the token service.
    let before = renewer.claims();
    let left = before.exp.saturating_sub(clock.now_unix());
    clock.advance(left.saturating_sub(before.lifetime() / 5) + 1);
    let renewed = renewer.token_async().await?;
    let after = renewer.claims();
    let (status, body) = call_orders(Method::POST, "/orders/batch/reconcile", renewed).await?;
    steps.expect(
        "4c. renewed through the token service: same txn, new jti; on the batch route",
        after.txn == before.txn && after.jti != before.jti && status == StatusCode::OK,
        &format!(
            "{status} {body} (jti {} -> {})",
            short(&before.jti),
            short(&after.jti)
        ),
    );
    let batch_txn = after.txn.map(|t| t.to_string()).unwrap_or_default();
    print_tree(&m.nodes, &batch_txn);

    // 5. A tampered token and an expired one, at the edge.
    let mut tampered = alice.clone().into_bytes();
    let at = tampered.len() - 5;
    tampered[at] = if tampered[at] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered)?;
    let mut seen = 0;
    for (step, token) in [
        ("5a. a tampered token", tampered),
        ("5b. an expired token", m.idp.expired_token("alice")),
    ] {
        let (s, _, challenge) = call_gateway(Method::GET, "/orders/user:alice/42", token).await;
        steps.check(step, s, StatusCode::UNAUTHORIZED, &challenge);
        print_last(m.gateway, &mut seen);
    }

    // 6. The token service's key rotated while requests flow through the gateway.
    let (sent, failed, rotation) = rotate_under_traffic(m, edge_client).await?;
    steps.expect(
        &format!("6. key rotation under traffic: {sent} requests, {failed} failed"),
        failed == 0 && sent == TRAFFIC_TASKS * TRAFFIC_PER_TASK,
        &rotation,
    );
    Ok(steps.failures)
}

/// Concurrent callers in step 6, and the requests each sends.
const TRAFFIC_TASKS: usize = 4;
const TRAFFIC_PER_TASK: usize = 50;

/// Step 6: alice's reads from a few tasks, about 2 s in all; halfway the token service's ring
/// rotates: the next key (published since the start, so every service has it) signs from then
/// on. Returns the requests sent, how many did not answer 200, and what rotated.
async fn rotate_under_traffic(
    m: &Mesh<'_>,
    client: Client<HttpConnector, Full<Bytes>>,
) -> Result<(usize, usize, String), Box<dyn std::error::Error>> {
    let done = Arc::new(AtomicUsize::new(0));
    let mut tasks = JoinSet::new();
    for _ in 0..TRAFFIC_TASKS {
        let (client, done, addr) = (client.clone(), done.clone(), m.gateway_addr);
        let token = m.idp.token("alice");
        tasks.spawn(async move {
            let mut failed = 0;
            for _ in 0..TRAFFIC_PER_TASK {
                let req = edge_request(addr, Method::GET, "/orders/user:alice/42", &token);
                match tokio::time::timeout(Duration::from_secs(10), client.request(req)).await {
                    Ok(Ok(res)) if res.status() == StatusCode::OK => {}
                    _ => failed += 1,
                }
                done.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            failed
        });
    }
    let total = TRAFFIC_TASKS * TRAFFIC_PER_TASK;
    let halfway = async {
        while done.load(Ordering::Relaxed) < total / 2 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    // Bounded: stuck callers show as failures below, not as a demo that never ends.
    let _ = tokio::time::timeout(Duration::from_secs(30), halfway).await;
    // Forced: the next key was published at start, before any service fetched the set; the
    // demo only skips waiting one max-cache period (600 s) before it signs.
    let rotation = m.sts.ring.rotate(true)?;
    let at = done.load(Ordering::Relaxed);
    let mut failed = 0;
    while let Some(f) = tasks.join_next().await {
        failed += f?;
    }
    let detail = format!(
        "after {at} requests the signing key {} retired, {} signs",
        rotation.retired.as_deref().map_or("-".into(), short),
        short(&rotation.current),
    );
    Ok((done.load(Ordering::Relaxed), failed, detail))
}

/// A request to the gateway with `token` as the bearer token.
fn edge_request(addr: SocketAddr, method: Method, path: &str, token: &str) -> Request<Full<Bytes>> {
    Request::builder()
        .method(method)
        .uri(format!("http://{addr}{path}"))
        .header("authorization", format!("Bearer {token}"))
        .body(Full::new(Bytes::new()))
        .unwrap()
}

/// The first characters of an identifier, enough to tell two apart in the output.
fn short(id: &str) -> String {
    id.chars().take(8).collect()
}
