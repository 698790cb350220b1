//! `secmesh sts serve` and `secmesh token exchange`: two real processes over mutual TLS on
//! 127.0.0.1, with a key ring made by `secmesh keys init`, an IdP's JWKS file, an exchange
//! policy file edited while serving, and the audit log checked at the end.
#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use secmesh_core::SystemClock;
use secmesh_tls::ca::Ca;
use secmesh_tokens::jws::sign_compact;
use secmesh_tokens::keyring::KeyRing;
use secmesh_tokens::{Algorithm, KeySet, SigningKey, Verifier};

const BIN: &str = env!("CARGO_BIN_EXE_secmesh");

fn secmesh(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().unwrap()
}

const POLICY: &str = r#"
[[exchange]]
id = "gateway-exchanges-user-tokens"
effect = "allow"
workloads = ["spiffe://mesh.test/gateway"]
subject_token_types = ["access_token"]
issuers = ["https://idp.test"]
audiences = ["mesh.test"]
scopes = ["read:orders/{sub}/**"]
"#;

struct Setup {
    dir: tempfile::TempDir,
    idp: SigningKey,
}

impl Setup {
    fn new() -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path();
        let ca = Ca::init(p.join("ca"), "mesh.test".parse().unwrap()).unwrap();
        for name in ["sts", "gateway", "payments"] {
            let svid = ca
                .issue(&format!("spiffe://mesh.test/{name}").parse().unwrap(), 1)
                .unwrap();
            std::fs::write(p.join(format!("{name}.crt")), &svid.cert_pem).unwrap();
            std::fs::write(p.join(format!("{name}.key")), &svid.key_pem).unwrap();
        }
        let out = secmesh(&["keys", "init", "--dir", p.join("ring").to_str().unwrap()]);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let idp = SigningKey::generate(Algorithm::EdDsa).unwrap();
        let jwks = KeySet::single(idp.verifying_key(Some("idp-1".into())))
            .to_jwks()
            .to_json();
        std::fs::write(p.join("idp.jwks"), jwks).unwrap();
        std::fs::write(p.join("exchange.toml"), POLICY).unwrap();
        let config = r#"
listen = "127.0.0.1:0"
issuer = "https://sts.mesh.test"
trust_domain = "mesh.test"
key_dir = "ring"
policy = "exchange.toml"

[tls]
cert = "sts.crt"
key = "sts.key"
ca = "ca/ca.crt"

[audit]
log = "audit/sts.jsonl"

[[idp]]
issuer = "https://idp.test"
audience = "gateway"
jwks = "idp.jwks"
"#;
        std::fs::write(p.join("sts.toml"), config).unwrap();
        Setup { dir, idp }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn config(&self) -> String {
        self.path("sts.toml").to_str().unwrap().to_owned()
    }

    fn external(&self, sub: &str) -> String {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let c = serde_json::json!({"iss": "https://idp.test", "sub": sub, "aud": "gateway",
                                   "iat": now, "exp": now + 300});
        sign_compact(
            &self.idp,
            Some("idp-1"),
            Some("at+jwt"),
            c.to_string().as_bytes(),
        )
        .unwrap()
    }

    /// `secmesh sts serve` in the background; its address from its first line.
    fn serve(&self) -> (Server, String) {
        let mut child = Command::new(BIN)
            .args(["sts", "serve", "--config", &self.config()])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let addr = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .to_owned();
        (Server(child), addr)
    }

    fn exchange(&self, addr: &str, workload: &str, token: &str, scope: &str) -> Output {
        secmesh(&[
            "token",
            "exchange",
            "--sts",
            &format!("https://{addr}/token"),
            "--cert",
            self.path(&format!("{workload}.crt")).to_str().unwrap(),
            "--key",
            self.path(&format!("{workload}.key")).to_str().unwrap(),
            "--ca",
            self.path("ca/ca.crt").to_str().unwrap(),
            "--subject-token",
            token,
            "--subject-token-type",
            "access_token",
            "--audience",
            "mesh.test",
            "--scope",
            scope,
        ])
    }

    fn verifier(&self) -> Verifier {
        let ring = KeyRing::open(self.path("ring"), Arc::new(SystemClock)).unwrap();
        Verifier::new(ring.key_set().unwrap())
            .issuer("https://sts.mesh.test")
            .audience("mesh.test")
    }
}

struct Server(Child);

impl Server {
    /// SIGTERM, and wait: the service drains and closes its audit log.
    fn stop(mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.0.try_wait() {
                assert_eq!(status.code(), Some(0));
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("sts serve did not stop on SIGTERM");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn check_reports_and_refuses() {
    let s = Setup::new();
    let out = secmesh(&["sts", "check", "--config", &s.config()]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.starts_with("ok: issuer https://sts.mesh.test for mesh.test"),
        "{text}"
    );
    // An unknown key, a policy that does not load, a missing file: exit 2, said why.
    let bad = std::fs::read_to_string(s.path("sts.toml")).unwrap() + "\nlisten_on = 1\n";
    std::fs::write(s.path("bad.toml"), bad).unwrap();
    let out = secmesh(&[
        "sts",
        "check",
        "--config",
        s.path("bad.toml").to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("listen_on"));
    std::fs::write(s.path("exchange.toml"), "[[exchange]]\nid = 1\n").unwrap();
    let out = secmesh(&["sts", "check", "--config", &s.config()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("exchange policy"));
}

#[test]
fn serve_and_exchange_between_two_processes() {
    let s = Setup::new();
    let (server, addr) = s.serve();
    let alice = s.external("alice");

    let out = s.exchange(&addr, "gateway", &alice, "read:orders/{sub}/42");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8(out.stdout).unwrap();
    let token = token.trim();
    assert_eq!(token.lines().count(), 1);
    let claims = s.verifier().verify(token).unwrap();
    assert_eq!(claims.sub.as_str(), "user:alice");
    assert_eq!(claims.req_wl.as_deref(), Some("spiffe://mesh.test/gateway"));

    // A workload the policy does not name: refused, exit 1, the code on stderr.
    let out = s.exchange(&addr, "payments", &alice, "read:orders/{sub}/42");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("unauthorized_client"), "{err}");
    assert!(!err.contains(&alice));

    // The policy edited while serving: payments allowed without a restart.
    std::fs::write(
        s.path("exchange.toml"),
        POLICY.replace(
            r#"workloads = ["spiffe://mesh.test/gateway"]"#,
            r#"workloads = ["spiffe://mesh.test/gateway", "spiffe://mesh.test/payments"]"#,
        ),
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let out = s.exchange(&addr, "payments", &alice, "read:orders/{sub}/42");
        if out.status.code() == Some(0) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the edited policy was not picked up"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // A broken edit keeps the last good policy.
    std::fs::write(s.path("exchange.toml"), "[[exchange]]\nid = \"x\"\n").unwrap();
    std::thread::sleep(Duration::from_secs(3));
    let out = s.exchange(&addr, "payments", &alice, "read:orders/{sub}/42");
    assert_eq!(out.status.code(), Some(0));

    server.stop();
    // The audit log: one event per exchange, none holding a token.
    let log = std::fs::read_to_string(s.path("audit/sts.jsonl")).unwrap();
    assert!(log.contains(r#""decision":"deny""#) && log.contains(r#""decision":"allow""#));
    assert!(!log.contains(&alice) && !log.contains(token));
}

#[test]
fn an_unreachable_service_is_exit_2() {
    let s = Setup::new();
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap().to_string();
    drop(l);
    let out = s.exchange(
        &addr,
        "gateway",
        &s.external("alice"),
        "read:orders/{sub}/1",
    );
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
