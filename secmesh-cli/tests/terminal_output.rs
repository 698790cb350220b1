//! What the CLI prints from a file or a token is escaped for the terminal (issue 11 §4): C0
//! controls such as ESC, C1 controls such as the one-byte CSI U+009B, and bidirectional
//! overrides such as U+202E never reach stdout or stderr raw. JSON output stays the same JSON
//! value (the characters are written as `\uXXXX` escapes).
#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers outside #[test] functions

use std::process::{Command, Output};

use base64::Engine as _;

/// Characters that must never reach the terminal raw.
const HOSTILE: [char; 6] = ['\u{1b}', '\u{9b}', '\u{202e}', '\u{2066}', '\u{7f}', '\r'];

fn secmesh(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_secmesh"))
        .args(args)
        .output()
        .expect("run secmesh")
}

fn assert_clean(label: &str, o: &Output) {
    for (stream, bytes) in [("stdout", &o.stdout), ("stderr", &o.stderr)] {
        let text = String::from_utf8_lossy(bytes);
        for c in HOSTILE {
            assert!(
                !text.contains(c),
                "{label}: {c:?} raw on {stream}: {text:?}"
            );
        }
    }
}

fn write(dir: &std::path::Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p.to_str().unwrap().to_owned()
}

fn rule(id: &str, subjects: &str) -> String {
    format!(
        "[[rule]]\nid = \"{id}\"\neffect = \"allow\"\nsubjects = [{subjects}]\nverbs = [\"read\"]\nobjects = [\"a/**\"]\n\n"
    )
}

#[test]
fn policy_rule_ids_and_subjects_print_escaped() {
    let dir = tempfile::tempdir().unwrap();
    // Rule ids with a bidi override and an isolate (the parser refuses controls in ids), the
    // second covered by the first: lint names both.
    let text = rule("evil\\u202Eid", "\"*\"") + &rule("twin\\u2066", "\"user:a\"");
    let policy = write(dir.path(), "p.toml", &text);
    let o = secmesh(&["policy", "lint", &policy]);
    assert_eq!(
        o.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_clean("lint", &o);
    let out = String::from_utf8(o.stdout.clone()).unwrap();
    assert!(out.contains("evil\\u{202e}id"), "{out}");
    // The decision names the rule: the JSON escapes it, and still parses to the same id.
    let o = secmesh(&[
        "policy", "check", "--policy", &policy, "--sub", "user:a", "--verb", "read", "--object",
        "a/1",
    ]);
    assert_eq!(o.status.code(), Some(0));
    assert_clean("check", &o);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["rule"], "evil\u{202e}id");
    // Subjects with ESC [2J, a C1 CSI, a bidi override: refused, and the error that quotes
    // them is escaped.
    for subject in [
        "\"user:\\u001b[2J\"",
        "\"user:\\u009b31m\"",
        "\"\\u202Euser:*\"",
    ] {
        let p = write(dir.path(), "bad.toml", &rule("r", subject));
        for args in [
            &["policy", "lint", &p][..],
            &[
                "policy", "check", "--policy", &p, "--sub", "user:a", "--verb", "read", "--object",
                "a",
            ][..],
        ] {
            let o = secmesh(args);
            assert_clean(&format!("{subject} {args:?}"), &o);
        }
    }
}

fn b64(s: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s)
}

#[test]
fn token_claims_print_escaped() {
    // inspect: header and claims from the token itself.
    let header = r#"{"alg":"EdDSA","kid":"k\u009b2J","typ":"txntoken+jwt"}"#;
    let claims = r#"{"sub":"user:\u202Eevil","x":"\u001b[2J\u2066","n":1}"#;
    let token = format!("{}.{}.{}", b64(header), b64(claims), b64("sig"));
    let o = secmesh(&["token", "inspect", &token]);
    assert_eq!(o.status.code(), Some(0));
    assert_clean("inspect", &o);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["claims"]["sub"], "user:\u{202e}evil");
    assert_eq!(v["claims"]["x"], "\u{1b}[2J\u{2066}");
    assert_eq!(v["header"]["kid"], "k\u{9b}2J");
    // A payload that is not JSON is shown as text: escaped too.
    let token = format!(
        "{}.{}.{}",
        b64(header),
        b64("\u{9b}31m\u{202e}"),
        b64("sig")
    );
    let o = secmesh(&["token", "inspect", &token]);
    assert_clean("inspect text payload", &o);

    // verify: claims of a signed token (whether or not verification accepts such a subject).
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("k.pem");
    let jwks = dir.path().join("k.jwks");
    let o = secmesh(&[
        "keygen",
        "--alg",
        "EdDSA",
        "--kid",
        "k",
        "--private-out",
        key.to_str().unwrap(),
        "--jwks-out",
        jwks.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(0));
    for sub in ["user:\u{202e}x", "user:\u{9b}x", "user:\u{1b}[2J"] {
        let o = secmesh(&[
            "token",
            "mint",
            "--key",
            key.to_str().unwrap(),
            "--alg",
            "EdDSA",
            "--kid",
            "k",
            "--iss",
            "iss\u{202e}",
            "--sub",
            sub,
            "--aud",
            "a",
            "--class",
            "fast",
        ]);
        assert_clean(&format!("mint {sub:?}"), &o);
        if o.status.code() != Some(0) {
            continue;
        }
        let token = String::from_utf8(o.stdout).unwrap();
        let o = secmesh(&[
            "token",
            "verify",
            "--jwks",
            jwks.to_str().unwrap(),
            token.trim(),
        ]);
        assert_clean(&format!("verify {sub:?}"), &o);
        if o.status.code() == Some(0) {
            let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
            assert_eq!(v["sub"], sub);
        }
    }
}

/// Service names read from logs, in the per-service lines of `audit verify` (sound, failed,
/// and as JSON), and values given to `token mint --claim` / `--kid`, are escaped.
#[test]
fn per_service_verify_lines_and_mint_errors_print_escaped() {
    use secmesh_audit::event::{AuditEvent, Direction};
    use secmesh_audit::sink::{JsonLinesConfig, JsonLinesSink, Sink};

    let dir = tempfile::tempdir().unwrap();
    let mut files = Vec::new();
    for (name, service) in [
        ("a.jsonl", "a\u{1b}[2J\u{202e}"),
        ("b.jsonl", "b\u{9b}31m\r"),
    ] {
        let path = dir.path().join(name);
        let mut sink = JsonLinesSink::open(&path, JsonLinesConfig::default()).unwrap();
        sink.write_batch(&mut [
            AuditEvent::now(service, Direction::In),
            AuditEvent::now(service, Direction::In),
            AuditEvent::now(service, Direction::In),
        ])
        .unwrap();
        drop(sink);
        files.push(path.to_str().unwrap().to_owned());
    }
    let verify = |extra: &[&str]| {
        let mut args = vec!["audit", "verify"];
        args.extend_from_slice(extra);
        args.extend(files.iter().map(String::as_str));
        secmesh(&args)
    };
    let o = verify(&[]);
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(String::from_utf8_lossy(&o.stdout).lines().count(), 2);
    assert_clean("audit verify per service", &o);
    let o = verify(&["--json"]);
    assert_clean("audit verify --json", &o);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["services"][0]["service"], "a\u{1b}[2J\u{202e}");
    // A changed record: the failure line names the service, escaped.
    let text = std::fs::read_to_string(&files[1]).unwrap();
    std::fs::write(&files[1], text.replacen("\"in\"", "\"out\"", 1)).unwrap();
    let o = verify(&[]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("broken_chain"));
    assert_clean("audit verify failure", &o);

    // token mint: a hostile --kid or --claim in an error.
    let key = dir.path().join("k.jwk");
    let jwks = dir.path().join("jwks.json");
    let o = secmesh(&[
        "keygen",
        "--alg",
        "hs256",
        "--kid",
        "h1",
        "--private-out",
        key.to_str().unwrap(),
        "--jwks-out",
        jwks.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(0));
    for extra in [
        ["--kid", "h\u{1b}[2J\u{202e}"],
        ["--claim", "x\u{9b}31m"],
        ["--claim", "\u{202e}x\r=1"],
        ["--alg", "HS\u{1b}[2J"],
    ] {
        let mut args = vec![
            "token",
            "mint",
            "--key",
            key.to_str().unwrap(),
            "--iss",
            "i",
            "--sub",
            "s",
            "--aud",
            "a",
            "--class",
            "fast",
        ];
        args.extend_from_slice(&extra);
        let o = secmesh(&args);
        assert_eq!(o.status.code(), Some(2), "{extra:?}");
        assert_clean(&format!("token mint {extra:?}"), &o);
    }
    // A hostile claim value that is accepted comes back escaped in --json.
    let o = secmesh(&[
        "token",
        "mint",
        "--key",
        key.to_str().unwrap(),
        "--iss",
        "i",
        "--sub",
        "s",
        "--aud",
        "a",
        "--class",
        "fast",
        "--claim",
        "note=\u{1b}[2J\u{202e}\u{9b}",
        "--json",
    ]);
    assert_eq!(o.status.code(), Some(0));
    assert_clean("token mint --json", &o);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["claims"]["note"], "\u{1b}[2J\u{202e}\u{9b}");
}
