//! `secmesh token exchange`: the real binary against a stand-in Txn-Token Service on 127.0.0.1
//! (mutual TLS, certificates from a per-test CA): the token on stdout, a refusal (exit 1), an
//! unreachable or unauthenticated service (exit 2); the subject token never printed.
#![allow(clippy::unwrap_used)]

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use axum::Router;
use axum::body::Bytes;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use secmesh_core::exchange::{ErrorCode, ExchangeError, TxnTokenRequest, TxnTokenResponse};
use secmesh_tls::ca::Ca;
use secmesh_tls::config::{ClientAuth, TlsFiles, Workload};
use secmesh_tower::tls::TlsServer;

const BIN: &str = env!("CARGO_BIN_EXE_secmesh");
const SUBJECT_TOKEN: &str = "idp-access-token-SECRET";
const ISSUED: &str = "eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJ1c2VyOmFsaWNlIn0.c2ln";

/// The stand-in service's token endpoint: the form read strictly, answers as the service's.
async fn token(body: Bytes) -> Response {
    let request = match TxnTokenRequest::from_form(&body) {
        Ok(r) => r,
        Err(e) => return answer(e.status(), e.to_json()),
    };
    let refused = |code, description: &'static str| {
        let e = ExchangeError::new(code, description);
        answer(e.status(), e.to_json())
    };
    if request.subject_token.expose() != SUBJECT_TOKEN {
        return refused(ErrorCode::InvalidGrant, "the subject token is not valid");
    }
    if request.scope.as_str().contains("admin") {
        return refused(ErrorCode::InvalidScope, "the scope is wider than allowed");
    }
    if request.scope.as_str().contains("hostile") {
        // A description that would drive a terminal: dropped by the client.
        return refused(ErrorCode::InvalidRequest, "\u{1b}]0;owned\u{7}");
    }
    // Echo what was asked, so the test sees every option arrive.
    let mut response = TxnTokenResponse::new(ISSUED.to_owned()).expires_in(180);
    if request
        .request_context
        .is_some_and(|c| c["req_ip"] == "192.0.2.7")
        && request.class.is_some_and(|c| c.as_str() == "medium")
        && request.audience == "mesh.test"
    {
        response = response.scope(request.scope);
    }
    answer(200, response.to_json())
}

fn answer(status: u16, body: String) -> Response {
    (
        StatusCode::from_u16(status).unwrap(),
        [(header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response()
}

/// A CA, the service's and the client's files, and the service running on its own runtime.
struct World {
    dir: tempfile::TempDir,
    url: String,
    _runtime: tokio::runtime::Runtime,
}

impl World {
    fn new() -> World {
        let dir = tempfile::tempdir().unwrap();
        let ca = Ca::init(dir.path().join("ca"), "mesh.test".parse().unwrap()).unwrap();
        for name in ["sts", "orders"] {
            let issued = ca
                .issue(&format!("spiffe://mesh.test/{name}").parse().unwrap(), 1)
                .unwrap();
            std::fs::write(dir.path().join(format!("{name}.crt")), &issued.cert_pem).unwrap();
            std::fs::write(dir.path().join(format!("{name}.key")), &issued.key_pem).unwrap();
        }
        let sts = Workload::load(TlsFiles::new(
            dir.path().join("sts.crt"),
            dir.path().join("sts.key"),
            dir.path().join("ca/ca.crt"),
        ))
        .unwrap();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let url = format!("https://{}/token", listener.local_addr().unwrap());
        let app = Router::new().route("/token", post(token));
        runtime.spawn(TlsServer::from_workload(&sts, ClientAuth::Required).serve(listener, app));
        World {
            dir,
            url,
            _runtime: runtime,
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `secmesh token exchange` to `url` as `orders`, with `extra` options, `stdin` on its
    /// standard input.
    fn exchange_to(&self, url: &str, extra: &[&str], stdin: &str) -> Output {
        let path = |p: PathBuf| p.to_str().unwrap().to_owned();
        let mut child = Command::new(BIN)
            .args(["token", "exchange", "--sts", url])
            .args(["--cert", &path(self.path("orders.crt"))])
            .args(["--key", &path(self.path("orders.key"))])
            .args(["--ca", &path(self.path("ca/ca.crt"))])
            .args([
                "--audience",
                "mesh.test",
                "--subject-token-type",
                "access_token",
            ])
            .args(extra)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        let printed = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!printed.contains(SUBJECT_TOKEN), "{printed}");
        out
    }

    fn exchange(&self, extra: &[&str], stdin: &str) -> Output {
        self.exchange_to(&self.url, extra, stdin)
    }

    fn token_file(&self) -> String {
        let file = self.path("subject.token");
        std::fs::write(&file, format!("{SUBJECT_TOKEN}\n")).unwrap();
        format!("@{}", file.display())
    }
}

fn text(bytes: &[u8]) -> &str {
    std::str::from_utf8(bytes).unwrap()
}

#[test]
fn exchange_prints_the_txn_token() {
    let w = World::new();
    let out = w.exchange(
        &[
            "--subject-token",
            &w.token_file(),
            "--scope",
            "read:orders/*",
            "--sts-id",
            "spiffe://mesh.test/sts",
        ],
        "",
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), format!("{ISSUED}\n"));
    assert_eq!(text(&out.stderr), "");
}

#[test]
fn exchange_with_every_option_and_json_output() {
    let w = World::new();
    let out = w.exchange(
        &[
            "--subject-token",
            "-",
            "--scope",
            "read:orders/* create:carts",
            "--class",
            "medium",
            "--request-context",
            r#"{"req_ip":"192.0.2.7"}"#,
            "--request-details",
            r#"{"action":"checkout"}"#,
            "--timeout",
            "5",
            "--json",
        ],
        &format!("{SUBJECT_TOKEN}\n"),
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["access_token"], ISSUED);
    assert_eq!(json["token_type"], "N_A");
    assert_eq!(json["expires_in"], 180);
    assert_eq!(json["scope"], "read:orders/* create:carts");
}

#[test]
fn a_refusal_exits_1_with_the_code() {
    let w = World::new();
    let token = w.token_file();
    let out = w.exchange(&["--subject-token", &token, "--scope", "admin:*"], "");
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stderr),
        "error: invalid_scope: the scope is wider than allowed\n"
    );
    assert_eq!(text(&out.stdout), "");
    // With --json, the RFC 6749 object on standard output too.
    let out = w.exchange(
        &["--subject-token", &token, "--scope", "admin:*", "--json"],
        "",
    );
    assert_eq!(out.status.code(), Some(1));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["error"], "invalid_scope");
    // A description that could drive the terminal is not shown.
    let out = w.exchange(&["--subject-token", &token, "--scope", "read:hostile"], "");
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(text(&out.stderr), "error: invalid_request\n");
    // A wrong subject token is the service's refusal too.
    let out = w.exchange(&["--subject-token", "other", "--scope", "read:x"], "");
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).starts_with("error: invalid_grant: "));
}

#[test]
fn an_unreachable_or_unauthenticated_service_exits_2() {
    let w = World::new();
    let token = w.token_file();
    let args = ["--subject-token", token.as_str(), "--scope", "read:x"];
    // Nothing listens on a port that was just closed.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr: SocketAddr = l.local_addr().unwrap();
        format!("https://{addr}/token")
    };
    let out = w.exchange_to(&closed, &args, "");
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).starts_with("error: cannot exchange the token: cannot connect"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(text(&out.stdout), "");
    // The service does not present the SPIFFE ID asked for.
    let pinned = [&args[..], &["--sts-id", "spiffe://mesh.test/not-the-sts"]].concat();
    let out = w.exchange(&pinned, "");
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("cannot connect"));
    // Plain http is refused before anything is sent.
    let http = w.url.replace("https://", "http://");
    let out = w.exchange_to(&http, &args, "");
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("plain http"));
}

#[test]
fn usage_errors_exit_2_without_the_token() {
    let w = World::new();
    let token = w.token_file();
    for extra in [
        &["--subject-token", &token, "--scope", "not a grant"][..],
        &[
            "--subject-token",
            &token,
            "--scope",
            "read:x",
            "--request-context",
            "[1]",
        ],
        &[
            "--subject-token",
            &token,
            "--scope",
            "read:x",
            "--class",
            "glacial",
        ],
        &[
            "--subject-token",
            &token,
            "--scope",
            "read:x",
            "--sts-id",
            "nope",
        ],
        &[
            "--subject-token",
            "@/nonexistent/token",
            "--scope",
            "read:x",
        ],
        &["--subject-token", "-", "--scope", "read:x"],
    ] {
        let out = w.exchange(extra, "");
        assert_eq!(
            out.status.code(),
            Some(2),
            "{extra:?}: {}",
            text(&out.stderr)
        );
        assert_eq!(text(&out.stdout), "");
    }
    // The key does not match the certificate.
    let out = Command::new(BIN)
        .args(["token", "exchange", "--sts", &w.url])
        .args(["--cert", w.path("orders.crt").to_str().unwrap()])
        .args(["--key", w.path("sts.key").to_str().unwrap()])
        .args(["--ca", w.path("ca/ca.crt").to_str().unwrap()])
        .args(["--subject-token", &token, "--subject-token-type", "jwt"])
        .args(["--audience", "mesh.test", "--scope", "read:x"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("cannot load this workload's certificate"));
}
