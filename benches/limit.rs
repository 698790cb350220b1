//! A rate-limit decision in process (issue 16's measure: <= 100 ns), against `governor`'s keyed
//! limiter (the crate a Rust service would pick), in the same run: 10,000 keys held, the key
//! looked up by its string (an authenticated subject), 1,000,000/s so that every decision is an
//! allow that updates the state.
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

criterion_group!(benches, bench);
criterion_main!(benches);
