//! A verified-token cache: the same token on many requests is verified once.
//!
//! Entries live no longer than the token's time window: on every hit the time window and
//! revocation are checked again, so a cached token expires or is revoked exactly when an
//! uncached one would (an entry that fails the re-check is dropped). Failures are never cached.
//!
//! The hit path costs a keyed hash of the token's tail and a constant-time compare of the whole
//! token, not a digest: the cache is split in shards (each behind its own lock, on its own
//! cache line, with its own counters), and an entry is found through SipHash-1-3 under a key
//! drawn at random for each cache ([`RandomState`]) over the token's length and its last 64
//! bytes. The tail of a compact JWS is its signature: entries are only made from tokens that
//! verified, whose signatures nobody but the signer chooses, and with the key unknown nobody
//! can aim collisions at a bucket. The entry keeps the token and it is compared with the one
//! presented in constant time (`cache::ct`), so a token that differs in any byte does not hit and the
//! time taken does not say where it differs. The SHA-256 [`TokenHash`] that audit records
//! carry is computed once, on the miss, and kept in the entry.
//!
//! Hits scale with threads: each thread keeps the tokens it hits often in a small front of its
//! own (at most 512, with its own copy of their claims; see [`VerifiedCache::per_thread`]), so
//! that such a hit takes no lock and writes no line another thread writes (the entry's
//! reference count and the shard's lock and counters are left alone). Invalidation stays with
//! the shard: an entry it evicts, replaces, drops or clears is retired, and no front hits on it
//! again; time and revocation are re-checked on a front hit as on any other.
//!
//! The miss path is O(1): a full shard evicts with a CLOCK hand (second chance for entries hit
//! since the hand last passed), with no scan and no clock read per entry. Which verified
//! tokens are cached is the [`Admission`] policy: by default a doorkeeper admits a token the
//! second time it is seen, so the one-off tokens of a mesh (every request carries a freshly
//! minted one) cost a verification and no cache churn. Memory is bounded: `capacity` entries,
//! each holding a token no larger than the verifier's size limit.
//!
//! # Example
//! ```
//! use std::sync::Arc;
//! use secmesh_core::{ExpiryClass, ManualClock};
//! use secmesh_tokens::cache::{Admission, VerifiedCache};
//! use secmesh_tokens::{Algorithm, ErrorKind, Issuer, KeySet, MintRequest, SigningKey, Verifier};
//!
//! let clock = Arc::new(ManualClock::new(1_800_000_000));
//! let key = SigningKey::generate(Algorithm::Hs256)?;
//! let verifier = Verifier::new(KeySet::single(key.verifying_key(Some("k".into())))).clock(clock.clone());
//! let issuer = Issuer::new(key, "k", "iss").audience("aud").clock(clock.clone());
//! let token = issuer.mint(&MintRequest::new("user:alice", ExpiryClass::Fast))?;
//!
//! let cache = VerifiedCache::new(Arc::new(verifier), 10_000);
//! assert_eq!(cache.verify(&token)?.claims().sub, "user:alice"); // miss: verified, remembered
//! assert_eq!(cache.verify(&token)?.claims().sub, "user:alice"); // miss: verified, cached
//! assert_eq!(cache.verify(&token)?.claims().sub, "user:alice"); // hit
//! let stats = cache.stats();
//! assert_eq!((stats.hits, stats.misses, stats.entries), (1, 2, 1));
//!
//! clock.advance(180 + 60);
//! assert_eq!(cache.verify(&token).unwrap_err().kind(), ErrorKind::Expired);
//! assert_eq!(cache.stats().entries, 0);
//!
//! // Without the doorkeeper the first verification is cached.
//! let cache = VerifiedCache::new(cache.verifier().clone(), 10_000).admission(Admission::Always);
//! let token = issuer.mint(&MintRequest::new("user:bob", ExpiryClass::Fast))?;
//! cache.verify(&token)?;
//! assert_eq!(cache.verify(&token)?.hash(), secmesh_tokens::cache::TokenHash::of(&token));
//! assert_eq!(cache.stats().hits, 1);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod admission;
mod ct;
mod front;
mod shard;

use std::collections::hash_map::RandomState;
use std::fmt;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use secmesh_core::claims::Claims;

use crate::backend::digest;
use crate::error::{ErrorKind, VerifyError};
use crate::verifier::{Verified, Verifier};

pub use admission::Admission;
use shard::Shard;

/// The most shards a cache is split in.
const MAX_SHARDS: usize = 64;
/// The fewest entries a shard holds when the capacity allows (small caches get fewer shards).
const MIN_PER_SHARD: usize = 32;
/// How many bytes from the end of the token the keyed hash reads (the signature's tail).
const KEYED_TAIL: usize = 64;
/// Counters of front hits, one line each: a thread counts on its own stripe.
const STRIPES: usize = 16;

/// Ids of caches, told apart in the threads' fronts (0 is an empty way).
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// The SHA-256 of a token: how caches and audit records name a token without keeping it.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TokenHash(pub [u8; 32]);

impl TokenHash {
    /// Hash a compact token.
    pub fn of(token: &str) -> TokenHash {
        let d = digest::digest(&digest::SHA256, token.as_bytes());
        let mut out = [0u8; 32];
        out.copy_from_slice(d.as_ref());
        TokenHash(out)
    }
}

impl fmt::Display for TokenHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for TokenHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TokenHash({self})")
    }
}

/// A verified token from the cache: the proof and the token's hash.
#[derive(Clone, Debug)]
pub struct CachedToken {
    verified: Arc<Verified<Claims>>,
    hash: TokenHash,
}

impl CachedToken {
    /// The verified claims.
    pub fn claims(&self) -> &Claims {
        self.verified.claims()
    }

    /// The proof.
    pub fn verified(&self) -> &Arc<Verified<Claims>> {
        &self.verified
    }

    /// The SHA-256 of the token.
    pub fn hash(&self) -> TokenHash {
        self.hash
    }
}

/// What the cache did, counted since it was made.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CacheStats {
    /// Lookups answered from the cache.
    pub hits: u64,
    /// Lookups that ran the verifier (whatever its answer).
    pub misses: u64,
    /// Tokens currently held.
    pub entries: usize,
    /// Entries evicted to make room for another.
    pub evictions: u64,
    /// Verified tokens the admission policy did not cache (seen for the first time).
    pub admissions_refused: u64,
}

/// One shard on its own cache lines, so that threads working in different shards do not
/// share a line.
#[repr(align(128))]
struct Padded(Mutex<Shard>);

/// A hit counter on its own cache lines.
#[repr(align(128))]
#[derive(Default)]
struct Stripe(AtomicU64);

/// A bounded cache in front of a [`Verifier`]. Share it in an `Arc`.
pub struct VerifiedCache {
    verifier: Arc<Verifier>,
    shards: Box<[Padded]>,
    capacity: usize,
    admission: Admission,
    seed: RandomState,
    id: u64,
    per_thread: bool,
    front_hits: Box<[Stripe]>,
}

impl fmt::Debug for VerifiedCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifiedCache")
            .field("capacity", &self.capacity)
            .field("shards", &self.shards.len())
            .field("admission", &self.admission)
            .field("per_thread", &self.per_thread)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl VerifiedCache {
    /// A cache of at most `capacity` tokens (at least one) in front of `verifier`, with the
    /// default [`Admission`] (a token is cached the second time it is seen).
    pub fn new(verifier: Arc<Verifier>, capacity: usize) -> VerifiedCache {
        Self::build(verifier, capacity, Admission::default())
    }

    /// Choose which verified tokens are cached. This empties the cache.
    #[must_use]
    pub fn admission(self, admission: Admission) -> VerifiedCache {
        let per_thread = self.per_thread;
        Self::build(self.verifier, self.capacity, admission).per_thread(per_thread)
    }

    /// Whether each thread keeps its hot tokens in a small front of its own (the default):
    /// then a hit on such a token takes no lock and writes nothing another thread writes, so
    /// hits scale with threads. The front holds at most 512 tokens per thread, for all the
    /// caches of the process together, each with that thread's copy of its claims; a token
    /// enters it the second time the thread finds it in the cache. Without it every hit
    /// takes its shard's lock and shares the entry's reference count.
    #[must_use]
    pub fn per_thread(mut self, on: bool) -> VerifiedCache {
        self.per_thread = on;
        self
    }

    fn build(verifier: Arc<Verifier>, capacity: usize, admission: Admission) -> VerifiedCache {
        let capacity = capacity.max(1);
        let mut n = 1;
        while n * 2 <= MAX_SHARDS && capacity / (n * 2) >= MIN_PER_SHARD {
            n *= 2;
        }
        // Shard i holds capacity / n entries, one more for the first capacity % n: the sum is
        // the capacity.
        let door = admission == Admission::SeenTwice;
        let shards = (0..n)
            .map(|i| {
                let per = capacity / n + usize::from(i < capacity % n);
                Padded(Mutex::new(Shard::new(per.max(1), door)))
            })
            .collect();
        VerifiedCache {
            verifier,
            shards,
            capacity,
            admission,
            seed: RandomState::new(),
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            per_thread: true,
            front_hits: (0..STRIPES).map(|_| Stripe::default()).collect(),
        }
    }

    /// The verifier behind the cache.
    pub fn verifier(&self) -> &Arc<Verifier> {
        &self.verifier
    }

    /// The most tokens the cache holds.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Verify a token, from the cache when it was verified (and admitted) before.
    pub fn verify(&self, token: &str) -> Result<CachedToken, VerifyError> {
        self.verify_observed(token, None::<fn(Duration, bool)>)
    }

    /// [`verify`](Self::verify), and on a miss hand `on_verify` (when there is one) the time
    /// the verifier took and whether it accepted the token, for a latency histogram. Only then
    /// is the clock read: never on a hit, never without an observer.
    pub fn verify_observed(
        &self,
        token: &str,
        on_verify: Option<impl FnOnce(Duration, bool)>,
    ) -> Result<CachedToken, VerifyError> {
        let bytes = token.as_bytes();
        let key = self.key(bytes);
        let promote = if self.per_thread {
            match front::look(self.id, key, bytes) {
                front::Look::Hit(verified, hash, stripe) => {
                    return self.front_hit(key, verified, hash, stripe);
                }
                front::Look::Promote => true,
                front::Look::First => false,
            }
        } else {
            false
        };
        let shard = self.shard(key);
        let hit = {
            let mut s = lock(shard)?;
            match s.get(key, bytes) {
                Some(slot) => {
                    let entry = slot.entry.clone();
                    s.hits += 1;
                    Some(entry)
                }
                None => {
                    s.misses += 1;
                    None
                }
            }
        };
        if let Some(entry) = hit {
            let verified = &entry.verified;
            if let Err(e) = self.recheck(verified) {
                if let Ok(mut s) = lock(shard) {
                    s.remove(key, &entry);
                }
                return Err(e);
            }
            let hash = entry.hash;
            let shared = entry.verified.clone();
            let verified = if promote {
                // This thread's own copy: the `Arc`s it hands out are counted on its line.
                front::install(self.id, key, entry, |e| {
                    Arc::new(Verified::clone(&e.verified))
                })
                .unwrap_or(shared)
            } else {
                shared
            };
            return Ok(CachedToken { verified, hash });
        }
        let verified = match on_verify {
            None => self.verifier.verify(token),
            Some(observe) => {
                let started = Instant::now();
                let verified = self.verifier.verify(token);
                observe(started.elapsed(), verified.is_ok());
                verified
            }
        };
        let verified = Arc::new(verified?);
        let hash = TokenHash::of(token);
        lock(shard)?.insert(key, bytes, hash, &verified);
        Ok(CachedToken { verified, hash })
    }

    /// A hit in this thread's front: re-checked as any hit, counted on this thread's stripe.
    fn front_hit(
        &self,
        key: u64,
        verified: Arc<Verified<Claims>>,
        hash: TokenHash,
        stripe: usize,
    ) -> Result<CachedToken, VerifyError> {
        if let Some(s) = self.front_hits.get(stripe % STRIPES) {
            s.0.fetch_add(1, Ordering::Relaxed);
        }
        if let Err(e) = self.recheck(&verified) {
            if let Some(entry) = front::take(self.id, key) {
                lock(self.shard(key))?.remove(key, &entry);
            }
            return Err(e);
        }
        Ok(CachedToken { verified, hash })
    }

    /// Time and revocation, checked again on every hit.
    fn recheck(&self, verified: &Verified<Claims>) -> Result<(), VerifyError> {
        self.verifier.check_time(verified.claims()).and_then(|()| {
            self.verifier
                .check_revocation(verified.claims(), verified.kid())
        })
    }

    /// Forget every cached token (e.g. after the key set changed). The counts stay.
    pub fn clear(&self) {
        for s in &self.shards {
            if let Ok(mut s) = lock(s) {
                s.clear();
            }
        }
    }

    /// What the cache did, and its size.
    pub fn stats(&self) -> CacheStats {
        let mut stats = CacheStats::default();
        for s in &self.shards {
            if let Ok(s) = lock(s) {
                stats.hits += s.hits;
                stats.misses += s.misses;
                stats.entries += s.len();
                stats.evictions += s.evictions;
                stats.admissions_refused += s.refused;
            }
        }
        stats.hits += self
            .front_hits
            .iter()
            .map(|s| s.0.load(Ordering::Relaxed))
            .sum::<u64>();
        stats
    }

    /// The keyed hash an entry is filed under: the length and the tail (the signature).
    fn key(&self, token: &[u8]) -> u64 {
        let tail = token
            .get(token.len().saturating_sub(KEYED_TAIL)..)
            .unwrap_or(token);
        let mut h = self.seed.build_hasher();
        h.write_usize(token.len());
        h.write(tail);
        h.finish()
    }

    fn shard(&self, key: u64) -> &Padded {
        // The index uses the low bits (bucket) and the top seven (tag): pick the shard from
        // the middle ones.
        let i = (key >> 32) as usize & (self.shards.len() - 1);
        &self.shards[i]
    }
}

fn lock(shard: &Padded) -> Result<MutexGuard<'_, Shard>, VerifyError> {
    shard.0.lock().map_err(|_| poisoned())
}

fn poisoned() -> VerifyError {
    VerifyError::new(
        ErrorKind::Malformed,
        "the token cache is unusable (poisoned lock)",
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Algorithm, Issuer, KeySet, MintRequest, RevocationList, SigningKey};
    use secmesh_core::{ExpiryClass, ManualClock};

    fn setup(capacity: usize) -> (VerifiedCache, Issuer, Arc<ManualClock>, RevocationList) {
        let clock = Arc::new(ManualClock::new(1_800_000_000));
        let key = SigningKey::from_hmac_secret(Algorithm::Hs256, &[1; 32]).unwrap();
        let revoked = RevocationList::new();
        let verifier = Verifier::new(KeySet::single(key.verifying_key(Some("k".into()))))
            .clock(clock.clone())
            .revocation(Arc::new(revoked.clone()));
        let issuer = Issuer::new(key, "k", "iss")
            .audience("aud")
            .clock(clock.clone());
        (
            VerifiedCache::new(Arc::new(verifier), capacity).admission(Admission::Always),
            issuer,
            clock,
            revoked,
        )
    }

    #[test]
    fn revocation_is_respected_on_hits() {
        let (cache, issuer, _clock, revoked) = setup(100);
        let token = issuer
            .mint(&MintRequest::new("s", ExpiryClass::Fast))
            .unwrap();
        let jti = cache.verify(&token).unwrap().claims().jti.clone();
        assert!(cache.verify(&token).is_ok());
        assert_eq!(cache.stats().hits, 1);
        revoked.revoke_jti(jti);
        assert_eq!(cache.verify(&token).unwrap_err().kind(), ErrorKind::Revoked);
        assert_eq!(cache.stats().entries, 0);
        assert_eq!(cache.verify(&token).unwrap_err().kind(), ErrorKind::Revoked);
    }

    #[test]
    fn bounded_and_failures_are_not_cached() {
        let (cache, issuer, _clock, _) = setup(16);
        for i in 0..100 {
            let t = issuer
                .mint(&MintRequest::new(format!("s{i}"), ExpiryClass::Fast))
                .unwrap();
            cache.verify(&t).unwrap();
        }
        assert!(cache.stats().entries <= 16);
        assert_eq!(cache.stats().evictions, 100 - 16);
        assert!(cache.verify("a.b.c").is_err());
        assert!(cache.verify("a.b.c").is_err());
        assert_eq!(cache.stats().hits, 0);
        assert_eq!(cache.stats().misses, 102);
    }

    #[test]
    fn the_threads_front_is_bounded() {
        let (cache, issuer, ..) = setup(2_000);
        let tokens: Vec<String> = (0..600)
            .map(|i| {
                issuer
                    .mint(&MintRequest::new(format!("s{i}"), ExpiryClass::Fast))
                    .unwrap()
            })
            .collect();
        for _ in 0..4 {
            for t in &tokens {
                cache.verify(t).unwrap();
            }
        }
        let held = front::residents();
        assert!(held > 0 && held <= front::SETS * front::WAYS, "{held}");
        let s = cache.stats();
        assert_eq!((s.hits, s.misses, s.entries), (3 * 600, 600, 600));
    }

    #[test]
    fn hash_display_is_hex() {
        let h = TokenHash::of("abc");
        assert_eq!(
            h.to_string(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn shards_add_up_to_the_capacity() {
        let (cache, ..) = setup(1);
        for capacity in [1, 16, 31, 100, 10_000, 12_345] {
            let c = VerifiedCache::new(cache.verifier().clone(), capacity);
            let total: usize = c
                .shards
                .iter()
                .map(|s| s.0.lock().map_or(0, |s| s.capacity()))
                .sum();
            assert_eq!(total, capacity, "capacity {capacity}");
            assert!(c.shards.len().is_power_of_two());
        }
    }
}
