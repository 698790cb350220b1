//! A rate-limit decision in process (issue 16's measure: <= 100 ns), against `governor`'s keyed
//! limiter (the crate a Rust service would pick), in the same run: 10,000 keys held, the key
//! looked up by its string (an authenticated subject), 1,000,000/s so that every decision is an
//! allow that updates the state. Then the declared limit's cost in the one stack (a cache hit
//! with and without a `[[limit]]` that applies), and the shared decision through a real
//! `redis-server` on 127.0.0.1 (skipped without one): p50/p99 of one decision, and the
//! decisions per second one instance sustains with 64 requests in flight.
//!
//! ```text
//! cargo bench -p secmesh --bench limit
//! ```
#![allow(missing_docs, clippy::unwrap_used)]

use std::hint::black_box;
use std::num::NonZeroU32;

use criterion::{Criterion, criterion_group, criterion_main};
use governor::{Quota, RateLimiter};
use secmesh::core::limit::Rate;
use secmesh::tower::limit::LocalLimiter;

fn bench(c: &mut Criterion) {
    let keys: Vec<String> = (0..10_000).map(|i| format!("user:u{i:06}")).collect();
    let ours = LocalLimiter::new(Rate::new(1_000_000, 1).unwrap().burst(1000).unwrap());
    let theirs = RateLimiter::keyed(
        Quota::per_second(NonZeroU32::new(1_000_000).unwrap())
            .allow_burst(NonZeroU32::new(1000).unwrap()),
    );
    for k in &keys {
        ours.check(k);
        let _ = theirs.check_key(k);
    }
    let mut g = c.benchmark_group("limit");
    let mut i = 0usize;
    g.bench_function("secmesh_local_10k_keys", |b| {
        b.iter(|| {
            i = (i + 7919) % keys.len();
            black_box(ours.check(black_box(&keys[i])).allowed())
        })
    });
    let mut j = 0usize;
    g.bench_function("governor_keyed_10k_keys", |b| {
        b.iter(|| {
            j = (j + 7919) % keys.len();
            black_box(theirs.check_key(black_box(&keys[j])).is_ok())
        })
    });
    g.finish();
}

const POLICY: &str = "[[rule]]\nid = \"all\"\neffect = \"allow\"\nsubjects = [\"user:*\"]\nverbs = [\"read\"]\nobjects = [\"orders/**\"]\n";

fn bench_stack(c: &mut Criterion) {
    use http::{Request, Response};
    use secmesh::core::ExpiryClass;
    use secmesh::core::policy::{Format, Policy, SharedPolicy};
    use secmesh::tokens::{Algorithm, Issuer, KeySet, MintRequest, SigningKey, Verifier};
    use secmesh_tower::SecureLayer;
    use tower::{Layer, ServiceExt, service_fn};

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let key = SigningKey::from_hmac_secret(Algorithm::Hs256, &[3; 32]).unwrap();
    let keys = KeySet::single(key.verifying_key(Some("k".into())));
    let issuer = Issuer::new(key, "k", "gw").audience("orders");
    let token = issuer
        .mint(&MintRequest::new("user:alice", ExpiryClass::Fast))
        .unwrap();
    let limited = format!(
        "{POLICY}[[limit]]\nid = \"reads-per-user\"\nrate = \"1000000000/s\"\nburst = 1000000\nverbs = [\"read\"]\nobjects = [\"orders/**\"]\n"
    );
    let mut g = c.benchmark_group("limit/stack-cache-hit");
    for (name, text) in [("no-limit", POLICY.to_owned()), ("one-limit", limited)] {
        let policy = SharedPolicy::new(Policy::parse(&text, Format::Toml).unwrap());
        let svc = SecureLayer::builder(Verifier::new(keys.clone()), policy)
            .build()
            .unwrap()
            .layer(service_fn(|_: Request<()>| async {
                Ok::<_, std::convert::Infallible>(Response::new(()))
            }));
        let mk = || {
            Request::get("/orders/1")
                .header("txn-token", &token)
                .body(())
                .unwrap()
        };
        assert_eq!(
            rt.block_on(svc.clone().oneshot(mk())).unwrap().status(),
            200
        );
        g.bench_function(name, |b| {
            b.iter(|| black_box(rt.block_on(svc.clone().oneshot(mk())).unwrap().status()))
        });
    }
    g.finish();
}

/// One instance's shared decisions through Redis: latency of one, and throughput with 64 in
/// flight. Printed (percentiles are not criterion's), and a criterion row for the median.
fn bench_shared(c: &mut Criterion) {
    use secmesh_tower::limit::RedisLimiter;
    use std::time::{Duration, Instant};

    let Some(redis) = secmesh_testkit::redis::RedisServer::start() else {
        return;
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let rate = Rate::new(1_000_000_000, 1)
        .unwrap()
        .burst(1_000_000)
        .unwrap();
    let limiter = rt
        .block_on(RedisLimiter::connect(&redis.url(), "bench", rate, 3))
        .unwrap();
    let mut lat: Vec<Duration> = rt.block_on(async {
        let mut lat = Vec::with_capacity(20_000);
        for i in 0..20_000u32 {
            let key = format!("user:u{}", i % 1000);
            let t = Instant::now();
            assert!(limiter.check(&key).await.allowed());
            lat.push(t.elapsed());
        }
        lat
    });
    lat.sort();
    let pct = |p: f64| lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)];
    let throughput = rt.block_on(async {
        let done = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let deadline = Instant::now() + Duration::from_secs(2);
        let mut tasks = Vec::new();
        for t in 0..64u32 {
            let (l, done) = (limiter.clone(), done.clone());
            tasks.push(tokio::spawn(async move {
                let key = format!("user:t{t}");
                while Instant::now() < deadline {
                    l.check(&key).await;
                    done.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        done.load(std::sync::atomic::Ordering::Relaxed) as f64 / 2.0
    });
    println!(
        "limit/shared-redis: one decision p50 {:?} p99 {:?}; 64 in flight: {throughput:.0} decisions/s (status {:?})",
        pct(0.50),
        pct(0.99),
        limiter.status()
    );
    let mut g = c.benchmark_group("limit");
    g.bench_function("shared_redis_one_decision", |b| {
        b.iter(|| black_box(rt.block_on(limiter.check("user:alice")).allowed()))
    });
    g.finish();
}

criterion_group!(benches, bench, bench_stack, bench_shared);
criterion_main!(benches);
