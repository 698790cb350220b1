//! `secmesh keys init|rotate|list|serve` through the real binary: exit codes, file modes, the
//! JSON listing, importing a `keygen` key, and a standalone JWKS server (127.0.0.1, port 0)
//! that follows a rotation made by another process.
#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_secmesh");

fn run(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().unwrap()
}

fn code(out: &Output) -> i32 {
    out.status.code().unwrap()
}

fn no_secret(out: &Output) {
    for text in [&out.stdout, &out.stderr] {
        let text = String::from_utf8_lossy(text);
        assert!(
            !text.contains("PRIVATE KEY") && !text.contains("\"d\""),
            "{text}"
        );
    }
}

fn list(dir: &Path) -> serde_json::Value {
    let out = run(&["keys", "list", "--dir", dir.to_str().unwrap(), "--json"]);
    assert_eq!(code(&out), 0, "{}", String::from_utf8_lossy(&out.stderr));
    no_secret(&out);
    serde_json::from_slice(&out.stdout).unwrap()
}

fn states(v: &serde_json::Value) -> Vec<(String, String)> {
    v["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| {
            (
                k["state"].as_str().unwrap().to_owned(),
                k["kid"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[test]
fn init_rotate_list_and_their_exit_codes() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("ring");
    let d = dir.to_str().unwrap();
    let out = run(&[
        "keys",
        "init",
        "--dir",
        d,
        "--alg",
        "es256",
        "--issuer",
        "https://sts.mesh.test",
    ]);
    assert_eq!(code(&out), 0, "{}", String::from_utf8_lossy(&out.stderr));
    no_secret(&out);
    #[cfg(unix)]
    for e in std::fs::read_dir(&dir).unwrap() {
        use std::os::unix::fs::PermissionsExt;
        let mode = e.unwrap().metadata().unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
    let v = list(&dir);
    assert_eq!(v["alg"], "ES256");
    assert_eq!(v["issuer"], "https://sts.mesh.test");
    assert_eq!(v["max_cache"], 600);
    let first = states(&v);
    assert_eq!(
        first.iter().map(|s| s.0.as_str()).collect::<Vec<_>>(),
        ["next", "current"]
    );
    let created = v["keys"][0]["created"].as_str().unwrap();
    assert!(
        created.len() == 20 && created.ends_with('Z'),
        "RFC 3339: {created}"
    );
    assert!(v["keys"][0]["ready"].is_string());

    // Too early without --force: refused (1), nothing changes.
    let out = run(&["keys", "rotate", "--dir", d]);
    assert_eq!(code(&out), 1);
    assert!(String::from_utf8_lossy(&out.stderr).contains("--force"));
    assert_eq!(states(&list(&dir)), first);

    let out = run(&["keys", "rotate", "--dir", d, "--force", "--json"]);
    assert_eq!(code(&out), 0);
    let rot: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(rot["current"], first[0].1.as_str());
    assert_eq!(rot["retired"], first[1].1.as_str());
    let after = states(&list(&dir));
    assert_eq!(
        after.iter().map(|s| s.0.as_str()).collect::<Vec<_>>(),
        ["next", "current", "retired"]
    );
    let human = run(&["keys", "list", "--dir", d]);
    assert_eq!(code(&human), 0);
    let text = String::from_utf8(human.stdout).unwrap();
    assert!(
        text.contains("retired") && text.contains("published until"),
        "{text}"
    );

    // Usage and unreadable input: 2.
    assert_eq!(
        code(&run(&["keys", "init", "--dir", d])),
        2,
        "a ring exists"
    );
    let none = tmp.path().join("none");
    assert_eq!(
        code(&run(&["keys", "list", "--dir", none.to_str().unwrap()])),
        2
    );
    assert_eq!(
        code(&run(&["keys", "rotate", "--dir", none.to_str().unwrap()])),
        2
    );
    let hs = tmp.path().join("hs");
    assert_eq!(
        code(&run(&[
            "keys",
            "init",
            "--dir",
            hs.to_str().unwrap(),
            "--alg",
            "HS256"
        ])),
        2
    );
    assert_eq!(
        code(&run(&[
            "keys",
            "init",
            "--dir",
            hs.to_str().unwrap(),
            "--alg",
            "none"
        ])),
        2
    );
    assert_eq!(code(&run(&["keys", "list"])), 2, "clap: --dir is required");
    std::fs::write(
        dir.join("keyring.json"),
        "{\"format\":\"secmesh-keyring/1\"}",
    )
    .unwrap();
    let out = run(&["keys", "list", "--dir", d]);
    assert_eq!(code(&out), 2);
    assert!(String::from_utf8_lossy(&out.stderr).contains("keyring.json"));
}

#[test]
fn a_keygen_key_is_imported_as_the_current_key() {
    let tmp = tempfile::tempdir().unwrap();
    let p = |n: &str| tmp.path().join(n).to_str().unwrap().to_owned();
    let out = run(&[
        "keygen",
        "--alg",
        "EdDSA",
        "--kid",
        "old",
        "--private-out",
        &p("k.pem"),
        "--jwks-out",
        &p("k.jwks"),
    ]);
    assert_eq!(code(&out), 0);
    let out = run(&["keys", "init", "--dir", &p("ring"), "--import", &p("k.pem")]);
    assert_eq!(code(&out), 0, "{}", String::from_utf8_lossy(&out.stderr));
    no_secret(&out);
    let v = list(&tmp.path().join("ring"));
    // The same public key as keygen's JWKS, now under its thumbprint.
    let jwks: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(p("k.jwks")).unwrap()).unwrap();
    let current = states(&v).into_iter().find(|s| s.0 == "current").unwrap().1;
    let jwk: secmesh_tokens::Jwk = serde_json::from_value(jwks["keys"][0].clone()).unwrap();
    assert_eq!(Some(current), secmesh_tokens::keyring::jwk_thumbprint(&jwk));
    // An ES256 ring cannot import an Ed25519 key.
    let out = run(&[
        "keys",
        "init",
        "--dir",
        &p("ring2"),
        "--alg",
        "ES256",
        "--import",
        &p("k.pem"),
    ]);
    assert_eq!(code(&out), 2);
    assert!(!tmp.path().join("ring2").join("keyring.json").exists());
}

/// GET `path` over HTTP/1.1 (connection: close): status line and body.
fn get(addr: &str, path: &str) -> (String, String) {
    let mut tcp = std::net::TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        tcp,
        "GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    tcp.read_to_string(&mut text).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    (head.to_owned(), body.to_owned())
}

struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn serve_publishes_the_ring_and_follows_rotate_in_another_process() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("ring");
    let d = dir.to_str().unwrap();
    assert_eq!(
        code(&run(&[
            "keys",
            "init",
            "--dir",
            d,
            "--issuer",
            "https://sts.mesh.test"
        ])),
        0
    );
    let mut child = Child(
        Command::new(BIN)
            .args([
                "keys",
                "serve",
                "--dir",
                d,
                "--listen",
                "127.0.0.1:0",
                "--poll-ms",
                "50",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let mut line = String::new();
    BufReader::new(child.0.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap()
        .to_owned();

    let (head, body) = get(&addr, "/.well-known/jwks.json");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("cache-control: public, max-age=600"),
        "{head}"
    );
    let before = secmesh_tokens::KeySet::from_jwks_json(&body).unwrap();
    assert_eq!(before.len(), 2);
    let (head, body) = get(&addr, "/.well-known/openid-configuration");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        body.contains("\"issuer\":\"https://sts.mesh.test\""),
        "{body}"
    );

    let out = run(&["keys", "rotate", "--dir", d, "--force", "--json"]);
    assert_eq!(code(&out), 0);
    let rot: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let expected =
        [&rot["current"], &rot["next"], &rot["retired"]].map(|v| v.as_str().unwrap().to_owned());
    let mut seen = Vec::new();
    for _ in 0..400 {
        let (_, body) = get(&addr, "/.well-known/jwks.json");
        let set = secmesh_tokens::KeySet::from_jwks_json(&body).unwrap();
        seen = set
            .kids()
            .map(|k| k.unwrap().to_owned())
            .collect::<Vec<_>>();
        if seen.len() == 3 {
            break;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    assert_eq!(seen, expected);
    assert!(child.0.try_wait().unwrap().is_none(), "still serving");
}
