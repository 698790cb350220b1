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

use std::collections::HashMap;
use std::fmt;
use std::hash::BuildHasher;
use std::sync::Mutex;
use std::time::Instant;

use secmesh_core::limit::{Rate, Verdict};

#[cfg(feature = "redis")]
pub use self::redis::{RedisLimiter, RedisLimiterError, RedisLimiterStatus};

const SHARDS: usize = 16;

/// The default bound on keys held.
pub const DEFAULT_MAX_KEYS: usize = 100_000;

/// One shard: the keys' TATs, and when idle keys were last dropped.
#[derive(Default)]
struct Shard {
    tats: HashMap<Box<str>, u64, foldhash::quality::RandomState>,
    purged_at: Option<u64>,
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
    epoch: Instant,
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
        LocalLimiter {
            rate,
            shards: std::array::from_fn(|_| Mutex::new(Shard::default())),
            seed: foldhash::quality::RandomState::default(),
            max_per_shard: max_keys.div_ceil(SHARDS).max(1),
            epoch: Instant::now(),
        }
    }

    /// The rate.
    pub fn rate(&self) -> Rate {
        self.rate
    }

    /// Decide one request of `key` now.
    pub fn check(&self, key: &str) -> Verdict {
        let now = u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX);
        // The epoch is this limiter's creation; start one emission interval in, so a new key's
        // TAT (0) is always in the past.
        self.check_at(key, now.saturating_add(self.rate.emission_interval_ns()))
    }

    /// Decide one request of `key` at `now` (ns on this limiter's own clock; for tests and
    /// simulations).
    pub fn check_at(&self, key: &str, now: u64) -> Verdict {
        let shard = usize::try_from(self.seed.hash_one(key) % SHARDS as u64).unwrap_or(0);
        let mut shard = self.shards[shard].lock().unwrap_or_else(|p| p.into_inner());
        let tat = shard.tats.get(key).copied().unwrap_or(0);
        let v = self.rate.check(tat, now);
        if v.allowed() {
            if let Some(slot) = shard.tats.get_mut(key) {
                *slot = v.tat();
            } else {
                let due = shard
                    .purged_at
                    .is_none_or(|at| now >= at.saturating_add(PURGE_EVERY_NS));
                if shard.tats.len() >= self.max_per_shard && due {
                    // Keys back to a full burst carry nothing: drop them.
                    let tau = self.rate.tolerance_ns();
                    shard.tats.retain(|_, t| t.saturating_sub(tau) > now);
                    shard.purged_at = Some(now);
                }
                if shard.tats.len() >= self.max_per_shard {
                    return Verdict::from_parts(
                        false,
                        0,
                        self.rate.emission_interval_ns(),
                        0,
                        self.rate.emission_interval_ns(),
                        self.rate.burst_size(),
                    );
                }
                shard.tats.insert(key.into(), v.tat());
            }
        }
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
