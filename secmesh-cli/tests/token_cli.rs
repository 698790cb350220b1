//! The `secmesh keygen`, `token` and `jws` contract, driven through the real binary.
#![allow(clippy::unwrap_used)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_secmesh");

fn run(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().expect("run secmesh")
}

fn run_stdin(args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(BIN)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn secmesh");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

fn code(o: &Output) -> i32 {
    o.status.code().expect("exit code")
}

fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8(o.stderr.clone()).unwrap()
}

struct Keys {
    _dir: tempfile::TempDir,
    private: PathBuf,
    jwks: PathBuf,
}

fn keygen(alg: &str, kid: &str) -> Keys {
    let dir = tempfile::tempdir().unwrap();
    let private = dir.path().join("key");
    let jwks = dir.path().join("jwks.json");
    let o = run(&[
        "keygen",
        "--alg",
        alg,
        "--kid",
        kid,
        "--private-out",
        private.to_str().unwrap(),
        "--jwks-out",
        jwks.to_str().unwrap(),
    ]);
    assert_eq!(code(&o), 0, "keygen {alg}: {}", stderr(&o));
    Keys {
        _dir: dir,
        private,
        jwks,
    }
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

fn mint(keys: &Keys, alg: &str, kid: &str, class: &str, extra: &[&str]) -> String {
    let mut args = vec![
        "token",
        "mint",
        "--key",
        p(&keys.private),
        "--alg",
        alg,
        "--kid",
        kid,
        "--iss",
        "https://gw.mesh.test",
        "--sub",
        "user:alice",
        "--aud",
        "mesh.test",
        "--class",
        class,
    ];
    args.extend_from_slice(extra);
    let o = run(&args);
    assert_eq!(code(&o), 0, "mint: {}", stderr(&o));
    let token = stdout(&o);
    assert!(token.ends_with('\n'));
    token.trim().to_owned()
}

#[test]
fn keygen_mint_verify_every_algorithm() {
    for alg in [
        "EdDSA", "ES256", "ES384", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "HS256",
        "HS384", "HS512",
    ] {
        let keys = keygen(alg, "k1");
        let token = mint(&keys, alg, "k1", "fast", &[]);
        let o = run(&["token", "verify", "--jwks", p(&keys.jwks), &token]);
        assert_eq!(code(&o), 0, "{alg}: {}", stderr(&o));
        let claims: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
        assert_eq!(claims["sub"], "user:alice", "{alg}");
    }
}

#[test]
fn private_keys_are_owner_only_and_public_sets_have_no_secrets() {
    use std::os::unix::fs::PermissionsExt;
    let keys = keygen("ES256", "k1");
    let mode = std::fs::metadata(&keys.private)
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let jwks: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&keys.jwks).unwrap()).unwrap();
    let key = &jwks["keys"][0];
    assert_eq!(key["kid"], "k1");
    assert_eq!(key["alg"], "ES256");
    assert!(key.get("d").is_none());
    assert!(
        std::fs::read_to_string(&keys.private)
            .unwrap()
            .starts_with("-----BEGIN PRIVATE KEY-----")
    );
}

#[test]
fn verify_prints_claims_with_grants_txn_and_actor() {
    let keys = keygen("EdDSA", "gw-1");
    let token = mint(
        &keys,
        "EdDSA",
        "gw-1",
        "medium",
        &[
            "--grant",
            "read:orders/*",
            "--grant",
            "create:orders",
            "--txn",
            "4bf92f3577b34da6a3ce929d0e0e4736",
            "--act",
            "spiffe://mesh.test/gateway",
        ],
    );
    let o = run(&[
        "token",
        "verify",
        "--jwks",
        p(&keys.jwks),
        "--iss",
        "https://gw.mesh.test",
        "--aud",
        "mesh.test",
        "--class",
        "medium",
        &token,
    ]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let out = stdout(&o);
    assert_eq!(out.lines().count(), 1, "one JSON object on one line");
    let c: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(c["scope"], "read:orders/* create:orders");
    assert_eq!(c["txn"], "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(c["act"]["sub"], "spiffe://mesh.test/gateway");
    assert_eq!(c["cls"], "medium");
    assert_eq!(c["iss"], "https://gw.mesh.test");
    let lifetime = c["exp"].as_u64().unwrap() - c["iat"].as_u64().unwrap();
    assert_eq!(lifetime, 5400);
}

#[test]
fn rejections_exit_1_with_the_kind() {
    let keys = keygen("EdDSA", "k1");
    let other = keygen("EdDSA", "k1");
    let token = mint(&keys, "EdDSA", "k1", "slow", &[]);
    let iat: u64 = {
        let o = run(&["token", "verify", "--jwks", p(&keys.jwks), &token]);
        let c: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
        c["iat"].as_u64().unwrap()
    };
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec!["--jwks".into(), p(&other.jwks).into()],
            "bad_signature",
        ),
        (
            vec![
                "--jwks".into(),
                p(&keys.jwks).into(),
                "--iss".into(),
                "x".into(),
            ],
            "wrong_iss",
        ),
        (
            vec![
                "--jwks".into(),
                p(&keys.jwks).into(),
                "--aud".into(),
                "x".into(),
            ],
            "wrong_aud",
        ),
        (
            vec![
                "--jwks".into(),
                p(&keys.jwks).into(),
                "--class".into(),
                "fast".into(),
            ],
            "class_not_allowed",
        ),
        (
            vec![
                "--jwks".into(),
                p(&keys.jwks).into(),
                "--typ".into(),
                "JWT".into(),
            ],
            "wrong_typ",
        ),
        (
            vec![
                "--jwks".into(),
                p(&keys.jwks).into(),
                "--now".into(),
                (iat + 86400 + 60).to_string(),
            ],
            "expired",
        ),
        (
            vec![
                "--jwks".into(),
                p(&keys.jwks).into(),
                "--now".into(),
                (iat - 10).to_string(),
                "--skew".into(),
                "5".into(),
            ],
            "not_yet_valid",
        ),
    ];
    for (opts, kind) in cases {
        let mut args: Vec<&str> = vec!["token", "verify"];
        args.extend(opts.iter().map(String::as_str));
        args.push(&token);
        let o = run(&args);
        assert_eq!(code(&o), 1, "{kind}: {}", stderr(&o));
        assert!(
            stderr(&o).starts_with(&format!("error: {kind}: ")),
            "{kind}: {}",
            stderr(&o)
        );
        assert!(stdout(&o).is_empty());
    }
    // Within the skew, and one second before exp + skew: still valid.
    let o = run(&[
        "token",
        "verify",
        "--jwks",
        p(&keys.jwks),
        "--now",
        &(iat + 86400 + 59).to_string(),
        &token,
    ]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));

    let mut tampered = token.clone();
    let last = tampered.pop().unwrap();
    tampered.push(if last == 'A' { 'Q' } else { 'A' });
    let o = run(&["token", "verify", "--jwks", p(&keys.jwks), &tampered]);
    assert_eq!(code(&o), 1);
    let o = run(&["token", "verify", "--jwks", p(&keys.jwks), "not.a.token"]);
    assert_eq!(code(&o), 1);
    assert!(
        stderr(&o).starts_with("error: malformed: "),
        "{}",
        stderr(&o)
    );
}

#[test]
fn stdin_token_with_dash() {
    let keys = keygen("HS256", "h1");
    let token = mint(&keys, "HS256", "h1", "fast", &[]);
    let o = run_stdin(
        &["token", "verify", "--jwks", p(&keys.jwks), "-"],
        &format!("{token}\n"),
    );
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let o = run_stdin(&["token", "inspect", "-"], &token);
    assert_eq!(code(&o), 0);
}

#[test]
fn usage_and_configuration_errors_exit_2() {
    let keys = keygen("EdDSA", "k1");
    let token = mint(&keys, "EdDSA", "k1", "fast", &[]);
    let dir = tempfile::tempdir().unwrap();
    let garbage = dir.path().join("garbage.json");
    std::fs::write(&garbage, "not json").unwrap();
    for args in [
        vec![
            "token",
            "verify",
            "--jwks",
            "/nonexistent/jwks.json",
            &token,
        ],
        vec!["token", "verify", "--jwks", p(&garbage), &token],
        vec![
            "token",
            "verify",
            "--jwks",
            p(&keys.jwks),
            "--class",
            "quick",
            &token,
        ],
        vec!["token", "verify", &token],
        vec!["token", "frobnicate"],
        vec![
            "token",
            "mint",
            "--key",
            p(&keys.private),
            "--alg",
            "ES256",
            "--kid",
            "k",
            "--iss",
            "i",
            "--sub",
            "s",
            "--aud",
            "a",
            "--class",
            "fast",
        ],
        vec![
            "token",
            "mint",
            "--key",
            p(&keys.private),
            "--alg",
            "EdDSA",
            "--kid",
            "k",
            "--iss",
            "i",
            "--sub",
            "s",
            "--aud",
            "a",
            "--class",
            "fast",
            "--grant",
            "nocolon",
        ],
        vec![
            "keygen",
            "--alg",
            "none",
            "--kid",
            "k",
            "--private-out",
            "a",
            "--jwks-out",
            "b",
        ],
        vec!["jws", "verify", "--jwk", "/nonexistent", "a.b.c"],
    ] {
        let o = run(&args);
        assert_eq!(code(&o), 2, "{args:?}: {}", stderr(&o));
    }
}

#[test]
fn inspect_is_marked_unverified() {
    let keys = keygen("ES256", "k1");
    let token = mint(&keys, "ES256", "k1", "fast", &["--grant", "read:x"]);
    // Tamper with the signature: inspect still shows it, and says nothing was checked.
    let tampered = format!("{}AAAA", &token[..token.rfind('.').unwrap() + 1]);
    let o = run(&["token", "inspect", &tampered]);
    assert_eq!(code(&o), 0);
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["verified"], false);
    assert_eq!(v["header"]["alg"], "ES256");
    assert_eq!(v["header"]["typ"], "txntoken+jwt");
    assert_eq!(v["claims"]["scope"], "read:x");
    assert!(stderr(&o).contains("UNVERIFIED"));
    let o = run(&["token", "inspect", "garbage"]);
    assert_eq!(code(&o), 1);
}

#[test]
fn jws_verify_with_jwk_or_jwks() {
    let dir = tempfile::tempdir().unwrap();
    let keys = keygen("HS256", "h1");
    // A raw JWS with any payload, made with the library.
    let jwk_text = std::fs::read_to_string(&keys.private).unwrap();
    let key =
        secmesh_tokens::SigningKey::from_jwk(&secmesh_tokens::Jwk::from_json(&jwk_text).unwrap())
            .unwrap();
    let jws = secmesh_tokens::jws::sign_compact(&key, Some("h1"), None, b"any payload").unwrap();
    for file in [&keys.private, &keys.jwks] {
        let o = run(&["jws", "verify", "--jwk", p(file), &jws]);
        assert_eq!(code(&o), 0, "{}", stderr(&o));
        assert_eq!(o.stdout, b"any payload");
    }
    let empty = secmesh_tokens::jws::sign_compact(&key, Some("h1"), None, b"").unwrap();
    let o = run_stdin(&["jws", "verify", "--jwk", p(&keys.jwks), "-"], &empty);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(o.stdout.is_empty());

    let bad = format!("{}x", &jws[..jws.len() - 1]);
    let o = run(&["jws", "verify", "--jwk", p(&keys.jwks), &bad]);
    assert_eq!(code(&o), 1);

    // An ES512 JWS: unsupported, exit 1, and says so.
    let es512 = format!(
        "{}.{}.{}",
        b64(br#"{"alg":"ES512","kid":"h1"}"#),
        b64(b"x"),
        b64(&[1u8; 132])
    );
    let o = run(&["jws", "verify", "--jwk", p(&keys.jwks), &es512]);
    assert_eq!(code(&o), 1);
    assert!(stderr(&o).contains("unsupported"), "{}", stderr(&o));

    // A P-521 key: unsupported too.
    let p521 = dir.path().join("p521.json");
    std::fs::write(
        &p521,
        r#"{"kty":"EC","crv":"P-521","alg":"ES512","kid":"e","x":"AHKZLLOsCOzz5cY97ewNUajB957y-C-U88c3v13nmGZx6sYl_oJXu9A5RkTKqjqvjyekWF-7ytDyRXYgCF5cj0Kt","y":"AdymlHvOiLxXkEhayXQnNCvDX4h9htZaCJN34kfmC6pV5OhQHiraVySsUdaQkAgDPrwQrJmbnX9cwlGfP-HqHZR1"}"#,
    )
    .unwrap();
    let o = run(&["jws", "verify", "--jwk", p(&p521), &es512]);
    assert_eq!(code(&o), 1);
    assert!(stderr(&o).contains("unsupported"), "{}", stderr(&o));

    // A weak key is an invalid JWS, not a usage error.
    let weak = dir.path().join("weak.json");
    std::fs::write(
        &weak,
        r#"{"kty":"oct","alg":"HS256","kid":"w","k":"AAECAwQFBgcICQoLDA0ODw"}"#,
    )
    .unwrap();
    let o = run(&["jws", "verify", "--jwk", p(&weak), &jws]);
    assert_eq!(code(&o), 1, "{}", stderr(&o));
}

fn b64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}
