//! Revocations shared through a real `redis-server` on 127.0.0.1 (a random port, its own
//! directory): three replicas, propagation delays over 1,000 revocations, a resync that heals
//! what the channel missed, Redis killed and restarted, fail-open and fail-closed.
//!
//! Needs `redis-server` (the Debian package `redis-server`): skipped with a loud message when it
//! is missing outside CI, a failure in CI (`CI=true`).
#![cfg(feature = "redis")]
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use secmesh_core::ExpiryClass;
use secmesh_tokens::revocation::RevocationKey;
use secmesh_tokens::revocation::redis::{Publisher, Replica, ReplicaConfig, WhenUnreachable};
use secmesh_tokens::{Algorithm, ErrorKind, Issuer, KeySet, MintRequest, SigningKey, Verifier};

use secmesh_testkit::redis::RedisServer as Redis;

fn config(r: &Redis) -> ReplicaConfig {
    ReplicaConfig::new(r.url())
        .resync(Duration::from_millis(300))
        .backoff(Duration::from_millis(50), Duration::from_millis(200))
}

async fn eventually(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !f() {
        assert!(Instant::now() < deadline, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_reaches_every_replica() {
    let Some(redis) = Redis::start() else { return };
    let key = SigningKey::generate(Algorithm::EdDsa).unwrap();
    let keys = KeySet::single(key.verifying_key(Some("k1".into())));
    let issuer = Issuer::new(key, "k1", "https://sts.test").audience("mesh.test");
    let replicas: Vec<Replica> = (0..3)
        .map(|_| Replica::start(config(&redis)).unwrap())
        .collect();
    for r in &replicas {
        assert!(r.wait_in_step(Duration::from_secs(5)).await);
    }
    let verifiers: Vec<Verifier> = replicas
        .iter()
        .map(|r| Verifier::new(keys.clone()).revocation(r.revocation()))
        .collect();
    let publisher = Publisher::connect(&redis.url(), "secmesh").await.unwrap();

    // Each kind, issued through the publisher (as `secmesh revoke` does), refused everywhere.
    let tokens: Vec<String> = ["user:a", "user:b", "user:c", "user:d"]
        .iter()
        .map(|s| {
            issuer
                .mint(&MintRequest::new(*s, ExpiryClass::Fast))
                .unwrap()
        })
        .collect();
    let claims: Vec<_> = tokens
        .iter()
        .map(|t| verifiers[0].verify(t).unwrap().into_inner())
        .collect();
    publisher
        .revoke(RevocationKey::Jti(claims[0].jti.clone()), None)
        .await
        .unwrap();
    publisher
        .revoke(
            RevocationKey::Sub("user:b".into()),
            Some("account closed".into()),
        )
        .await
        .unwrap();
    publisher
        .revoke(RevocationKey::Txn(claims[2].txn.unwrap()), None)
        .await
        .unwrap();
    for t in tokens.iter().take(3) {
        for v in &verifiers {
            let v = v.clone();
            eventually(
                "a revocation reaches a replica",
                Duration::from_secs(5),
                || v.verify(t).is_err_and(|e| e.kind() == ErrorKind::Revoked),
            )
            .await;
        }
    }
    assert!(verifiers.iter().all(|v| v.verify(&tokens[3]).is_ok()));
    publisher
        .revoke(RevocationKey::Kid("k1".into()), None)
        .await
        .unwrap();
    for v in &verifiers {
        let v = v.clone();
        let t = tokens[3].clone();
        eventually("a key revocation", Duration::from_secs(5), || {
            v.verify(&t).is_err()
        })
        .await;
    }

    // Propagation: 1,000 revocations, the time until all three replicas hold each.
    let mut delays = Vec::with_capacity(1000);
    for i in 0..1000 {
        let jti = format!("prop-{i}");
        let started = Instant::now();
        publisher
            .revoke(RevocationKey::Jti(jti.clone()), None)
            .await
            .unwrap();
        let probe = secmesh_core::claims::Claims::new(
            "i",
            "user:x".parse().unwrap(),
            secmesh_core::claims::Audience::One("a".into()),
            1,
            2,
            jti,
            ExpiryClass::Fast,
        );
        loop {
            if replicas
                .iter()
                .all(|r| r.revocation().is_revoked(&probe, None))
            {
                break;
            }
            assert!(started.elapsed() < Duration::from_secs(5));
            tokio::task::yield_now().await;
        }
        delays.push(started.elapsed());
    }
    delays.sort();
    println!(
        "revocation propagation to 3 replicas over 1000 revocations (publish to all three hold it): p50 {:?}, p99 {:?}, max {:?}",
        delays[500], delays[990], delays[999]
    );
    let s = replicas[0].status();
    assert!(s.connected && s.syncs >= 1 && s.messages >= 1000, "{s:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resync_heals_what_the_channel_missed() {
    let Some(redis) = Redis::start() else { return };
    let publisher = Publisher::connect(&redis.url(), "secmesh").await.unwrap();
    // Revoked before the replica existed: read at start.
    publisher
        .revoke(RevocationKey::Jti("early".into()), None)
        .await
        .unwrap();
    let replica = Replica::start(config(&redis)).unwrap();
    assert!(replica.wait_in_step(Duration::from_secs(5)).await);
    assert_eq!(replica.set().len(), 1);
    // Written without an announcement (a lost message), and a malformed field: the next
    // resync takes the first and ignores the second.
    let client = redis::Client::open(redis.url()).unwrap();
    let mut con = client.get_multiplexed_async_connection().await.unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let entry = format!(
        r#"{{"key":{{"kind":"jti","value":"silent"}},"at":{now},"until":{}}}"#,
        now + 3600
    );
    let _: () = redis::cmd("HSET")
        .arg("secmesh:revoked")
        .arg("jti:silent")
        .arg(entry)
        .arg("jti:junk")
        .arg("not json")
        .query_async(&mut con)
        .await
        .unwrap();
    let set = replica.set().clone();
    eventually(
        "the resync takes the silent entry",
        Duration::from_secs(5),
        || set.len() == 2,
    )
    .await;
    assert!(replica.status().malformed >= 1);
    // A malformed announcement is ignored, not fatal.
    let _: () = redis::cmd("PUBLISH")
        .arg("secmesh:revoked:events")
        .arg("{\"key\":1}")
        .query_async(&mut con)
        .await
        .unwrap();
    publisher
        .revoke(RevocationKey::Jti("after".into()), None)
        .await
        .unwrap();
    eventually("the replica still follows", Duration::from_secs(5), || {
        set.len() == 3
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_and_restarted() {
    let Some(mut redis) = Redis::start() else {
        return;
    };
    let key = SigningKey::generate(Algorithm::EdDsa).unwrap();
    let keys = KeySet::single(key.verifying_key(Some("k1".into())));
    let issuer = Issuer::new(key, "k1", "https://sts.test").audience("mesh.test");
    let open = Replica::start(config(&redis)).unwrap();
    let closed = Replica::start(
        config(&redis).when_unreachable(WhenUnreachable::RefuseAfter(Duration::from_millis(500))),
    )
    .unwrap();
    assert!(open.wait_in_step(Duration::from_secs(5)).await);
    assert!(closed.wait_in_step(Duration::from_secs(5)).await);
    let publisher = Publisher::connect(&redis.url(), "secmesh").await.unwrap();
    publisher
        .revoke(RevocationKey::Sub("user:mallory".into()), None)
        .await
        .unwrap();
    let v_open = Verifier::new(keys.clone()).revocation(open.revocation());
    let v_closed = Verifier::new(keys.clone()).revocation(closed.revocation());
    let mallory = issuer
        .mint(&MintRequest::new("user:mallory", ExpiryClass::Fast))
        .unwrap();
    let alice = issuer
        .mint(&MintRequest::new("user:alice", ExpiryClass::Fast))
        .unwrap();
    {
        let v = v_open.clone();
        let m = mallory.clone();
        eventually("revoked", Duration::from_secs(5), || v.verify(&m).is_err()).await;
    }

    redis.kill();
    let started = Instant::now();
    eventually("both notice", Duration::from_secs(5), || {
        !open.status().connected && !closed.status().connected
    })
    .await;
    // Fail-open: the last replica keeps deciding; nothing hangs.
    assert!(v_open.verify(&alice).is_ok());
    assert!(v_open.verify(&mallory).is_err());
    // Fail-closed: after the bound, every token is refused.
    {
        let v = v_closed.clone();
        let a = alice.clone();
        eventually("fail-closed refuses", Duration::from_secs(5), || {
            v.verify(&a).is_err()
        })
        .await;
    }
    assert!(closed.status().refusing && !open.status().refusing);
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(open.status().last_error.is_some());

    // Redis back (its append-only file keeps the revocations): both resync, no restart.
    redis.run();
    {
        let v = v_closed.clone();
        let a = alice.clone();
        eventually("fail-closed recovers", Duration::from_secs(10), || {
            v.verify(&a).is_ok()
        })
        .await;
    }
    assert!(
        v_closed.verify(&mallory).is_err(),
        "the replica resynced the revocation"
    );
    let publisher = Publisher::connect(&redis.url(), "secmesh").await.unwrap();
    publisher
        .revoke(RevocationKey::Sub("user:alice".into()), None)
        .await
        .unwrap();
    for v in [&v_open, &v_closed] {
        let v = v.clone();
        let a = alice.clone();
        eventually(
            "a new revocation after the restart",
            Duration::from_secs(10),
            || v.verify(&a).is_err(),
        )
        .await;
    }
}
