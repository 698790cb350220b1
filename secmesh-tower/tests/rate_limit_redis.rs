//! Shared rate limits through a real `redis-server` on 127.0.0.1 (a random port): three
//! instances under load hold one limit together; local limiters alone let three times as much
//! through; Redis killed mid-run and restarted: local fallback at a third of the rate, then
//! shared again without a restart. Skipped loudly without redis-server outside CI.
#![cfg(feature = "redis")]
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use secmesh_core::limit::Rate;
use secmesh_tower::limit::{LocalLimiter, RedisLimiter};

use secmesh_testkit::redis::RedisServer as Redis;

const RATE: u64 = 100;
const BURST: u64 = 10;

/// Three instances, each hammered by its own task for `secs`: how many requests passed.
async fn load<F, Fut>(secs: f64, check: F) -> (u64, f64)
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    let check = Arc::new(check);
    let passed = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let deadline = started + Duration::from_secs_f64(secs);
    let mut tasks = Vec::new();
    for instance in 0..3 {
        let (check, passed) = (check.clone(), passed.clone());
        tasks.push(tokio::spawn(async move {
            while Instant::now() < deadline {
                if check(instance).await {
                    passed.fetch_add(1, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_micros(500)).await;
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    (
        passed.load(Ordering::Relaxed),
        started.elapsed().as_secs_f64(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_hold_one_limit_together() {
    let Some(redis) = Redis::start() else { return };
    let rate = Rate::new(RATE, 1).unwrap().burst(BURST).unwrap();
    let mut instances = Vec::new();
    for _ in 0..3 {
        instances.push(
            RedisLimiter::connect(&redis.url(), "t1", rate, 3)
                .await
                .unwrap(),
        );
    }
    let instances = Arc::new(instances);
    let shared = instances.clone();
    let (passed, secs) = load(2.0, move |i| {
        let l = shared[i].clone();
        async move { l.check("user:alice").await.allowed() }
    })
    .await;
    let expected = BURST as f64 + RATE as f64 * secs;
    println!(
        "shared limit {RATE}/s burst {BURST}, 3 instances, {secs:.2} s: {passed} passed (expected {expected:.0})"
    );
    assert!(
        (passed as f64 - expected).abs() <= expected * 0.10,
        "{passed} passed, expected {expected:.0} within 10%"
    );
    assert!(
        instances
            .iter()
            .all(|l| !l.status().degraded && l.status().shared_decisions > 0)
    );

    // The same load on local limiters only: each instance lets its own 100/s through.
    let locals: Arc<Vec<LocalLimiter>> =
        Arc::new((0..3).map(|_| LocalLimiter::new(rate)).collect());
    let (local_passed, secs) = load(2.0, move |i| {
        let v = locals[i].check("user:alice").allowed();
        async move { v }
    })
    .await;
    let expected = BURST as f64 + RATE as f64 * secs;
    println!(
        "local limiters only: {local_passed} passed, {:.1}x the limit",
        local_passed as f64 / expected
    );
    assert!(local_passed as f64 > 2.5 * expected, "{local_passed}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_and_restarted() {
    let Some(mut redis) = Redis::start() else {
        return;
    };
    let rate = Rate::new(RATE, 1).unwrap().burst(BURST).unwrap();
    let limiter = RedisLimiter::connect(&redis.url(), "t2", rate, 3)
        .await
        .unwrap();
    assert!(limiter.check("k").await.allowed());
    redis.kill();
    // Every decision bounded; the local fallback holds a third of the rate.
    let started = Instant::now();
    let mut passed = 0;
    for _ in 0..200 {
        let t = Instant::now();
        if limiter.check("k").await.allowed() {
            passed += 1;
        }
        assert!(t.elapsed() < Duration::from_secs(2), "a decision hung");
    }
    let s = limiter.status();
    assert!(s.degraded && s.local_decisions > 0, "{s:?}");
    let expected = (BURST / 3) as f64 + (RATE / 3) as f64 * started.elapsed().as_secs_f64();
    assert!(
        f64::from(passed) <= expected * 1.1 + 1.0,
        "{passed} > {expected:.0}"
    );
    redis.run();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        limiter.check("k").await;
        if !limiter.status().degraded {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the limiter did not go back to Redis"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

mod through_the_stack {
    //! The same through the one stack: three real axum servers, each a `SecureLayer` whose
    //! declared limit is kept in Redis.
    use std::net::SocketAddr;

    use axum::Router;
    use axum::routing::get;
    use bytes::Bytes;
    use http::{Request, StatusCode};
    use http_body_util::Full;
    use hyper_util::client::legacy::Client;
    use hyper_util::client::legacy::connect::HttpConnector;
    use hyper_util::rt::TokioExecutor;
    use secmesh_core::ExpiryClass;
    use secmesh_core::policy::{Format, Policy, SharedPolicy};
    use secmesh_tokens::{Algorithm, Issuer, KeySet, MintRequest, SigningKey, Verifier};
    use secmesh_tower::SecureLayer;

    use super::*;

    /// The one rule of both policies here: users may read orders.
    const USERS_READ_ORDERS: &str = r#"
[[rule]]
id = "users"
effect = "allow"
subjects = ["user:*"]
verbs = ["read"]
objects = ["orders/**"]
"#;

    const LIMIT: &str = r#"
[[limit]]
id = "reads-per-user"
rate = "100/s"
burst = 10
"#;

    type HttpClient = Client<HttpConnector, Full<Bytes>>;

    async fn serve(verifier: Verifier, limiter: RedisLimiter) -> SocketAddr {
        serve_with(&format!("{USERS_READ_ORDERS}{LIMIT}"), verifier, limiter).await
    }

    async fn serve_with(policy: &str, verifier: Verifier, limiter: RedisLimiter) -> SocketAddr {
        let policy = SharedPolicy::new(Policy::parse(policy, Format::Toml).unwrap());
        let secure = SecureLayer::builder(verifier, policy)
            .limit_store(limiter)
            .build()
            .unwrap();
        let app = Router::new()
            .route("/orders/{id}", get(|| async { "ok" }))
            .layer(secure);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        addr
    }

    async fn fetch(client: &HttpClient, addr: SocketAddr, token: &str) -> StatusCode {
        let req = Request::get(format!("http://{addr}/orders/1"))
            .header("txn-token", token)
            .body(Full::new(Bytes::new()))
            .unwrap();
        let res = client.request(req).await.unwrap();
        if res.status() == StatusCode::TOO_MANY_REQUESTS {
            let h = res.headers();
            assert!(h.contains_key("retry-after") && h.contains_key("ratelimit"));
            assert_eq!(h["ratelimit-policy"], r#""reads-per-user";q=100;w=1"#);
        }
        res.status()
    }

    /// Several shared limits on one request: their round trips are awaited together, and
    /// the verdicts are read in the policy's order (the first enforced refusal decides; a
    /// shadow limit never refuses).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn several_shared_limits_decide_in_the_policys_order() {
        let Some(redis) = Redis::start() else {
            return;
        };
        let limits = r#"
[[limit]]
id = "shadow-one"
rate = "1/h"
mode = "shadow"

[[limit]]
id = "wide"
rate = "1000/s"

[[limit]]
id = "two-per-hour"
rate = "2/h"

[[limit]]
id = "three-per-hour"
rate = "3/h"
"#;
        let key = SigningKey::from_hmac_secret(Algorithm::Hs256, &[6; 32]).unwrap();
        let keys = KeySet::single(key.verifying_key(Some("k".into())));
        let token = Issuer::new(key, "k", "gw")
            .audience("orders")
            .mint(&MintRequest::new("user:alice", ExpiryClass::Fast))
            .unwrap();
        let limiter = RedisLimiter::for_limits(&redis.url(), "order", 1)
            .await
            .unwrap();
        let policy = format!("{USERS_READ_ORDERS}{limits}");
        let addr = serve_with(&policy, Verifier::new(keys), limiter.clone()).await;
        let client: HttpClient = Client::builder(TokioExecutor::new()).build_http();
        let mut seen = Vec::new();
        for _ in 0..5 {
            let req = Request::get(format!("http://{addr}/orders/1"))
                .header("txn-token", token.as_str())
                .body(Full::new(Bytes::new()))
                .unwrap();
            let res = client.request(req).await.unwrap();
            let policy = res
                .headers()
                .get("ratelimit-policy")
                .map(|v| v.to_str().unwrap().to_owned());
            seen.push((res.status(), policy));
        }
        let refused_by = |id: &str, q: u32| {
            (
                StatusCode::TOO_MANY_REQUESTS,
                Some(format!(r#""{id}";q={q};w=3600"#)),
            )
        };
        // Two pass (the shadow limit over its rate from the second on refuses nothing); then
        // `two-per-hour` refuses, named before `three-per-hour`, which refuses too from the
        // fourth on.
        assert_eq!(
            seen,
            [
                (StatusCode::OK, None),
                (StatusCode::OK, None),
                refused_by("two-per-hour", 2),
                refused_by("two-per-hour", 2),
                refused_by("two-per-hour", 2),
            ]
        );
        assert!(limiter.status().shared_decisions >= 20);
        assert!(!limiter.is_degraded());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn three_servers_hold_a_declared_limit_together_and_survive_redis() {
        let Some(mut redis) = Redis::start() else {
            return;
        };
        let key = SigningKey::from_hmac_secret(Algorithm::Hs256, &[5; 32]).unwrap();
        let keys = KeySet::single(key.verifying_key(Some("k".into())));
        let issuer = Issuer::new(key, "k", "gw").audience("orders");
        let token = issuer
            .mint(&MintRequest::new("user:alice", ExpiryClass::Fast))
            .unwrap();
        let mut limiters = Vec::new();
        let mut addrs = Vec::new();
        for _ in 0..3 {
            let l = RedisLimiter::for_limits(&redis.url(), "stack", 3)
                .await
                .unwrap();
            addrs.push(serve(Verifier::new(keys.clone()), l.clone()).await);
            limiters.push(l);
        }
        let client: HttpClient = Client::builder(TokioExecutor::new()).build_http();
        let (addrs, token) = (Arc::new(addrs), Arc::new(token));
        let run = |secs: f64| {
            let (client, addrs, token) = (client.clone(), addrs.clone(), token.clone());
            load(secs, move |i| {
                let (client, addr, token) = (client.clone(), addrs[i], token.clone());
                async move {
                    let t = Instant::now();
                    let ok = fetch(&client, addr, &token).await == StatusCode::OK;
                    assert!(t.elapsed() < Duration::from_secs(2), "a request hung");
                    ok
                }
            })
        };
        let (passed, secs) = run(2.0).await;
        let expected = BURST as f64 + RATE as f64 * secs;
        println!(
            "through the stack, 3 servers, {secs:.2} s: {passed} passed (expected {expected:.0})"
        );
        assert!(
            (passed as f64 - expected).abs() <= expected * 0.10,
            "{passed} passed, expected {expected:.0} within 10%"
        );
        assert!(limiters.iter().all(|l| l.status().shared_decisions > 0));

        // Redis gone: every request still answered within its bound, each server at a third
        // of the rate (so the fleet at about the rate), and it says so.
        redis.kill();
        let (passed, secs) = run(2.0).await;
        let ceiling = (BURST / 3 + 1) as f64 * 3.0 + RATE as f64 * secs;
        println!("Redis down: {passed} passed in {secs:.2} s (at most {ceiling:.0})");
        assert!(passed as f64 <= ceiling * 1.1, "{passed} > {ceiling:.0}");
        assert!(passed > 0, "the local fallback refused everything");
        assert!(limiters.iter().all(|l| l.status().local_decisions > 0));

        // Back: shared again without a restart.
        redis.run();
        let deadline = Instant::now() + Duration::from_secs(15);
        while limiters.iter().any(RedisLimiter::is_degraded) {
            for &addr in addrs.iter() {
                fetch(&client, addr, &token).await;
            }
            assert!(
                Instant::now() < deadline,
                "the servers did not go back to Redis"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}
