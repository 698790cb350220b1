//! A verified-token cache: the same token on many requests is verified once.
//!
//! Entries are keyed by the SHA-256 of the token (the token itself is not kept), live no longer
//! than the token's `exp` (plus the verifier's skew), and on every hit the time window and
//! revocation are checked again, so a cached token expires or is revoked exactly when an
//! uncached one would. The cache is bounded; it is split in shards with their own locks so
//! that concurrent requests rarely meet. Hits and misses are counted.
//!
//! # Example
//! ```
//! use std::sync::Arc;
//! use secmesh_core::{ExpiryClass, ManualClock};
//! use secmesh_tokens::cache::VerifiedCache;
//! use secmesh_tokens::{Algorithm, ErrorKind, Issuer, KeySet, MintRequest, SigningKey, Verifier};
//!
//! let clock = Arc::new(ManualClock::new(1_800_000_000));
//! let key = SigningKey::generate(Algorithm::Hs256)?;
//! let verifier = Verifier::new(KeySet::single(key.verifying_key(Some("k".into())))).clock(clock.clone());
//! let issuer = Issuer::new(key, "k", "iss").audience("aud").clock(clock.clone());
//! let token = issuer.mint(&MintRequest::new("user:alice", ExpiryClass::Fast))?;
//!
//! let cache = VerifiedCache::new(Arc::new(verifier), 10_000);
//! assert_eq!(cache.verify(&token)?.claims().sub, "user:alice"); // miss: verified
//! assert_eq!(cache.verify(&token)?.claims().sub, "user:alice"); // hit
//! assert_eq!((cache.stats().hits, cache.stats().misses), (1, 1));
//!
//! clock.advance(180 + 60);
//! assert_eq!(cache.verify(&token).unwrap_err().kind(), ErrorKind::Expired);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use secmesh_core::claims::Claims;

use crate::backend::digest;
use crate::error::{ErrorKind, VerifyError};
use crate::verifier::{Verified, Verifier};

const SHARDS: usize = 16;

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

/// Hit and miss counts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CacheStats {
    /// Lookups answered from the cache.
    pub hits: u64,
    /// Lookups that ran the verifier (whatever its answer).
    pub misses: u64,
    /// Tokens currently held.
    pub entries: usize,
}

/// A bounded cache in front of a [`Verifier`]. Share it in an `Arc`.
pub struct VerifiedCache {
    verifier: Arc<Verifier>,
    shards: Vec<Mutex<HashMap<TokenHash, Arc<Verified<Claims>>>>>,
    per_shard: usize,
    hits: AtomicU64,
    misses: AtomicU64,
}

impl fmt::Debug for VerifiedCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifiedCache")
            .field("capacity", &(self.per_shard * SHARDS))
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl VerifiedCache {
    /// A cache of at most `capacity` tokens (rounded up to a multiple of 16) in front of
    /// `verifier`.
    pub fn new(verifier: Arc<Verifier>, capacity: usize) -> VerifiedCache {
        VerifiedCache {
            verifier,
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            per_shard: capacity.div_ceil(SHARDS).max(1),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    /// The verifier behind the cache.
    pub fn verifier(&self) -> &Arc<Verifier> {
        &self.verifier
    }

    /// Verify a token, from the cache when it was verified before.
    pub fn verify(&self, token: &str) -> Result<CachedToken, VerifyError> {
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
            return Ok(CachedToken { verified, hash });
        }
        self.misses.fetch_add(1, Ordering::Relaxed);
        let verified = Arc::new(self.verifier.verify(token)?);
        let mut map = shard.lock().map_err(|_| poisoned())?;
        if map.len() >= self.per_shard {
            // Drop what has expired; if the shard is still full, drop one entry.
            map.retain(|_, v| self.verifier.check_time(v.claims()).is_ok());
            if map.len() >= self.per_shard
                && let Some(k) = map.keys().next().copied()
            {
                map.remove(&k);
            }
        }
        map.insert(hash, verified.clone());
        Ok(CachedToken { verified, hash })
    }

    /// Forget every cached token (e.g. after the key set changed).
    pub fn clear(&self) {
        for s in &self.shards {
            if let Ok(mut m) = s.lock() {
                m.clear();
            }
        }
    }

    /// Hit/miss counts and size.
    pub fn stats(&self) -> CacheStats {
        CacheStats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            entries: self
                .shards
                .iter()
                .map(|s| s.lock().map_or(0, |m| m.len()))
                .sum(),
        }
    }
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
            VerifiedCache::new(Arc::new(verifier), capacity),
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
        revoked.revoke_jti(jti);
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
        assert!(cache.verify("a.b.c").is_err());
        assert!(cache.verify("a.b.c").is_err());
        assert_eq!(cache.stats().hits, 0);
        assert_eq!(cache.stats().misses, 102);
    }

    #[test]
    fn hash_display_is_hex() {
        let h = TokenHash::of("abc");
        assert_eq!(
            h.to_string(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
