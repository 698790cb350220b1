//! `secmesh policy push` and `secmesh policy status` against a real `redis-server` on 127.0.0.1
//! (a random port), with three instances following the fleet policy in the test process.
//! Skipped loudly without redis-server outside CI.
#![allow(clippy::unwrap_used)]

use std::process::{Command, Output};
use std::time::{Duration, Instant};

use secmesh_core::policy::{Effect, Request, SharedPolicy};
use secmesh_core::svo::{Object, Subject, Verb};
use secmesh_testkit::redis::RedisServer;
use secmesh_tower::fleet_policy::PolicySubscription;

const BIN: &str = env!("CARGO_BIN_EXE_secmesh");

fn secmesh(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().unwrap()
}

fn redis() -> Option<RedisServer> {
    RedisServer::start()
}

const V1: &str = "[[rule]]\nid = \"read-orders\"\neffect = \"allow\"\nsubjects = [\"user:*\"]\nverbs = [\"read\"]\nobjects = [\"orders/**\"]\n";

fn allows(p: &SharedPolicy) -> bool {
    let sub: Subject = "user:alice".parse().unwrap();
    let obj: Object = "orders/1".parse().unwrap();
    p.decide(&Request::new(&sub, &Verb::Read, &obj)).effect() == Effect::Allow
}

async fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !f() {
        assert!(Instant::now() < deadline, "{what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_reaches_every_instance_and_status_flags_stragglers() {
    let Some(r) = redis() else { return };
    let url = r.url();
    let policies: Vec<SharedPolicy> = (0..3).map(|_| SharedPolicy::default()).collect();
    let subs: Vec<PolicySubscription> = policies
        .iter()
        .enumerate()
        .map(|(i, p)| {
            PolicySubscription::start(&url, "secmesh", format!("orders-{i}"), p.clone()).unwrap()
        })
        .collect();
    assert!(policies.iter().all(|p| !allows(p)));

    // An invalid policy is refused by the CLI, nothing pushed.
    let bad = r.dir().join("bad.toml");
    std::fs::write(&bad, "[[rule]]\nid = \"x\"\n").unwrap();
    let out = secmesh(&["policy", "push", "--redis", &url, bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("nothing pushed"));

    let good = r.dir().join("v1.toml");
    std::fs::write(&good, V1).unwrap();
    let out = secmesh(&["policy", "push", "--redis", &url, good.to_str().unwrap()]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).ends_with("as version 1\n"));
    eventually("every instance runs version 1", || {
        subs.iter().all(|s| s.version() == 1)
    })
    .await;
    assert!(policies.iter().all(allows));
    // Reports land every few seconds: status lists three current instances.
    let mut out = secmesh(&["policy", "status", "--redis", &url]);
    let deadline = Instant::now() + Duration::from_secs(15);
    while !(out.status.code() == Some(0)
        && String::from_utf8_lossy(&out.stdout).contains("3 instance(s)"))
    {
        assert!(
            Instant::now() < deadline,
            "{}",
            String::from_utf8_lossy(&out.stdout)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
        out = secmesh(&["policy", "status", "--redis", &url]);
    }

    // A bad version forced into Redis: ignored by the instances, which report the error;
    // status flags them.
    let client = redis::Client::open(url.as_str()).unwrap();
    let mut con = client.get_multiplexed_async_connection().await.unwrap();
    let _: () = redis::pipe()
        .atomic()
        .hset("secmesh:policy:versions", 2, "not a policy")
        .set("secmesh:policy:current", 2)
        .publish("secmesh:policy:events", 2)
        .query_async(&mut con)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        subs.iter().all(|s| s.version() == 1),
        "the last good version stays"
    );
    assert!(policies.iter().all(allows));
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let out = secmesh(&["policy", "status", "--redis", &url, "--json"]);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        if out.status.code() == Some(1)
            && v["stragglers"] == 3
            && v["instances"][0]["error"]
                .as_str()
                .is_some_and(|e| e.contains("version 2"))
        {
            break;
        }
        assert!(Instant::now() < deadline, "{v}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[test]
fn unreachable_redis_is_exit_2() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("redis://127.0.0.1:{port}/");
    let out = secmesh(&["policy", "status", "--redis", &url]);
    assert_eq!(out.status.code(), Some(2));
}
