//! Revocation by token, subject, transaction and key: the in-process set every verifier asks,
//! and the replica a fleet keeps in step (issue 16: Redis fills it; one process without Redis
//! uses it directly).
//!
//! A [`RevocationSet`] holds [`Revoked`] entries of four kinds ([`RevocationKey`]):
//!
//! - `jti`: one token;
//! - `sub` with a time: every token of that subject issued (`iat`) at or before it (the same
//!   second counts: a token minted while the revocation lands is revoked too);
//! - `txn`: every token of one transaction;
//! - `kid`: every token signed by one key.
//!
//! Each entry expires on its own: once no token it could match can still be valid (the time
//! of revocation plus the retention, by default the slowest class bound plus skew), it is
//! dropped ([`RevocationSet::purge`], also done on insert now and then), so the set stays bounded
//! by what was revoked within one retention period, and [`RevocationSet::max_entries`] bounds it
//! outright (an insert past it is refused, never a silent eviction of a live entry).
//!
//! The check on the hot path ([`Revocation::is_revoked`]) takes no write lock and allocates
//! nothing: one hash lookup per kind that has entries (kinds without entries are skipped by a
//! counter), under a read lock of that kind's map. Keys are hashed with foldhash keyed by a
//! per-set random seed (fast on short keys, and nobody can aim collisions at it).
//!
//! # Example
//! ```
//! use std::sync::Arc;
//! use secmesh_core::ExpiryClass;
//! use secmesh_tokens::revocation::{RevocationKey, RevocationSet};
//! use secmesh_tokens::{Algorithm, Issuer, KeySet, MintRequest, SigningKey, Verifier};
//!
//! let key = SigningKey::generate(Algorithm::EdDsa)?;
//! let revoked = Arc::new(RevocationSet::new());
//! let verifier = Verifier::new(KeySet::single(key.verifying_key(Some("k1".into()))))
//!     .revocation(revoked.clone());
//! let issuer = Issuer::new(key, "k1", "https://sts.test").audience("mesh.test");
//! let token = issuer.mint(&MintRequest::new("user:mallory", ExpiryClass::Fast))?;
//! assert!(verifier.verify(&token).is_ok());
//!
//! // Every token mallory holds now, whatever its jti.
//! revoked.revoke(RevocationKey::Sub("user:mallory".into()), None)?;
//! assert!(verifier.verify(&token).is_err());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#[cfg(feature = "redis")]
pub mod redis;

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};

use foldhash::quality::RandomState;
use secmesh_core::claims::Claims;
use secmesh_core::{ClassBounds, Clock, ExpiryClass, SystemClock, TxnId};
use serde::{Deserialize, Serialize};

use crate::verifier::Revocation;

/// What a revocation names.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", content = "value", rename_all = "lowercase")]
#[non_exhaustive]
pub enum RevocationKey {
    /// One token, by `jti`.
    Jti(String),
    /// Every token of this subject issued before the entry's time.
    Sub(String),
    /// Every token of this transaction.
    Txn(TxnId),
    /// Every token signed by this key.
    Kid(String),
}

impl fmt::Display for RevocationKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RevocationKey::Jti(v) => write!(f, "jti {v}"),
            RevocationKey::Sub(v) => write!(f, "sub {v}"),
            RevocationKey::Txn(v) => write!(f, "txn {v}"),
            RevocationKey::Kid(v) => write!(f, "kid {v}"),
        }
    }
}

/// One revocation: what, since when, until when it matters, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Revoked {
    /// What is revoked.
    pub key: RevocationKey,
    /// When (Unix seconds). For a subject: tokens issued before this are revoked.
    pub at: u64,
    /// When the entry may be dropped (Unix seconds): no token it matches is valid after.
    pub until: u64,
    /// Why, in words (for the audit log and `status`; never a token).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl Revoked {
    /// An entry for `key`, revoked at `at`, droppable from `until` (Unix seconds).
    pub fn new(key: RevocationKey, at: u64, until: u64) -> Revoked {
        Revoked {
            key,
            at,
            until,
            reason: None,
        }
    }

    /// With a reason.
    pub fn reason(mut self, reason: impl Into<String>) -> Revoked {
        self.reason = Some(reason.into());
        self
    }
}

/// Why an entry was not taken.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RevocationError {
    /// The set holds [`RevocationSet::max_entries`] live entries.
    #[error("the revocation set is full ({0} live entries)")]
    Full(usize),
    /// An empty or oversized value (at most 256 bytes).
    #[error("a revocation names a non-empty value of at most 256 bytes")]
    InvalidValue,
}

/// The default retention: the slow class bound plus 60 s of skew.
pub fn default_retention() -> u64 {
    ClassBounds::default().bound(ExpiryClass::Slow) + 60
}

/// The default bound on live entries.
pub const DEFAULT_MAX_ENTRIES: usize = 1_000_000;

type Map<K> = HashMap<K, Revoked, RandomState>;

/// The four maps, under one lock: a check takes it once.
#[derive(Default)]
struct Maps {
    jti: Map<String>,
    sub: Map<String>,
    txn: Map<TxnId>,
    kid: Map<String>,
    /// When a full set last dropped expired entries (Unix seconds): entries expire on whole
    /// seconds, so another scan within the same second finds nothing more.
    purged_at: Option<u64>,
}

impl Maps {
    fn len(&self) -> usize {
        self.jti.len() + self.sub.len() + self.txn.len() + self.kid.len()
    }

    fn purge(&mut self, now: u64) -> usize {
        self.purged_at = Some(now);
        let before = self.len();
        self.jti.retain(|_, r| r.until > now);
        self.sub.retain(|_, r| r.until > now);
        self.txn.retain(|_, r| r.until > now);
        self.kid.retain(|_, r| r.until > now);
        before - self.len()
    }
}

/// Which kinds have entries, as bits (a check skips the empty kinds without hashing).
const JTI: u8 = 1;
const SUB: u8 = 2;
const TXN: u8 = 4;
const KID: u8 = 8;

/// The revocation set; see the [module docs](self). Share it in an `Arc`.
pub struct RevocationSet {
    maps: RwLock<Maps>,
    /// The kinds with entries ([`JTI`] | [`SUB`] | [`TXN`] | [`KID`]).
    kinds: AtomicU8,
    /// Entries held.
    len: AtomicUsize,
    retention: u64,
    max_entries: usize,
    clock: Arc<dyn Clock>,
    inserts: AtomicUsize,
}

impl fmt::Debug for RevocationSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RevocationSet")
            .field("len", &self.len.load(Ordering::Relaxed))
            .field("retention", &self.retention)
            .finish()
    }
}

impl Default for RevocationSet {
    fn default() -> Self {
        RevocationSet::new()
    }
}

impl RevocationSet {
    /// An empty set: the default retention, at most [`DEFAULT_MAX_ENTRIES`] live entries, the
    /// system clock.
    pub fn new() -> RevocationSet {
        RevocationSet {
            maps: RwLock::new(Maps::default()),
            kinds: AtomicU8::new(0),
            len: AtomicUsize::new(0),
            retention: default_retention(),
            max_entries: DEFAULT_MAX_ENTRIES,
            clock: Arc::new(SystemClock),
            inserts: AtomicUsize::new(0),
        }
    }

    /// Keep entries this long after their revocation (seconds).
    pub fn retention(mut self, secs: u64) -> Self {
        self.retention = secs;
        self
    }

    /// Refuse inserts past this many live entries.
    pub fn max_entries(mut self, n: usize) -> Self {
        self.max_entries = n;
        self
    }

    /// The clock ("now").
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Revoke `key` now, with an optional reason; returns the entry (to publish it).
    pub fn revoke(
        &self,
        key: RevocationKey,
        reason: Option<String>,
    ) -> Result<Revoked, RevocationError> {
        let at = self.clock.now_unix();
        let entry = Revoked {
            key,
            at,
            until: at.saturating_add(self.retention),
            reason,
        };
        self.insert(entry.clone())?;
        Ok(entry)
    }

    /// Take an entry (from a replica's stream or a resync). An entry already past its `until`
    /// is ignored; a second entry for the same key keeps the later `at` (a subject revoked
    /// again revokes its newer tokens too) and the later `until`.
    pub fn insert(&self, entry: Revoked) -> Result<(), RevocationError> {
        let valid = |s: &str| !s.is_empty() && s.len() <= 256;
        let ok = match &entry.key {
            RevocationKey::Jti(v) | RevocationKey::Sub(v) | RevocationKey::Kid(v) => valid(v),
            RevocationKey::Txn(_) => true,
        };
        if !ok {
            return Err(RevocationError::InvalidValue);
        }
        let now = self.clock.now_unix();
        if entry.until <= now {
            return Ok(());
        }
        // Now and then, drop what expired, so that a set that only grows stays bounded.
        if self.inserts.fetch_add(1, Ordering::Relaxed) % 1024 == 1023 {
            self.purge();
        }
        let mut maps = self.write();
        let present = match &entry.key {
            RevocationKey::Jti(v) => maps.jti.contains_key(v),
            RevocationKey::Sub(v) => maps.sub.contains_key(v),
            RevocationKey::Txn(v) => maps.txn.contains_key(v),
            RevocationKey::Kid(v) => maps.kid.contains_key(v),
        };
        if !present
            && maps.len() >= self.max_entries
            && (maps.purged_at == Some(now) || maps.purge(now) == 0)
        {
            self.settle(&maps);
            return Err(RevocationError::Full(self.max_entries));
        }
        match entry.key.clone() {
            RevocationKey::Jti(v) => merge(&mut maps.jti, v, entry),
            RevocationKey::Sub(v) => merge(&mut maps.sub, v, entry),
            RevocationKey::Txn(v) => merge(&mut maps.txn, v, entry),
            RevocationKey::Kid(v) => merge(&mut maps.kid, v, entry),
        }
        self.settle(&maps);
        Ok(())
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Maps> {
        self.maps.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Maps> {
        self.maps.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Publish the counters of `maps` (under its write lock).
    fn settle(&self, maps: &Maps) {
        let kinds = (u8::from(!maps.jti.is_empty()) * JTI)
            | (u8::from(!maps.sub.is_empty()) * SUB)
            | (u8::from(!maps.txn.is_empty()) * TXN)
            | (u8::from(!maps.kid.is_empty()) * KID);
        self.kinds.store(kinds, Ordering::Release);
        self.len.store(maps.len(), Ordering::Release);
    }

    /// Drop the entries whose time is over; how many were dropped.
    pub fn purge(&self) -> usize {
        let now = self.clock.now_unix();
        let mut maps = self.write();
        let n = maps.purge(now);
        self.settle(&maps);
        n
    }

    /// How many entries are held.
    pub fn len(&self) -> usize {
        self.len.load(Ordering::Acquire)
    }

    /// Whether no entry is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every live entry (for a resync or `status`), in no particular order.
    pub fn entries(&self) -> Vec<Revoked> {
        let now = self.clock.now_unix();
        let maps = self.read();
        let mut out = Vec::with_capacity(maps.len());
        for map in [&maps.jti, &maps.sub, &maps.kid] {
            out.extend(map.values().filter(|r| r.until > now).cloned());
        }
        out.extend(maps.txn.values().filter(|r| r.until > now).cloned());
        out
    }

    /// Replace the whole set with `entries` (a full resync): what the source no longer holds is
    /// dropped, what it holds is taken. Entries over the bound are left out and counted.
    pub fn replace_all(&self, entries: impl IntoIterator<Item = Revoked>) -> usize {
        let now = self.clock.now_unix();
        let mut new = Maps::default();
        let (mut n, mut left_out) = (0usize, 0usize);
        for e in entries {
            if e.until <= now {
                continue;
            }
            if n >= self.max_entries {
                left_out += 1;
                continue;
            }
            n += 1;
            match e.key.clone() {
                RevocationKey::Jti(v) => merge(&mut new.jti, v, e),
                RevocationKey::Sub(v) => merge(&mut new.sub, v, e),
                RevocationKey::Txn(v) => merge(&mut new.txn, v, e),
                RevocationKey::Kid(v) => merge(&mut new.kid, v, e),
            }
        }
        let mut maps = self.write();
        *maps = new;
        self.settle(&maps);
        left_out
    }
}

fn merge<K: std::hash::Hash + Eq>(map: &mut HashMap<K, Revoked, RandomState>, k: K, e: Revoked) {
    match map.get_mut(&k) {
        Some(old) => {
            old.at = old.at.max(e.at);
            old.until = old.until.max(e.until);
            if e.reason.is_some() {
                old.reason = e.reason;
            }
        }
        None => {
            map.insert(k, e);
        }
    }
}

impl Revocation for RevocationSet {
    fn is_revoked(&self, claims: &Claims, kid: Option<&str>) -> bool {
        let kinds = self.kinds.load(Ordering::Acquire);
        if kinds == 0 {
            return false;
        }
        let maps = self.read();
        (kinds & JTI != 0 && maps.jti.contains_key(&claims.jti))
            || (kinds & TXN != 0 && claims.txn.is_some_and(|t| maps.txn.contains_key(&t)))
            || (kinds & KID != 0 && kid.is_some_and(|k| maps.kid.contains_key(k)))
            || (kinds & SUB != 0
                && maps
                    .sub
                    .get(claims.sub.as_str())
                    .is_some_and(|r| claims.iat <= r.at))
    }
}
