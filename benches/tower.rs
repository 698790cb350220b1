//! The inbound stack per request: a bare axum service, secmesh authenticate + authorize as two
//! layers (verified-token cache hit and miss) and as the one `SecureLayer` (cache hit), and
//! jwt-authorizer doing the same job (verify the JWT,
//! check a claim) on its own axum 0.7, in one run; and the one stack on a cache hit from 1, 2,
//! 4, ... threads at once (`inbound-threads/`), with and without the audit hand-off.
//!
//! ```text
//! cargo bench -p secmesh --bench tower
//! ```
#![allow(missing_docs, clippy::unwrap_used)]

use std::hint::black_box;
use std::sync::Arc;
use std::sync::Barrier;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use http::{Request, StatusCode};
use secmesh::audit::chain::AuditKey;
use secmesh::audit::sink::{Fsync, JsonLinesConfig, JsonLinesSink};
use secmesh::audit::{Auditor, FullPolicy};
use secmesh::core::policy::{Format, Policy, SharedPolicy};
use secmesh::core::{ExpiryClass, ManualClock};
use secmesh::tokens::{Algorithm, Issuer, KeySet, MintRequest, SigningKey, Verifier};
use secmesh_tower::{AuthenticateLayer, AuthorizeLayer, SecureLayer};
use tower::ServiceExt;

const NOW: u64 = 1_800_000_000;
const ISS: &str = "https://gw.mesh.test";
const AUD: &str = "mesh.test";
const PATH: &str = "/orders/user:alice/7";

fn policy() -> SharedPolicy {
    let mut text = String::from(
        "[[rule]]\nid = \"owners-read-own-orders\"\neffect = \"allow\"\nsubjects = [\"user:*\"]\nverbs = [\"read\"]\nobjects = [\"orders/{sub}/**\"]\n",
    );
    for i in 0..9 {
        text.push_str(&format!(
            "[[rule]]\nid = \"svc-{i}\"\neffect = \"allow\"\nsubjects = [\"svc:{i}\"]\nverbs = [\"*\"]\nobjects = [\"things/{i}/**\"]\n"
        ));
    }
    SharedPolicy::new(Policy::parse(&text, Format::Toml).unwrap())
}

fn ed25519_spki_pem(raw: &[u8]) -> String {
    use base64::Engine as _;
    let mut der = vec![
        0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
    ];
    der.extend_from_slice(raw);
    format!(
        "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
        base64::engine::general_purpose::STANDARD.encode(der)
    )
}

async fn ok() -> &'static str {
    "ok"
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let clock = Arc::new(ManualClock::new(NOW));

    for alg in [Algorithm::EdDsa, Algorithm::Hs256] {
        const SECRET: &str = "a-shared-secret-of-32-bytes-long";
        let key = match alg {
            Algorithm::Hs256 => SigningKey::from_hmac_secret(alg, SECRET.as_bytes()).unwrap(),
            _ => SigningKey::generate(alg).unwrap(),
        };
        let verifying = key.verifying_key(Some("k1".into()));
        let jwk = verifying.to_jwk();
        let keys = Arc::new(KeySet::single(verifying));
        let verifier = || {
            // The route's class is the authorize layer's (the verifier's is deprecated).
            Verifier::new(keys.clone())
                .issuer(ISS)
                .audience(AUD)
                .clock(clock.clone())
        };
        let issuer = Issuer::new(key, "k1", ISS)
            .audience(AUD)
            .clock(clock.clone());
        let req = MintRequest::new("user:alice", ExpiryClass::Fast).grant("read", "orders/**");
        let token = issuer.mint(&req).unwrap();
        let many: Vec<String> = (0..4096).map(|_| issuer.mint(&req).unwrap()).collect();

        let bare = axum::Router::new().route("/orders/{owner}/{id}", axum::routing::get(ok));
        let hit = bare
            .clone()
            .layer(AuthorizeLayer::new(policy()).max_class(ExpiryClass::Fast))
            .layer(AuthenticateLayer::from_verifier(verifier(), 10_000));
        // The one stack (authenticate + authorize in one service, no audit: the same job as the
        // two layers above and as jwt-authorizer).
        let stack = bare.clone().layer(
            SecureLayer::builder(verifier(), policy())
                .max_class(ExpiryClass::Fast)
                .cache_capacity(10_000)
                .build()
                .unwrap(),
        );
        // The same stack without metrics and spans (observe(false)): the difference is what
        // they cost with no exporter installed and no subscriber listening.
        let unobserved = bare.clone().layer(
            SecureLayer::builder(verifier(), policy())
                .max_class(ExpiryClass::Fast)
                .cache_capacity(10_000)
                .observe(false)
                .build()
                .unwrap(),
        );
        let miss = bare
            .clone()
            .layer(AuthorizeLayer::new(policy()).max_class(ExpiryClass::Fast))
            // A cache far smaller than the set of tokens cycled through: (almost) every
            // request verifies.
            .layer(AuthenticateLayer::from_verifier(verifier(), 16));

        let mk = |token: &str| {
            Request::get(PATH)
                .header("txn-token", token)
                .body(axum::body::Body::empty())
                .unwrap()
        };
        let run = |svc: &axum::Router, req: Request<axum::body::Body>| {
            let status = rt.block_on(svc.clone().oneshot(req)).unwrap().status();
            assert_eq!(status, StatusCode::OK);
        };

        // jwt-authorizer: the same key, the same checks (iss, aud, exp, and a claim check that
        // the scope grants reading orders), on axum 0.7.
        let authorizer = rt
            .block_on(async {
                let builder = match alg {
                    Algorithm::EdDsa => {
                        use base64::Engine as _;
                        let x = base64::engine::general_purpose::URL_SAFE_NO_PAD
                            .decode(jwk.x.as_deref().unwrap())
                            .unwrap();
                        jwt_authorizer::JwtAuthorizer::<serde_json::Value>::from_ed_pem_text(
                            &ed25519_spki_pem(&x),
                        )
                    }
                    _ => jwt_authorizer::JwtAuthorizer::<serde_json::Value>::from_secret(SECRET),
                };
                builder
                    .validation(jwt_authorizer::Validation::new().iss(&[ISS]).aud(&[AUD]))
                    .check(|c: &serde_json::Value| {
                        c["scope"]
                            .as_str()
                            .is_some_and(|s| s.split(' ').any(|g| g.starts_with("read:orders/")))
                    })
                    .build()
                    .await
            })
            .ok();
        let jwt_app = authorizer.map(|a| {
            use jwt_authorizer::IntoLayer;
            axum07::Router::new()
                .route("/orders/:owner/:id", axum07::routing::get(ok))
                .layer([a].into_layer())
        });

        let mut g = c.benchmark_group(format!("inbound/{alg}"));
        g.bench_function("bare", |b| b.iter(|| run(&bare, mk(black_box(&token)))));
        run(&hit, mk(&token));
        g.bench_function("secmesh-cache-hit", |b| {
            b.iter(|| run(&hit, mk(black_box(&token))))
        });
        run(&stack, mk(&token));
        g.bench_function("secmesh-stack-cache-hit", |b| {
            b.iter(|| run(&stack, mk(black_box(&token))))
        });
        run(&unobserved, mk(&token));
        g.bench_function("secmesh-stack-cache-hit-unobserved", |b| {
            b.iter(|| run(&unobserved, mk(black_box(&token))))
        });
        let mut i = 0usize;
        g.bench_function("secmesh-cache-miss", |b| {
            b.iter(|| {
                i = (i + 1) % many.len();
                run(&miss, mk(black_box(&many[i])))
            })
        });
        if let Some(app) = &jwt_app {
            let mk07 = |token: &str| {
                Request::get(PATH)
                    .header("authorization", format!("Bearer {token}"))
                    .body(axum07::body::Body::empty())
                    .unwrap()
            };
            let status = rt
                .block_on(app.clone().oneshot(mk07(&token)))
                .unwrap()
                .status();
            assert_eq!(status.as_u16(), 200, "jwt-authorizer accepts the token");
            g.bench_function("jwt-authorizer", |b| {
                b.iter(|| {
                    let res = rt.block_on(app.clone().oneshot(mk07(black_box(&token))));
                    assert_eq!(res.unwrap().status().as_u16(), 200);
                })
            });
        } else {
            eprintln!("jwt-authorizer could not load the {alg} key; not measured");
        }
        g.finish();
    }
}

/// Requests through `svc` from `threads` OS threads at once (each with its own current-thread
/// runtime, all sharing the one service and so its cache, policy and auditor): the wall time for
/// `iters` requests in all. Perfect scaling halves the time per request from 1 to 2 threads.
fn parallel(svc: &axum::Router, token: &str, threads: u64, iters: u64) -> Duration {
    let per = iters.div_ceil(threads);
    let start = Barrier::new(threads as usize + 1);
    let mut began = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .build()
                    .unwrap();
                start.wait();
                for _ in 0..per {
                    let req = Request::get(PATH)
                        .header("txn-token", token)
                        .body(axum::body::Body::empty())
                        .unwrap();
                    let res = rt.block_on(svc.clone().oneshot(black_box(req))).unwrap();
                    assert_eq!(res.status(), StatusCode::OK);
                }
            });
        }
        start.wait();
        began = Instant::now();
    });
    began.elapsed()
}

/// Many cores: the inbound stack on a cache hit (one token, as behind a gateway that keeps
/// re-presenting it) at 1, 2, 4, ... worker threads, up to what the machine has. Rows:
/// `inbound-threads/{bare,stack-cache-hit,stack-audit-cache-hit}/N`; criterion's time is per
/// request (wall / requests), so throughput is its inverse.
fn bench_threads(c: &mut Criterion) {
    let clock = Arc::new(ManualClock::new(NOW));
    let key = SigningKey::generate(Algorithm::EdDsa).unwrap();
    let keys = Arc::new(KeySet::single(key.verifying_key(Some("k1".into()))));
    let verifier = || {
        Verifier::new(keys.clone())
            .issuer(ISS)
            .audience(AUD)
            .clock(clock.clone())
    };
    let issuer = Issuer::new(key, "k1", ISS)
        .audience(AUD)
        .clock(clock.clone());
    let token = issuer
        .mint(&MintRequest::new("user:alice", ExpiryClass::Fast).grant("read", "orders/**"))
        .unwrap();
    let bare = axum::Router::new().route("/orders/{owner}/{id}", axum::routing::get(ok));
    let stack = bare.clone().layer(
        SecureLayer::builder(verifier(), policy())
            .max_class(ExpiryClass::Fast)
            .cache_capacity(10_000)
            .build()
            .unwrap(),
    );
    // With the audit hand-off: the chained file sink, fsync per batch, on its writer thread.
    let dir = tempfile::tempdir().unwrap();
    let sink = JsonLinesSink::open(
        dir.path().join("orders.jsonl"),
        JsonLinesConfig::default()
            .with_key(AuditKey::generate().unwrap())
            .with_fsync(Fsync::PerBatch)
            .with_checkpoints(10_000, None),
    )
    .unwrap();
    let auditor = Auditor::builder(sink)
        .capacity(1 << 16)
        .full_policy(FullPolicy::Block)
        .spawn();
    let audited = bare.clone().layer(
        SecureLayer::builder(verifier(), policy())
            .audit(auditor.clone(), "orders")
            .max_class(ExpiryClass::Fast)
            .cache_capacity(10_000)
            .build()
            .unwrap(),
    );

    let cores = std::thread::available_parallelism().map_or(1, |n| n.get() as u64);
    let counts: Vec<u64> = [1, 2, 4, 8, 16]
        .into_iter()
        .filter(|&n| n <= cores.max(2))
        .collect();
    let mut g = c.benchmark_group("inbound-threads");
    g.throughput(Throughput::Elements(1));
    for (name, svc) in [
        ("bare", &bare),
        ("stack-cache-hit", &stack),
        ("stack-audit-cache-hit", &audited),
    ] {
        for &n in &counts {
            g.bench_function(BenchmarkId::new(name, n), |b| {
                b.iter_custom(|iters| parallel(svc, &token, n, iters))
            });
        }
    }
    g.finish();
    drop((stack, audited));
    auditor.shutdown();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(30)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = bench, bench_threads
}
criterion_main!(benches);
