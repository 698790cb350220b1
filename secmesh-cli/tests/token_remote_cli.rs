//! `secmesh token verify --jwks-url / --oidc`: the real binary against a JWKS server on
//! 127.0.0.1 (plain HTTP/1.1 on a std thread), and exit 2 when the keys cannot be fetched.
#![allow(clippy::unwrap_used)]

use std::io::{Read, Write};
use std::net::TcpListener;
use std::process::{Command, Output};

use secmesh_core::ExpiryClass;
use secmesh_tokens::{Algorithm, Issuer, KeySet, MintRequest, SigningKey};

const BIN: &str = env!("CARGO_BIN_EXE_secmesh");

fn secmesh(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().unwrap()
}

/// A server answering `/jwks.json` with `jwks` and the OIDC metadata naming its own address;
/// returns its base URL.
fn serve(jwks: String) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let meta =
        serde_json::json!({"issuer": base, "jwks_uri": format!("{base}/jwks.json")}).to_string();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut buf = [0u8; 4096];
            let n = stream.read(&mut buf).unwrap_or(0);
            let request = String::from_utf8_lossy(&buf[..n]);
            let path = request.split_whitespace().nth(1).unwrap_or("/").to_owned();
            let (status, body) = match path.as_str() {
                "/jwks.json" => ("200 OK", jwks.clone()),
                "/.well-known/openid-configuration" => ("200 OK", meta.clone()),
                _ => ("404 Not Found", String::new()),
            };
            let _ = write!(
                stream,
                "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    base
}

fn token_and_server() -> (String, String) {
    let key = SigningKey::generate(Algorithm::EdDsa).unwrap();
    let jwks = KeySet::single(key.verifying_key(Some("k1".into())))
        .to_jwks()
        .to_json();
    let token = Issuer::new(key, "k1", "https://gw.mesh.test")
        .audience("mesh.test")
        .mint(&MintRequest::new("user:alice", ExpiryClass::Fast))
        .unwrap();
    (token, serve(jwks))
}

#[test]
fn verify_with_a_jwks_url() {
    let (token, base) = token_and_server();
    let url = format!("{base}/jwks.json");
    let out = secmesh(&[
        "token",
        "verify",
        "--jwks-url",
        &url,
        "--allow-http",
        "--iss",
        "https://gw.mesh.test",
        "--aud",
        "mesh.test",
        "--json",
        &token,
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["valid"], true);
    assert_eq!(json["claims"]["sub"], "user:alice");
}

#[test]
fn verify_with_oidc_discovery() {
    let (token, base) = token_and_server();
    let out = secmesh(&[
        "token",
        "verify",
        "--oidc",
        &base,
        "--allow-http",
        "--aud",
        "mesh.test",
        &token,
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("user:alice"));
}

#[test]
fn unreachable_or_refused_keys_exit_2() {
    let (token, base) = token_and_server();
    // Nothing listens on a port that was just closed.
    let closed = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}/jwks.json", l.local_addr().unwrap())
    };
    let out = secmesh(&[
        "token",
        "verify",
        "--jwks-url",
        &closed,
        "--allow-http",
        &token,
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot fetch the key set"));
    // Plain http without --allow-http.
    let url = format!("{base}/jwks.json");
    let out = secmesh(&["token", "verify", "--jwks-url", &url, &token]);
    assert_eq!(out.status.code(), Some(2));
    // A 404 for the JWKS.
    let out = secmesh(&[
        "token",
        "verify",
        "--jwks-url",
        &format!("{base}/nothing"),
        "--allow-http",
        &token,
    ]);
    assert_eq!(out.status.code(), Some(2));
    // The key options are exclusive.
    let out = secmesh(&[
        "token",
        "verify",
        "--jwks",
        "x.json",
        "--jwks-url",
        &url,
        &token,
    ]);
    assert_eq!(out.status.code(), Some(2));
}
