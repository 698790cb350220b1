//! The verified-token cache: hit and miss, against the implementation it replaced (kept below
//! as `legacy`, verbatim but for names) in the same run, and against the floors.
//!
//! ```text
//! cargo bench -p secmesh --bench cache
//! ```
//! Rows:
//! - `sha256/600B`: the digest every legacy hit paid (the floor being removed);
//!   `verify/hs256`: what a miss must pay anyway.
//! - `cache/hit/{alg}/10000`: a hit, cycling through the 10,000 tokens of a full cache (each
//!   lookup meets a token not touched for 10,000 lookups); `cache/hit-same/...`: the same token
//!   every time; `cache/legacy-hit/...`: the old cache on the same tokens.
//! - `cache/hit-hot/{alg}/10000`, `cache/hit-hot-2threads/...`: the cache holds the same
//!   10,000 tokens, and the ones presented cycle through 128 of them, hot in the processor's
//!   cache as a token just read from a socket is (one or two threads).
//! - `cache/hit-hot-shard/...`, `cache/hit-hot-shard-2threads/...`: the same with the threads'
//!   fronts turned off (`per_thread(false)`): every hit takes its shard's lock and counts on
//!   the shared entry (the cache as it was before the fronts).
//! - `cache/hit-2threads/...`: two threads hitting the same cache, each cycling through the
//!   10,000 tokens from its own starting point; the time is per hit as each thread sees it
//!   (two hits complete in that time).
//! - `cache/miss-empty/hs256`, `cache/miss-full/hs256` (full at 10,000, every miss evicts),
//!   `cache/miss-full-doorkeeper/hs256` (the default admission: a one-off token is verified and
//!   not cached), and the legacy rows: each miss verifies a token never seen (or long
//!   forgotten), cycling through a pool of 50,000.
//!
//! Tokens are realistic (~600 bytes: two grants, an actor, the requesting workload, the usual
//! claims) and the verifier reads the system clock, as in a service.
#![allow(missing_docs, clippy::unwrap_used)]

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use secmesh::core::ExpiryClass;
use secmesh::tokens::cache::{Admission, VerifiedCache};
use secmesh::tokens::{Algorithm, Issuer, KeySet, MintRequest, SigningKey, Verifier, crypto};

const ISS: &str = "https://sts.mesh.test";
const AUD: &str = "mesh.test";
const ENTRIES: usize = 10_000;
const POOL: usize = 50_000;
/// The presented tokens of the `hit-hot` rows: hot in the processor's cache.
const HOT: usize = 128;

/// The cache as it was before issue 13: SHA-256 of the token as the key, a `retain` over the
/// whole shard (a clock read per entry) on an insert into a full shard.
mod legacy {
    use std::collections::HashMap;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::{Arc, Mutex};

    use secmesh::core::claims::Claims;
    use secmesh::tokens::cache::TokenHash;
    use secmesh::tokens::{ErrorKind, Verified, Verifier, VerifyError};

    const SHARDS: usize = 16;

    pub(crate) struct VerifiedCache {
        verifier: Arc<Verifier>,
        shards: Vec<Mutex<HashMap<TokenHash, Arc<Verified<Claims>>>>>,
        per_shard: usize,
        hits: AtomicU64,
        misses: AtomicU64,
    }

    impl VerifiedCache {
        pub(crate) fn new(verifier: Arc<Verifier>, capacity: usize) -> VerifiedCache {
            VerifiedCache {
                verifier,
                shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
                per_shard: capacity.div_ceil(SHARDS).max(1),
                hits: AtomicU64::new(0),
                misses: AtomicU64::new(0),
            }
        }

        pub(crate) fn verify(
            &self,
            token: &str,
        ) -> Result<(Arc<Verified<Claims>>, TokenHash), VerifyError> {
            let hash = TokenHash::of(token);
            let shard = &self.shards[usize::from(hash.0[0]) % SHARDS];
            let cached = shard.lock().map_err(|_| poisoned())?.get(&hash).cloned();
            if let Some(verified) = cached {
                self.hits.fetch_add(1, Ordering::Relaxed);
                let recheck = self.verifier.check_time(verified.claims()).and_then(|()| {
                    self.verifier
                        .check_revocation(verified.claims(), verified.kid())
                });
                if let Err(e) = recheck {
                    if let Ok(mut map) = shard.lock() {
                        map.remove(&hash);
                    }
                    return Err(e);
                }
                return Ok((verified, hash));
            }
            self.misses.fetch_add(1, Ordering::Relaxed);
            let verified = Arc::new(self.verifier.verify(token)?);
            let mut map = shard.lock().map_err(|_| poisoned())?;
            if map.len() >= self.per_shard {
                map.retain(|_, v| self.verifier.check_time(v.claims()).is_ok());
                if map.len() >= self.per_shard
                    && let Some(k) = map.keys().next().copied()
                {
                    map.remove(&k);
                }
            }
            map.insert(hash, verified.clone());
            Ok((verified, hash))
        }

        pub(crate) fn hits(&self) -> u64 {
            self.hits.load(Ordering::Relaxed)
        }
    }

    fn poisoned() -> VerifyError {
        VerifyError::new(ErrorKind::Malformed, "poisoned")
    }
}

struct Fixture {
    verifier: Arc<Verifier>,
    issuer: Issuer,
}

fn fixture(alg: Algorithm) -> Fixture {
    let key = if alg == Algorithm::Hs256 {
        SigningKey::from_hmac_secret(alg, &[0x5a; 32]).unwrap()
    } else {
        SigningKey::generate(alg).unwrap()
    };
    let verifier = Verifier::new(KeySet::single(key.verifying_key(Some("k1".into()))))
        .issuer(ISS)
        .audience(AUD);
    let issuer = Issuer::new(key, "k1", ISS).audience(AUD);
    Fixture {
        verifier: Arc::new(verifier),
        issuer,
    }
}

impl Fixture {
    /// A realistic token, valid for an hour (the bench runs on the system clock).
    fn mint(&self, i: usize) -> String {
        let req = MintRequest::new(format!("user:{i:06}"), ExpiryClass::Medium)
            .lifetime(3_600)
            .grant("read", "orders/*")
            .grant("create", "orders")
            .actor("spiffe://mesh.test/gateway")
            .req_wl("spiffe://mesh.test/frontend");
        self.issuer.mint(&req).unwrap()
    }

    fn tokens(&self, n: usize) -> Vec<String> {
        (0..n).map(|i| self.mint(i)).collect()
    }
}

/// Run `op` on `threads` threads, each `iters` times from its own starting point in `tokens`:
/// the wall time.
fn on_threads<F>(threads: usize, iters: u64, tokens: &[String], op: F) -> Duration
where
    F: Fn(&str) + Sync,
{
    let start = Instant::now();
    std::thread::scope(|s| {
        for t in 0..threads {
            let op = &op;
            s.spawn(move || {
                let mut i = t * tokens.len() / threads;
                for _ in 0..iters {
                    i = if i + 1 == tokens.len() { 0 } else { i + 1 };
                    op(black_box(&tokens[i]));
                }
            });
        }
    });
    start.elapsed()
}

/// The CPU time this thread has run, from `/proc/thread-self/schedstat` (nanoseconds; `None`
/// where there is no such file).
fn thread_cpu_ns() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    s.split_whitespace().next()?.parse().ok()
}

/// CPU nanoseconds per operation as each of `threads` threads sees it, `iters` operations
/// each over `tokens`: unlike the wall time of a loaded machine, it does not count the time a
/// thread waits for a core, but it does count the time lost to lines moving between cores.
fn cpu_per_op<F>(threads: usize, iters: u64, tokens: &[String], op: F) -> Option<f64>
where
    F: Fn(&str) + Sync,
{
    let total: Option<u64> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let op = &op;
                s.spawn(move || {
                    let mut i = t * tokens.len() / threads;
                    let start = thread_cpu_ns()?;
                    for _ in 0..iters {
                        i = if i + 1 == tokens.len() { 0 } else { i + 1 };
                        op(black_box(&tokens[i]));
                    }
                    Some(thread_cpu_ns()? - start)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).sum()
    });
    Some(total? as f64 / (threads as u64 * iters) as f64)
}

/// Time `iters` operations in batches of at most `POOL`, each made by `batch(n)`, which
/// returns the time it measured and what it built (dropped here, untimed).
fn in_batches<T>(iters: u64, mut batch: impl FnMut(usize) -> (Duration, T)) -> Duration {
    let mut total = Duration::ZERO;
    let mut left = iters;
    while left > 0 {
        let n = left.min(POOL as u64);
        let (took, built) = batch(n as usize);
        total += took;
        drop(built);
        left -= n;
    }
    total
}

fn bench(c: &mut Criterion) {
    eprintln!("secmesh-tokens backend: {}", secmesh::tokens::BACKEND);
    let hs = fixture(Algorithm::Hs256);
    let sample = hs.mint(0);
    eprintln!("token: {} bytes", sample.len());

    let mut g = c.benchmark_group("sha256");
    g.bench_function("600B", |b| {
        b.iter(|| crypto::sha256(black_box(sample.as_bytes())))
    });
    g.finish();
    let mut g = c.benchmark_group("verify");
    g.bench_function("hs256", |b| {
        b.iter(|| hs.verifier.verify(black_box(&sample)).unwrap())
    });
    g.finish();

    let mut g = c.benchmark_group("cache");
    for (name, alg) in [("hs256", Algorithm::Hs256), ("eddsa", Algorithm::EdDsa)] {
        let f = if alg == Algorithm::Hs256 {
            None
        } else {
            Some(fixture(alg))
        };
        let f = f.as_ref().unwrap_or(&hs);
        let tokens = f.tokens(ENTRIES);
        // 10,000 entries held: shards fill unevenly (tokens land at random), so a cache of
        // exactly 10,000 would evict some of them; twice the room keeps every one a hit.
        let cache =
            VerifiedCache::new(f.verifier.clone(), 2 * ENTRIES).admission(Admission::Always);
        let old = legacy::VerifiedCache::new(f.verifier.clone(), 2 * ENTRIES);
        // The same cache without the threads' fronts: every hit through its shard's lock.
        let shard_only = VerifiedCache::new(f.verifier.clone(), 2 * ENTRIES)
            .admission(Admission::Always)
            .per_thread(false);
        for t in &tokens {
            cache.verify(t).unwrap();
            old.verify(t).unwrap();
            shard_only.verify(t).unwrap();
        }
        assert_eq!(cache.stats().entries, ENTRIES);
        // Both caches hit on a token they hold (checked here: a filter may skip the rows).
        old.verify(&tokens[0]).unwrap();
        assert_eq!(old.hits(), 1);

        let mut i = 0;
        g.bench_function(format!("hit/{name}/{ENTRIES}"), |b| {
            b.iter(|| {
                i = if i + 1 == tokens.len() { 0 } else { i + 1 };
                cache.verify(black_box(&tokens[i])).unwrap()
            })
        });
        g.bench_function(format!("legacy-hit/{name}/{ENTRIES}"), |b| {
            b.iter(|| {
                i = if i + 1 == tokens.len() { 0 } else { i + 1 };
                old.verify(black_box(&tokens[i])).unwrap()
            })
        });
        g.bench_function(format!("hit-same/{name}/{ENTRIES}"), |b| {
            b.iter(|| cache.verify(black_box(&tokens[0])).unwrap())
        });
        let hot = &tokens[..HOT];
        g.bench_function(format!("hit-hot/{name}/{ENTRIES}"), |b| {
            b.iter(|| {
                i = if i + 1 >= HOT { 0 } else { i + 1 };
                cache.verify(black_box(&hot[i])).unwrap()
            })
        });
        g.bench_function(format!("hit-hot-2threads/{name}/{ENTRIES}"), |b| {
            b.iter_custom(|iters| {
                on_threads(2, iters, hot, |t| {
                    black_box(cache.verify(t).unwrap());
                })
            })
        });
        g.bench_function(format!("hit-hot-shard/{name}/{ENTRIES}"), |b| {
            b.iter(|| {
                i = if i + 1 >= HOT { 0 } else { i + 1 };
                shard_only.verify(black_box(&hot[i])).unwrap()
            })
        });
        g.bench_function(format!("hit-hot-shard-2threads/{name}/{ENTRIES}"), |b| {
            b.iter_custom(|iters| {
                on_threads(2, iters, hot, |t| {
                    black_box(shard_only.verify(t).unwrap());
                })
            })
        });
        // Lines moving between cores, measured in CPU time per hit (a loaded machine's wall
        // time mostly measures waiting for a core): threads' fronts against shards only.
        for threads in [1, 2] {
            let per = |c: &VerifiedCache| {
                cpu_per_op(threads, 2_000_000, hot, |t| {
                    black_box(c.verify(t).unwrap());
                })
            };
            if let (Some(front), Some(shard)) = (per(&cache), per(&shard_only)) {
                eprintln!(
                    "cpu-per-hit/{name}/{threads} threads: front {front:.1} ns, shard only {shard:.1} ns ({:.2}x)",
                    front / shard
                );
            }
        }
        g.bench_function(format!("hit-2threads/{name}/{ENTRIES}"), |b| {
            b.iter_custom(|iters| {
                on_threads(2, iters, &tokens, |t| {
                    black_box(cache.verify(t).unwrap());
                })
            })
        });
        g.bench_function(format!("legacy-hit-2threads/{name}/{ENTRIES}"), |b| {
            b.iter_custom(|iters| {
                on_threads(2, iters, &tokens, |t| {
                    black_box(old.verify(t).unwrap());
                })
            })
        });
        let s = cache.stats();
        assert_eq!((s.misses, s.entries), (ENTRIES as u64, ENTRIES));
    }

    // Misses: every token verified is one the cache does not hold.
    let pool = hs.tokens(POOL);
    let mut next = {
        let mut i = 0;
        move || {
            i = if i + 1 == POOL { 0 } else { i + 1 };
            i
        }
    };
    // Into a cache with room: a fresh cache per batch of up to POOL misses, made and dropped
    // outside the timing.
    g.bench_function("miss-empty/hs256", |b| {
        b.iter_custom(|iters| {
            in_batches(iters, |n| {
                let cache =
                    VerifiedCache::new(hs.verifier.clone(), POOL).admission(Admission::Always);
                let start = Instant::now();
                for t in &pool[..n] {
                    black_box(cache.verify(black_box(t)).unwrap());
                }
                (start.elapsed(), cache)
            })
        })
    });
    g.bench_function("legacy-miss-empty/hs256", |b| {
        b.iter_custom(|iters| {
            in_batches(iters, |n| {
                let cache = legacy::VerifiedCache::new(hs.verifier.clone(), 2 * POOL);
                let start = Instant::now();
                for t in &pool[..n] {
                    black_box(cache.verify(black_box(t)).unwrap());
                }
                (start.elapsed(), cache)
            })
        })
    });

    let full = VerifiedCache::new(hs.verifier.clone(), ENTRIES).admission(Admission::Always);
    let door = VerifiedCache::new(hs.verifier.clone(), ENTRIES);
    let legacy_full = legacy::VerifiedCache::new(hs.verifier.clone(), ENTRIES);
    for t in hs.tokens(ENTRIES) {
        full.verify(&t).unwrap();
        door.verify(&t).unwrap();
        door.verify(&t).unwrap();
        legacy_full.verify(&t).unwrap();
    }
    g.bench_function("miss-full/hs256", |b| {
        b.iter(|| full.verify(black_box(&pool[next()])).unwrap())
    });
    g.bench_function("miss-full-doorkeeper/hs256", |b| {
        b.iter(|| door.verify(black_box(&pool[next()])).unwrap())
    });
    g.bench_function("legacy-miss-full/hs256", |b| {
        b.iter(|| legacy_full.verify(black_box(&pool[next()])).unwrap())
    });
    g.finish();
    let (f, d) = (full.stats(), door.stats());
    eprintln!("miss-full: {f:?}\nmiss-full-doorkeeper: {d:?}");
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
    targets = bench
}
criterion_main!(benches);
