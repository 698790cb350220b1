//! `secmesh ca init|issue|revoke|crl` through the real binary.
#![allow(clippy::unwrap_used)]

use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_secmesh");

fn run(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().unwrap()
}

fn code(o: &Output) -> i32 {
    o.status.code().unwrap()
}

#[test]
fn init_issue_revoke_crl() {
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca");
    let ca = ca.to_str().unwrap();
    let o = run(&["ca", "init", "--dir", ca, "--trust-domain", "mesh.test"]);
    assert_eq!(code(&o), 0, "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(
        code(&run(&[
            "ca",
            "init",
            "--dir",
            ca,
            "--trust-domain",
            "mesh.test"
        ])),
        2
    );

    let cert = dir.path().join("orders.crt");
    let key = dir.path().join("orders.key");
    let o = run(&[
        "ca",
        "issue",
        "--dir",
        ca,
        "--spiffe-id",
        "spiffe://mesh.test/orders",
        "--cert-out",
        cert.to_str().unwrap(),
        "--key-out",
        key.to_str().unwrap(),
        "--days",
        "10",
    ]);
    assert_eq!(code(&o), 0, "{}", String::from_utf8_lossy(&o.stderr));
    let serial = String::from_utf8(o.stdout).unwrap().trim().to_owned();
    let der = {
        use base64::Engine as _;
        let pem = std::fs::read_to_string(&cert).unwrap();
        let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        base64::engine::general_purpose::STANDARD
            .decode(body)
            .unwrap()
    };
    let peer = secmesh_tls::svid::peer_identity(&der).unwrap();
    assert_eq!(peer.spiffe_id.as_str(), "spiffe://mesh.test/orders");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );

    // Another trust domain: refused (1); a bad ID: usage (2).
    let other = run(&[
        "ca",
        "issue",
        "--dir",
        ca,
        "--spiffe-id",
        "spiffe://evil.test/x",
        "--cert-out",
        "/tmp/x",
        "--key-out",
        "/tmp/y",
    ]);
    assert_eq!(code(&other), 1);
    let bad = run(&[
        "ca",
        "issue",
        "--dir",
        ca,
        "--spiffe-id",
        "https://mesh.test/x",
        "--cert-out",
        "/tmp/x",
        "--key-out",
        "/tmp/y",
    ]);
    assert_eq!(code(&bad), 2);

    assert_eq!(
        code(&run(&[
            "ca",
            "revoke",
            "--dir",
            ca,
            "--cert",
            cert.to_str().unwrap()
        ])),
        0
    );
    assert_eq!(
        code(&run(&["ca", "revoke", "--dir", ca, "--serial", "00aa"])),
        1
    );
    let crl = dir.path().join("ca.crl");
    assert_eq!(
        code(&run(&[
            "ca",
            "crl",
            "--dir",
            ca,
            "--out",
            crl.to_str().unwrap()
        ])),
        0
    );
    let pem = std::fs::read_to_string(&crl).unwrap();
    assert!(pem.starts_with("-----BEGIN X509 CRL-----"));
    let der = {
        use base64::Engine as _;
        let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        base64::engine::general_purpose::STANDARD
            .decode(body)
            .unwrap()
    };
    use x509_parser::prelude::FromDer;
    let (_, list) =
        x509_parser::revocation_list::CertificateRevocationList::from_der(&der).unwrap();
    let listed: Vec<String> = list
        .iter_revoked_certificates()
        .map(|r| r.raw_serial().iter().map(|b| format!("{b:02x}")).collect())
        .collect();
    assert_eq!(listed, vec![serial]);
    assert_eq!(
        code(&run(&[
            "ca",
            "crl",
            "--dir",
            "/nonexistent",
            "--out",
            "/tmp/z"
        ])),
        2
    );
}

#[test]
fn a_token_bound_to_an_issued_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let d = |n: &str| dir.path().join(n).to_str().unwrap().to_owned();
    assert_eq!(
        code(&run(&[
            "ca",
            "init",
            "--dir",
            &d("ca"),
            "--trust-domain",
            "mesh.test"
        ])),
        0
    );
    let o = run(&[
        "ca",
        "issue",
        "--dir",
        &d("ca"),
        "--spiffe-id",
        "spiffe://mesh.test/gateway",
        "--cert-out",
        &d("gw.crt"),
        "--key-out",
        &d("gw.key"),
    ]);
    assert_eq!(code(&o), 0, "{}", String::from_utf8_lossy(&o.stderr));
    let o = run(&[
        "keygen",
        "--alg",
        "EdDSA",
        "--kid",
        "k1",
        "--private-out",
        &d("k"),
        "--jwks-out",
        &d("jwks.json"),
    ]);
    assert_eq!(code(&o), 0);
    let mint = |cert: &str| {
        run(&[
            "token",
            "mint",
            "--key",
            &d("k"),
            "--alg",
            "EdDSA",
            "--kid",
            "k1",
            "--iss",
            "gw",
            "--sub",
            "user:alice",
            "--aud",
            "mesh.test",
            "--class",
            "fast",
            "--cnf-cert",
            cert,
        ])
    };
    let o = mint(&d("gw.crt"));
    assert_eq!(code(&o), 0, "{}", String::from_utf8_lossy(&o.stderr));
    let token = String::from_utf8(o.stdout).unwrap();
    let o = run(&["token", "verify", "--jwks", &d("jwks.json"), token.trim()]);
    assert_eq!(code(&o), 0);
    let claims: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let pem = std::fs::read_to_string(d("gw.crt")).unwrap();
    let want = secmesh_tls::svid::thumbprint_pem(&pem).unwrap();
    assert_eq!(claims["cnf"]["x5t#S256"], want.as_str());
    assert_eq!(want.len(), 43);
    // Not a certificate: a usage error, nothing minted.
    let o = mint(&d("gw.key"));
    assert_eq!(code(&o), 2);
    assert!(o.stdout.is_empty());
}
