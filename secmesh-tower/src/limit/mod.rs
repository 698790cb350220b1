//! Rate limiting by key (a subject, a calling workload, a route, or a combination), with the
//! generic cell rate algorithm of [`secmesh_core::limit`]: in process ([`LocalLimiter`]), or
//! shared by a fleet through Redis (`RedisLimiter`, the `redis` feature: one round trip per
//! decision, an atomic script, and the local limits divided by the replica count while Redis
//! cannot be reached).
//!
//! A [`LocalLimiter`] keeps one number per key (its theoretical arrival time) in sharded maps
//! (foldhash keyed per limiter, so nobody can aim collisions at a shard); a decision is one
//! lookup and one comparison. It holds at most `max_keys` keys: keys whose
//! state has run out (idle long enough to be back to a full burst) are dropped first, and when
//! every slot is held by an active key a new key is refused until one goes idle (the keys are
//! authenticated subjects and workloads, so this bounds what one client can make the limiter
//! remember, and never lets a new key bypass the limit).
//!
//! # Example
//! ```
//! use secmesh_core::limit::Rate;
//! use secmesh_tower::limit::LocalLimiter;
//!
//! let limiter = LocalLimiter::new("2/s".parse::<Rate>()?.burst(2)?);
//! assert!(limiter.check("user:alice").allowed());
//! assert!(limiter.check("user:alice").allowed());
//! let refused = limiter.check("user:alice");
//! assert!(!refused.allowed() && refused.retry_after_secs() == 1);
//! assert!(limiter.check("user:bob").allowed(), "keys are limited apart");
//! # Ok::<(), secmesh_core::limit::RateError>(())
//! ```

#[cfg(feature = "redis")]
mod redis;
pub(crate) mod stage;

use std::fmt;
use std::future::Future;
use std::hash::BuildHasher;
use std::pin::Pin;
use std::sync::Mutex;

use hashbrown::HashTable;
use secmesh_core::limit::{Rate, Verdict};

#[cfg(feature = "redis")]
pub use self::redis::{RedisLimiter, RedisLimiterError, RedisLimiterStatus};

const SHARDS: usize = 16;

/// The default bound on keys held.
pub const DEFAULT_MAX_KEYS: usize = 100_000;

/// Where the counters of the declared limits ([`secmesh_core::policy::limits`]) are kept: in
/// this process ([`LocalLimiter`]) or shared by a fleet (`RedisLimiter`). The server stack asks
/// it once per limit that applies to a request.
pub trait LimitStore: fmt::Debug + Send + Sync + 'static {
    /// Decide one request of `key` under `rate`: now, or (for a store across the network)
    /// later.
    fn decide(&self, rate: Rate, key: &str) -> Decide;
}

/// A [`LimitStore`]'s answer.
#[non_exhaustive]
pub enum Decide {
    /// Decided in process.
    Now(Verdict),
    /// To be decided by another process (one round trip); the future must finish within a
    /// bound of its own (a store answers from a fallback rather than wait longer).
    Later(Pin<Box<dyn Future<Output = Verdict> + Send>>),
}

impl fmt::Debug for Decide {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Decide::Now(v) => f.debug_tuple("Now").field(v).finish(),
            Decide::Later(_) => f.write_str("Later(..)"),
        }
    }
}

impl<T: LimitStore + ?Sized> LimitStore for std::sync::Arc<T> {
    fn decide(&self, rate: Rate, key: &str) -> Decide {
        (**self).decide(rate, key)
    }
}

/// One shard: the keys' TATs (found by the one keyed hash that also chose the shard), and
/// when idle keys were last dropped.
#[derive(Default)]
struct Shard {
    tats: HashTable<Entry>,
    purged_at: Option<u64>,
}

/// A key, its hash and its TAT.
struct Entry {
    hash: u64,
    key: Box<str>,
    tat: u64,
}

/// A full shard drops its idle keys at most this often (ns): a flood of new keys against a
/// full shard costs one scan per period, not one per request.
const PURGE_EVERY_NS: u64 = 10_000_000;

/// A rate limit kept in this process; see the [module docs](self).
pub struct LocalLimiter {
    rate: Rate,
    shards: [Mutex<Shard>; SHARDS],
    seed: foldhash::quality::RandomState,
    max_per_shard: usize,
    clock: quanta::Clock,
    epoch: quanta::Instant,
}

impl fmt::Debug for LocalLimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalLimiter")
            .field("rate", &self.rate)
            .field("keys", &self.len())
            .finish()
    }
}

impl LocalLimiter {
    /// A limiter of `rate` per key, holding at most [`DEFAULT_MAX_KEYS`] keys.
    pub fn new(rate: Rate) -> LocalLimiter {
        LocalLimiter::with_max_keys(rate, DEFAULT_MAX_KEYS)
    }

    /// A limiter of `rate` per key, holding at most `max_keys` keys.
    pub fn with_max_keys(rate: Rate, max_keys: usize) -> LocalLimiter {
        let clock = quanta::Clock::new();
        let epoch = clock.now();
        LocalLimiter {
            rate,
            shards: std::array::from_fn(|_| Mutex::new(Shard::default())),
            seed: foldhash::quality::RandomState::default(),
            max_per_shard: max_keys.div_ceil(SHARDS).max(1),
            clock,
            epoch,
        }
    }

    /// The counters of declared limits, each with its own rate ([`LimitStore::decide`]): the
    /// rate given here only serves [`check`](Self::check).
    pub fn for_limits() -> LocalLimiter {
        LocalLimiter::new(Rate::new(1, 1).unwrap_or_else(|_| unreachable!("1/s is a rate")))
    }

    /// The rate.
    pub fn rate(&self) -> Rate {
        self.rate
    }

    /// Now, in ns on this limiter's own clock (one emission interval in, so that a new key's
    /// TAT, 0, is always in the past).
    fn now(&self, rate: Rate) -> u64 {
        let elapsed = self.clock.now().saturating_duration_since(self.epoch);
        u64::try_from(elapsed.as_nanos())
            .unwrap_or(u64::MAX)
            .saturating_add(rate.emission_interval_ns())
    }

    /// Decide one request of `key` now.
    pub fn check(&self, key: &str) -> Verdict {
        self.check_rate(self.rate, key)
    }

    /// Decide one request of `key` now under `rate` (keys under different rates should not
    /// share a name: the declared limits put the limit's id in each key).
    pub fn check_rate(&self, rate: Rate, key: &str) -> Verdict {
        self.check_at_rate(rate, key, self.now(rate))
    }

    /// Decide one request of `key` at `now` (ns on this limiter's own clock; for tests and
    /// simulations).
    pub fn check_at(&self, key: &str, now: u64) -> Verdict {
        self.check_at_rate(self.rate, key, now)
    }

    fn check_at_rate(&self, rate: Rate, key: &str, now: u64) -> Verdict {
        // One keyed hash: middle bits pick the shard (the table uses the low bits for the
        // bucket and the top ones for its tags), the whole finds the key in it.
        let hash = self.seed.hash_one(key);
        let shard = usize::try_from((hash >> 32) % SHARDS as u64).unwrap_or(0);
        let mut shard = self.shards[shard].lock().unwrap_or_else(|p| p.into_inner());
        let shard = &mut *shard;
        if let Some(e) = shard.tats.find_mut(hash, |e| &*e.key == key) {
            let v = rate.check(e.tat, now);
            if v.allowed() {
                e.tat = v.tat();
            }
            return v;
        }
        let v = rate.check(0, now);
        if !v.allowed() {
            return v;
        }
        let due = shard
            .purged_at
            .is_none_or(|at| now >= at.saturating_add(PURGE_EVERY_NS));
        if shard.tats.len() >= self.max_per_shard && due {
            // A key whose TAT has passed is back to a full burst: it carries nothing.
            shard.tats.retain(|e| e.tat > now);
            shard.purged_at = Some(now);
        }
        if shard.tats.len() >= self.max_per_shard {
            return Verdict::from_parts(
                false,
                0,
                rate.emission_interval_ns(),
                0,
                rate.emission_interval_ns(),
                rate.burst_size(),
            );
        }
        shard.tats.insert_unique(
            hash,
            Entry {
                hash,
                key: key.into(),
                tat: v.tat(),
            },
            |e| e.hash,
        );
        v
    }

    /// How many keys are held.
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(|p| p.into_inner()).tats.len())
            .sum()
    }

    /// Whether no key is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl LimitStore for LocalLimiter {
    fn decide(&self, rate: Rate, key: &str) -> Decide {
        Decide::Now(self.check_rate(rate, key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_bounded_and_never_bypass() {
        let r = "1/s".parse::<Rate>().unwrap();
        let l = LocalLimiter::with_max_keys(r, SHARDS);
        let s = 1_000_000_000u64;
        // Many new keys at one instant: at most one per shard is held; the rest are refused,
        // not waved through.
        let allowed = (0..1000)
            .filter(|i| l.check_at(&format!("k{i}"), 10 * s).allowed())
            .count();
        assert!(allowed <= SHARDS && allowed > 0, "{allowed}");
        assert!(l.len() <= SHARDS);
        // Later, the idle keys are dropped and new ones fit again.
        assert!(l.check_at("fresh", 100 * s).allowed());
    }
}
