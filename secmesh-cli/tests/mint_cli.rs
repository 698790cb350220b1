//! `token mint` (algorithm and kid from the key file, --lifetime, --claim, no empty --sub),
//! `token verify` (the warning without --iss/--aud, key sets with no usable key), algorithm
//! names in any case, and `--json` on the token commands. Through the real binary.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_secmesh");

fn run(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().unwrap()
}

fn code(o: &Output) -> i32 {
    o.status.code().unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
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
        s(&private),
        "--jwks-out",
        s(&jwks),
    ]);
    assert_eq!(code(&o), 0, "keygen {alg}: {}", stderr(&o));
    Keys {
        _dir: dir,
        private,
        jwks,
    }
}

/// `token mint` with the key and the given options (no --alg / --kid unless given).
fn mint(keys: &Keys, opts: &[&str]) -> Output {
    let mut args = vec![
        "token",
        "mint",
        "--key",
        s(&keys.private),
        "--iss",
        "gw",
        "--sub",
        "user:alice",
        "--aud",
        "mesh.test",
        "--class",
        "fast",
    ];
    args.extend_from_slice(opts);
    run(&args)
}

fn verify_claims(keys: &Keys, token: &str) -> serde_json::Value {
    let o = run(&[
        "token",
        "verify",
        "--jwks",
        s(&keys.jwks),
        "--iss",
        "gw",
        token.trim(),
    ]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    serde_json::from_str(&stdout(&o)).unwrap()
}

fn header(token: &str) -> serde_json::Value {
    use base64::Engine as _;
    let h = token.split('.').next().unwrap();
    serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(h)
            .unwrap(),
    )
    .unwrap()
}

#[test]
fn alg_and_kid_come_from_the_key_file() {
    // An HMAC key is a JWK with `alg` and `kid`: nothing else needed.
    let hs = keygen("HS384", "h1");
    let o = mint(&hs, &[]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let token = stdout(&o);
    assert_eq!(header(&token)["alg"], "HS384");
    assert_eq!(header(&token)["kid"], "h1");
    verify_claims(&hs, &token);
    // The same values given: fine; others: an error (2), nothing minted.
    assert_eq!(code(&mint(&hs, &["--alg", "hs384", "--kid", "h1"])), 0);
    for opts in [["--alg", "HS256"], ["--kid", "h2"]] {
        let o = mint(&hs, &opts);
        assert_eq!(code(&o), 2, "{opts:?}: {}", stderr(&o));
        assert!(o.stdout.is_empty());
    }
    let o = mint(&hs, &["--kid", "h2"]);
    assert!(
        stderr(&o).contains("contradicts the key file"),
        "{}",
        stderr(&o)
    );

    // A PEM key names its algorithm by its type (EdDSA, ES256, ES384), not its kid.
    for alg in ["EdDSA", "ES256", "ES384"] {
        let keys = keygen(alg, "k1");
        let o = mint(&keys, &["--kid", "k1"]);
        assert_eq!(code(&o), 0, "{alg}: {}", stderr(&o));
        assert_eq!(header(&stdout(&o))["alg"], alg);
        verify_claims(&keys, &stdout(&o));
        let o = mint(&keys, &[]);
        assert_eq!(code(&o), 2);
        assert!(stderr(&o).contains("give --kid"), "{}", stderr(&o));
    }
    // An --alg that contradicts the PEM key: an error.
    let ed = keygen("EdDSA", "k1");
    let o = mint(&ed, &["--kid", "k1", "--alg", "ES256"]);
    assert_eq!(code(&o), 2, "{}", stderr(&o));
    assert!(o.stdout.is_empty());
    // An RSA key serves six algorithms: --alg is needed.
    let rsa = keygen("PS256", "r1");
    let o = mint(&rsa, &["--kid", "r1"]);
    assert_eq!(code(&o), 2);
    assert!(stderr(&o).contains("give --alg"), "{}", stderr(&o));
    let o = mint(&rsa, &["--kid", "r1", "--alg", "ps256"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    verify_claims(&rsa, &stdout(&o));
}

#[test]
fn algorithm_names_are_case_insensitive_and_errors_list_the_valid_ones() {
    let keys = keygen("eddsa", "k1");
    let o = mint(&keys, &["--alg", "EDDSA", "--kid", "k1"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    for args in [
        vec![
            "keygen",
            "--alg",
            "none",
            "--kid",
            "k",
            "--private-out",
            "/nonexistent/a",
            "--jwks-out",
            "/nonexistent/b",
        ],
        vec![
            "token",
            "mint",
            "--key",
            s(&keys.private),
            "--alg",
            "ES257",
            "--kid",
            "k1",
            "--iss",
            "i",
            "--sub",
            "s",
            "--aud",
            "a",
            "--class",
            "fast",
        ],
    ] {
        let o = run(&args);
        assert_eq!(code(&o), 2, "{args:?}");
        let err = stderr(&o);
        assert!(err.contains("unknown algorithm"), "{err}");
        assert!(
            err.contains(
                "EdDSA, ES256, ES384, RS256, RS384, RS512, PS256, PS384, PS512, HS256, HS384, HS512"
            ),
            "{err}"
        );
    }
}

#[test]
fn lifetime_is_bounded_by_the_class() {
    let keys = keygen("EdDSA", "k1");
    let o = mint(&keys, &["--kid", "k1", "--lifetime", "60"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let c = verify_claims(&keys, &stdout(&o));
    assert_eq!(c["exp"].as_u64().unwrap() - c["iat"].as_u64().unwrap(), 60);
    // The fast bound itself is accepted; one second more, or zero, is not.
    assert_eq!(code(&mint(&keys, &["--kid", "k1", "--lifetime", "180"])), 0);
    for l in ["181", "0", "-1", "x"] {
        let o = mint(&keys, &["--kid", "k1", "--lifetime", l]);
        assert_eq!(code(&o), 2, "{l}: {}", stderr(&o));
        assert!(o.stdout.is_empty());
    }
    let o = mint(&keys, &["--kid", "k1", "--lifetime", "181"]);
    assert!(stderr(&o).contains("1..=180"), "{}", stderr(&o));
}

#[test]
fn claims_are_added_and_registered_ones_refused() {
    let keys = keygen("EdDSA", "k1");
    let o = mint(
        &keys,
        &[
            "--kid",
            "k1",
            "--claim",
            "tier=gold",
            "--claim",
            "n=3",
            "--claim",
            r#"o={"a":[1,true]}"#,
            "--claim",
            r#"quoted="3""#,
            "--claim",
            "eq=a=b",
        ],
    );
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let c = verify_claims(&keys, &stdout(&o));
    assert_eq!(c["tier"], "gold");
    assert_eq!(c["n"], 3);
    assert_eq!(c["o"], serde_json::json!({"a": [1, true]}));
    assert_eq!(c["quoted"], "3");
    assert_eq!(c["eq"], "a=b");
    for claim in [
        "sub=user:mallory",
        "exp=99999999999",
        "scope=admin:**",
        "cnf={}",
        "noequals",
        "=x",
    ] {
        let o = mint(&keys, &["--kid", "k1", "--claim", claim]);
        assert_eq!(code(&o), 2, "{claim}: {}", stderr(&o));
        assert!(o.stdout.is_empty());
    }
    let o = mint(&keys, &["--kid", "k1", "--claim", "a=1", "--claim", "a=2"]);
    assert_eq!(code(&o), 2);
    assert!(stderr(&o).contains("twice"), "{}", stderr(&o));
}

#[test]
fn an_empty_subject_is_refused() {
    let keys = keygen("EdDSA", "k1");
    for sub in ["", "  "] {
        let o = run(&[
            "token",
            "mint",
            "--key",
            s(&keys.private),
            "--kid",
            "k1",
            "--iss",
            "gw",
            "--sub",
            sub,
            "--aud",
            "mesh.test",
            "--class",
            "fast",
        ]);
        assert_eq!(code(&o), 2, "{sub:?}");
        assert!(stderr(&o).contains("--sub"), "{}", stderr(&o));
        assert!(o.stdout.is_empty());
    }
}

#[test]
fn mint_and_verify_json() {
    let keys = keygen("ES256", "k1");
    let o = mint(
        &keys,
        &["--kid", "k1", "--json", "--grant", "read:orders/*"],
    );
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(stdout(&o).lines().count(), 1);
    assert_eq!(v["alg"], "ES256");
    assert_eq!(v["kid"], "k1");
    assert_eq!(v["claims"]["scope"], "read:orders/*");
    let token = v["token"].as_str().unwrap();
    assert_eq!(verify_claims(&keys, token), v["claims"]);

    let verify = |extra: &[&str], token: &str| {
        let mut args = vec!["token", "verify", "--jwks", s(&keys.jwks), "--json"];
        args.extend_from_slice(extra);
        args.push(token);
        run(&args)
    };
    let o = verify(&["--aud", "mesh.test"], token);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let out: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(out["valid"], true);
    assert_eq!(out["claims"], v["claims"]);
    // A rejection: still one JSON document, with the stable kind; exit 1.
    let o = verify(&["--aud", "elsewhere"], token);
    assert_eq!(code(&o), 1);
    let out: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(out["valid"], false);
    assert_eq!(out["error"]["kind"], "wrong_aud");
    assert!(
        stderr(&o).starts_with("error: wrong_aud: "),
        "{}",
        stderr(&o)
    );

    // inspect --json: the same document as without it.
    let plain = run(&["token", "inspect", token]);
    let json = run(&["token", "inspect", "--json", token]);
    assert_eq!(plain.stdout, json.stdout);
}

#[test]
fn verify_warns_without_issuer_or_audience() {
    let keys = keygen("EdDSA", "k1");
    let token = stdout(&mint(&keys, &["--kid", "k1"]));
    let token = token.trim();
    let warned = |o: &Output| stderr(o).contains("warning: neither --iss nor --aud");
    let o = run(&["token", "verify", "--jwks", s(&keys.jwks), token]);
    assert_eq!(code(&o), 0);
    assert!(warned(&o), "{}", stderr(&o));
    for opt in ["--iss", "--aud"] {
        let value = if opt == "--iss" { "gw" } else { "mesh.test" };
        let o = run(&[
            "token",
            "verify",
            "--jwks",
            s(&keys.jwks),
            opt,
            value,
            token,
        ]);
        assert_eq!(code(&o), 0, "{}", stderr(&o));
        assert!(!warned(&o), "{opt}: {}", stderr(&o));
    }
    // A rejection still begins with its kind; the warning follows it.
    let o = run(&["token", "verify", "--jwks", s(&keys.jwks), "not.a.token"]);
    assert_eq!(code(&o), 1);
    assert!(
        stderr(&o).starts_with("error: malformed: "),
        "{}",
        stderr(&o)
    );
    assert!(warned(&o));
}

#[test]
fn key_sets_without_a_usable_key_are_refused_at_start() {
    let keys = keygen("EdDSA", "k1");
    let token = stdout(&mint(&keys, &["--kid", "k1"]));
    let token = token.trim();
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty.json");
    std::fs::write(&empty, r#"{"keys":[]}"#).unwrap();
    // Every key left out (an encryption key): no usable key either.
    let enc = dir.path().join("enc.json");
    let jwks: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&keys.jwks).unwrap()).unwrap();
    let mut key = jwks["keys"][0].clone();
    key["use"] = "enc".into();
    std::fs::write(&enc, serde_json::json!({"keys": [key]}).to_string()).unwrap();
    for set in [&empty, &enc] {
        let o = run(&["token", "verify", "--jwks", s(set), "--iss", "gw", token]);
        assert_eq!(code(&o), 2, "{}", stderr(&o));
        assert!(stderr(&o).contains("holds no key"), "{}", stderr(&o));
        assert!(o.stdout.is_empty());
        // jws verify: an unusable key makes the JWS invalid (1), as before, and says why.
        let o = run(&["jws", "verify", "--jwk", s(set), token]);
        assert_eq!(code(&o), 1, "{}", stderr(&o));
        assert!(stderr(&o).contains("invalid_key"), "{}", stderr(&o));
    }
}

#[test]
fn inspect_shows_times_as_rfc3339() {
    let keys = keygen("EdDSA", "k1");
    let token = stdout(&mint(&keys, &["--kid", "k1"]));
    let o = run(&["token", "inspect", token.trim()]);
    assert_eq!(code(&o), 0);
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    let exp = v["claims"]["exp"].as_i64().unwrap();
    let err = stderr(&o);
    let line = err.lines().find(|l| l.starts_with("exp: ")).unwrap();
    let when = line.strip_prefix("exp: ").unwrap();
    // YYYY-MM-DDTHH:MM:SSZ, and the same instant as the claim.
    assert_eq!(when.find('T'), Some(10), "{line}");
    assert!(
        when.starts_with("20") && when.contains("Z (unverified)"),
        "{line}"
    );
    let secs_of_day = exp.rem_euclid(86_400);
    let hms = format!(
        "T{:02}:{:02}:{:02}Z",
        secs_of_day / 3600,
        secs_of_day % 3600 / 60,
        secs_of_day % 60
    );
    assert!(when.contains(&hms), "{line} for {exp}");
    assert!(err.lines().any(|l| l.starts_with("iat: ")));
    // --json: no notes but the UNVERIFIED warning.
    let o = run(&["token", "inspect", "--json", token.trim()]);
    assert!(!stderr(&o).contains("exp: "), "{}", stderr(&o));
    assert!(stderr(&o).contains("UNVERIFIED"));
}

#[test]
fn jws_verify_json() {
    let keys = keygen("HS256", "h1");
    let jwk_text = std::fs::read_to_string(&keys.private).unwrap();
    let key =
        secmesh_tokens::SigningKey::from_jwk(&secmesh_tokens::Jwk::from_json(&jwk_text).unwrap())
            .unwrap();
    for (payload, want) in [
        (&br#"{"a":1}"#[..], serde_json::json!({"a": 1})),
        (&b"plain text"[..], serde_json::json!("plain text")),
    ] {
        let jws = secmesh_tokens::jws::sign_compact(&key, Some("h1"), None, payload).unwrap();
        let o = run(&["jws", "verify", "--jwk", s(&keys.jwks), "--json", &jws]);
        assert_eq!(code(&o), 0, "{}", stderr(&o));
        let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
        assert_eq!(v["valid"], true);
        assert_eq!(v["alg"], "HS256");
        assert_eq!(v["kid"], "h1");
        assert_eq!(v["payload"], want);
    }
    let o = run(&[
        "jws",
        "verify",
        "--jwk",
        s(&keys.jwks),
        "--json",
        "not.a.token",
    ]);
    assert_eq!(code(&o), 1);
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["valid"], false);
    assert_eq!(v["error"]["kind"], "malformed");
}
