//! The Txn-Token Service in process (issue 15): what one `Sts::exchange` costs (no HTTP, no
//! audit) next to its floor in the same run, the signature work an exchange cannot avoid: one
//! verification of the subject token plus one signature of the issued token.
//!
//! - `sts/idp-<subject alg>/ring-<ring alg>/exchange`: an IdP access token (EdDSA or ES256)
//!   exchanged for a txn-token signed with the ring's key (EdDSA, the default, or ES256), with
//!   `request_context` and `request_details`, the policy narrowing nothing;
//! - `.../floor`: `IdpVerifier::verify` of the same token + `Issuer::sign_claims` of the claims
//!   that exchange issues (the same size), with the ring's key; `.../verify` and `.../sign`
//!   apart;
//! - `sts/idp-eddsa/ring-eddsa/endpoint`: the same exchange through the token endpoint
//!   (`TxnTokenService`) in memory: the form body read and decoded, the JSON answer built; no
//!   HTTP, no TLS; `.../request-form`, the form body decoded alone;
//!   `.../response-json`, the answer's JSON body alone;
//! - `sts/replace/ring-<alg>/exchange`: a txn-token replaced (same scope) by a service; its
//!   floor is the service's own `Verifier::verify` + the same signature.
//!
//! At the end it prints each exchange over its floor and the share of the exchange spent in
//! the floor's signature work (medians of criterion's samples, same run).
//!
//! ```text
//! cargo bench -p secmesh --bench sts -- --warm-up-time 1 --measurement-time 3
//! ```
#![allow(missing_docs, clippy::unwrap_used)]

#[path = "support/sts_mesh.rs"]
mod sts_mesh;

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Bencher, Criterion, criterion_group, criterion_main};
use secmesh::core::PeerIdentity;
use secmesh::core::claims::Scope;
use secmesh::core::exchange::{SubjectToken, SubjectTokenType, TxnTokenRequest};
use secmesh::tokens::Algorithm;
use secmesh_tower::sts::TxnTokenService;
use tower::ServiceExt;

use sts_mesh::{GATEWAY, ORDERS, StsMesh, TD};

/// Per-iteration times of every sample criterion takes, by benchmark id.
#[derive(Default)]
struct Samples(RefCell<BTreeMap<String, Vec<f64>>>);

impl Samples {
    /// Time `iters` calls of `f` for criterion, and keep the time per call.
    fn time(&self, b: &mut Bencher<'_>, id: &str, mut f: impl FnMut(u64) -> Duration) {
        b.iter_custom(|iters| {
            let d = f(iters);
            self.0
                .borrow_mut()
                .entry(id.to_owned())
                .or_default()
                .push(d.as_nanos() as f64 / iters as f64);
            d
        });
    }

    /// The median time per call, in µs.
    fn median(&self, id: &str) -> f64 {
        let mut v = self.0.borrow().get(id).cloned().unwrap_or_default();
        if v.is_empty() {
            return f64::NAN;
        }
        v.sort_by(f64::total_cmp);
        v[v.len() / 2] / 1000.0
    }
}

fn alg_word(alg: Algorithm) -> &'static str {
    match alg {
        Algorithm::EdDsa => "eddsa",
        Algorithm::Es256 => "es256",
        _ => "other",
    }
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let samples = Samples::default();
    let mut rows = Vec::new();
    let mut endpoint = None;
    eprintln!("secmesh-tokens backend: {}", secmesh::tokens::BACKEND);

    for ring_alg in [Algorithm::EdDsa, Algorithm::Es256] {
        let mesh = StsMesh::new(ring_alg);
        let ring = alg_word(ring_alg);
        for subject_alg in [Algorithm::EdDsa, Algorithm::Es256] {
            let token = mesh.idp_token(subject_alg);
            let ask = StsMesh::ask(&token);
            let issued = rt.block_on(mesh.sts.exchange(GATEWAY, &ask)).unwrap();
            eprintln!(
                "idp-{} token {} bytes -> ring-{ring} txn-token {} bytes",
                alg_word(subject_alg),
                token.len(),
                issued.token.len()
            );
            let base = format!("idp-{}/ring-{ring}", alg_word(subject_alg));
            let mut g = c.benchmark_group(format!("sts/{base}"));
            g.bench_function("exchange", |b| {
                samples.time(b, &format!("{base}/exchange"), |iters| {
                    rt.block_on(async {
                        let start = Instant::now();
                        for _ in 0..iters {
                            black_box(mesh.sts.exchange(GATEWAY, black_box(&ask)).await.unwrap());
                        }
                        start.elapsed()
                    })
                })
            });
            g.bench_function("floor", |b| {
                samples.time(b, &format!("{base}/floor"), |iters| {
                    let start = Instant::now();
                    for _ in 0..iters {
                        black_box(mesh.floor(black_box(&token), &issued.claims));
                    }
                    start.elapsed()
                })
            });
            g.bench_function("verify", |b| {
                b.iter(|| black_box(mesh.idp.verify(black_box(&token)).unwrap()))
            });
            g.bench_function("sign", |b| {
                b.iter(|| black_box(mesh.issuer.sign_claims(black_box(&issued.claims)).unwrap()))
            });
            if ring_alg == Algorithm::EdDsa && subject_alg == Algorithm::EdDsa {
                let form = bytes::Bytes::from(ask.to_form());
                let service = TxnTokenService::<String>::new(mesh.sts.clone());
                let peer = PeerIdentity {
                    spiffe_id: GATEWAY.parse().unwrap(),
                    x5t_s256: String::new(),
                };
                g.bench_function("endpoint", |b| {
                    samples.time(b, &format!("{base}/endpoint"), |iters| {
                        rt.block_on(async {
                            let start = Instant::now();
                            for _ in 0..iters {
                                let mut req = http::Request::post("/token")
                                    .header(
                                        http::header::CONTENT_TYPE,
                                        "application/x-www-form-urlencoded",
                                    )
                                    .body(http_body_util::Full::new(form.clone()))
                                    .unwrap();
                                req.extensions_mut().insert(peer.clone());
                                let res = service.clone().oneshot(req).await.unwrap();
                                assert_eq!(res.status(), http::StatusCode::OK);
                                black_box(res);
                            }
                            start.elapsed()
                        })
                    })
                });
                // The request's form body decoded alone.
                g.bench_function("request-form", |b| {
                    b.iter(|| black_box(TxnTokenRequest::from_form(black_box(&form)).unwrap()))
                });
                // The answer's JSON body alone.
                g.bench_function("response-json", |b| {
                    b.iter(|| black_box(issued.response().to_json()))
                });
                endpoint = Some(base.clone());
            }
            g.finish();
            rows.push(base);
        }

        // A service replacing the txn-token it was called with (renewal, same scope).
        let issued = rt
            .block_on(
                mesh.sts
                    .exchange(GATEWAY, &StsMesh::ask(&mesh.idp_token(Algorithm::EdDsa))),
            )
            .unwrap();
        let replace = TxnTokenRequest::new(
            TD,
            Scope::new("read:orders/{sub}/42").unwrap(),
            SubjectToken::new(issued.token.clone()),
            SubjectTokenType::TxnToken,
        );
        let replaced = rt.block_on(mesh.sts.exchange(ORDERS, &replace)).unwrap();
        let own = mesh.sts.verifier();
        let base = format!("replace/ring-{ring}");
        let mut g = c.benchmark_group(format!("sts/{base}"));
        g.bench_function("exchange", |b| {
            samples.time(b, &format!("{base}/exchange"), |iters| {
                rt.block_on(async {
                    let start = Instant::now();
                    for _ in 0..iters {
                        black_box(
                            mesh.sts
                                .exchange(ORDERS, black_box(&replace))
                                .await
                                .unwrap(),
                        );
                    }
                    start.elapsed()
                })
            })
        });
        g.bench_function("floor", |b| {
            samples.time(b, &format!("{base}/floor"), |iters| {
                let start = Instant::now();
                for _ in 0..iters {
                    black_box(own.verify(black_box(&issued.token)).unwrap());
                    black_box(mesh.issuer.sign_claims(&replaced.claims).unwrap());
                }
                start.elapsed()
            })
        });
        g.finish();
        rows.push(base);
    }

    eprintln!("\nexchange vs its floor (one verify + one sign), medians of this run:");
    eprintln!(
        "{:<28} {:>10} {:>10} {:>8} {:>16}",
        "row", "exchange", "floor", "ratio", "signature share"
    );
    for row in rows {
        let x = samples.median(&format!("{row}/exchange"));
        let f = samples.median(&format!("{row}/floor"));
        eprintln!(
            "{row:<28} {x:>8.1}µs {f:>8.1}µs {:>8.3} {:>15.1}%",
            x / f,
            100.0 * f / x
        );
    }
    if let Some(row) = endpoint {
        let e = samples.median(&format!("{row}/endpoint"));
        let x = samples.median(&format!("{row}/exchange"));
        let f = samples.median(&format!("{row}/floor"));
        eprintln!(
            "{:<28} {e:>8.1}µs {f:>8.1}µs {:>8.3} {:>15.1}%  (endpoint in memory; {:.1}µs over the exchange)",
            format!("{row}/endpoint"),
            e / f,
            100.0 * f / e,
            e - x
        );
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = bench
}
criterion_main!(benches);
