//! The scenario: a call allowed through three hops; a call denied with its reason; a
//! confused-deputy attempt denied; a path that smuggles another user's order refused at the
//! edge; a slow batch token accepted on a batch route and refused on an API route; a tampered
//! token and an expired one refused. Each step prints what came back and what the logs say.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use secmesh::core::ExpiryClass;
use secmesh::tls::config::ServerId;
use secmesh::tokens::{Issuer, KeySet, MintRequest, Verifier};
use secmesh::tower::tls::TlsConnector;

use crate::idp::Idp;
use crate::node::{Node, Pki};
use crate::report::{print_last, print_tree};

/// What the scenario talks to.
pub(crate) struct Mesh<'a> {
    pub(crate) gateway: &'a Node,
    /// Every node, for the transaction trees.
    pub(crate) nodes: [&'a Node; 4],
    pub(crate) gateway_addr: SocketAddr,
    pub(crate) orders_addr: SocketAddr,
    pub(crate) idp: &'a Idp,
    pub(crate) pki: &'a Pki,
    pub(crate) mesh: &'a Issuer,
    pub(crate) mesh_keys: &'a Arc<KeySet>,
}

/// Runs every step; returns how many did not go as expected.
pub(crate) async fn run(m: &Mesh<'_>) -> Result<usize, Box<dyn std::error::Error>> {
    let gateway_addr = m.gateway_addr;
    let edge_client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let call_gateway = |method: Method, path: &str, token: String| {
        let req = Request::builder()
            .method(method)
            .uri(format!("http://{gateway_addr}{path}"))
            .header("authorization", format!("Bearer {token}"))
            .body(Full::new(Bytes::new()))
            .unwrap();
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

    let mut failures = 0;
    let mut check = |step: &str, got: StatusCode, want: StatusCode, detail: &str| {
        let mark = if got == want { "ok " } else { "FAIL" };
        if got != want {
            failures += 1;
        }
        println!("[{mark}] {step}\n       -> {got} {detail}");
    };

    let alice = m.idp.token("alice");
    for (step, method, path, want) in [
        (
            "1. alice reads her order: gateway -> orders -> payments + inventory",
            Method::GET,
            "/orders/user:alice/42",
            StatusCode::OK,
        ),
        (
            "2. alice reads bob's order: denied by the policy at orders",
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
        check(step, s, want, &body);
        print_tree(&m.nodes, &txn);
    }

    // 4. A batch job (its own workload) with a slow token: accepted on the batch route only.
    let reconciler = m.pki.workload("reconciler");
    let batch_token = m
        .mesh
        .mint(&MintRequest::new("svc:reconciler", ExpiryClass::Slow))?;
    let batch_client =
        Client::builder(TokioExecutor::new()).build::<_, Full<Bytes>>(TlsConnector::new(
            reconciler.client_config(ServerId::exact("spiffe://mesh.test/orders".parse()?)),
        ));
    for (step, method, path, want) in [
        (
            "4a. a slow batch token on the batch route",
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
        let req = Request::builder()
            .method(method)
            .uri(format!("https://{}{path}", m.orders_addr))
            .header("txn-token", &batch_token)
            .body(Full::new(Bytes::new()))?;
        let res = batch_client.request(req).await?;
        let status = res.status();
        let body = res.into_body().collect().await?.to_bytes();
        check(step, status, want, &String::from_utf8_lossy(&body));
    }
    let batch_txn = Verifier::new(m.mesh_keys.clone())
        .verify(&batch_token)?
        .claims()
        .txn
        .map(|t| t.to_string())
        .unwrap_or_default();
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
        check(step, s, StatusCode::UNAUTHORIZED, &challenge);
        print_last(m.gateway, &mut seen);
    }
    Ok(failures)
}
