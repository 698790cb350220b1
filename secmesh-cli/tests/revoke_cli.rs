//! `secmesh revoke`: the real binary against a real `redis-server` on 127.0.0.1 (a random
//! port), with a replica in the test process that must see what the command revoked.
//! Skipped with a loud message when redis-server is missing outside CI; a failure in CI.
#![allow(clippy::unwrap_used)]

use std::process::{Command, Output};
use std::time::{Duration, Instant};

use secmesh_testkit::redis::RedisServer;
use secmesh_tokens::revocation::RevocationKey;
use secmesh_tokens::revocation::redis::{Replica, ReplicaConfig};

const BIN: &str = env!("CARGO_BIN_EXE_secmesh");

fn secmesh(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().unwrap()
}

fn redis() -> Option<RedisServer> {
    RedisServer::start()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoke_reaches_a_replica_and_lists_and_audits() {
    let Some(r) = redis() else { return };
    let url = r.url();
    let replica = Replica::start(ReplicaConfig::new(url.clone())).unwrap();
    assert!(replica.wait_in_step(Duration::from_secs(5)).await);
    let log = r.dir().join("revoke.jsonl");

    let out = secmesh(&[
        "revoke",
        "--redis",
        &url,
        "--sub",
        "user:mallory",
        "--reason",
        "account closed",
        "--audit-log",
        log.to_str().unwrap(),
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("revoked sub user:mallory at "), "{text}");
    let set = replica.set().clone();
    let deadline = Instant::now() + Duration::from_secs(5);
    while !set
        .entries()
        .iter()
        .any(|e| e.key == RevocationKey::Sub("user:mallory".into()))
    {
        assert!(
            Instant::now() < deadline,
            "the replica did not see the revocation"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // The audit event, chained in its log.
    let events = std::fs::read_to_string(&log).unwrap();
    assert!(
        events.contains(r#""verb":"revoke""#) && events.contains("account closed"),
        "{events}"
    );
    let out = secmesh(&["audit", "verify", log.to_str().unwrap()]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let out = secmesh(&[
        "revoke",
        "--redis",
        &url,
        "--txn",
        "4bf92f3577b34da6a3ce929d0e0e4736",
        "--json",
    ]);
    assert_eq!(out.status.code(), Some(0));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["key"]["kind"], "txn");
    let out = secmesh(&["revoke", "--redis", &url, "--list"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("sub user:mallory") && text.ends_with("2 revocation(s)\n"),
        "{text}"
    );
}

#[test]
fn usage_and_unreachable_redis_exit_2() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("redis://127.0.0.1:{port}/");
    for args in [
        vec!["revoke", "--redis", url.as_str()],
        vec![
            "revoke",
            "--redis",
            url.as_str(),
            "--jti",
            "a",
            "--sub",
            "b",
        ],
        vec!["revoke", "--redis", url.as_str(), "--txn", "not-hex"],
        vec![
            "revoke",
            "--redis",
            url.as_str(),
            "--jti",
            "a",
            "--reason",
            "bad\u{1b}[2J",
        ],
        vec!["revoke", "--redis", url.as_str(), "--jti", "a"],
    ] {
        let out = secmesh(&args);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
