//! One shard of the cache: an index from the token's keyed hash to a slot, the slots, and a
//! CLOCK (second-chance) hand for eviction.
//!
//! Every operation is O(1) or amortised O(1): a lookup is one probe of the index and one
//! constant-time compare; an insert into a full shard advances the hand past entries hit since
//! it last passed (clearing their bit: each bit cleared was set by a hit) to the first entry
//! that was not, and replaces it in place; a removal swaps the last slot into the hole. No
//! clock is read here: time is re-checked by the caller on each hit, and an expired entry is
//! dropped when it is next hit, or evicted by the hand like any entry nobody hits.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use secmesh_core::claims::Claims;

use super::TokenHash;
use super::admission::Doorkeeper;
use super::ct;
use crate::verifier::Verified;

/// A cached token: written once when it is made, then only read (by this shard under its
/// lock and by the threads' fronts without it), but for the flag that retires it.
pub(super) struct Entry {
    /// The token itself, compared in constant time with the one presented.
    pub(super) token: Box<[u8]>,
    pub(super) hash: TokenHash,
    pub(super) verified: Arc<Verified<Claims>>,
    /// Cleared when the shard no longer holds the entry (evicted, replaced, dropped after a
    /// failed re-check, cleared): a front holding it must not hit on it.
    live: AtomicBool,
    /// Hit since the shard's hand last passed (by its shard or by a thread's front). Written
    /// only when it changes: set by the first hit after the hand cleared it, so hits leave
    /// the line shared between the cores that read it.
    referenced: AtomicBool,
}

impl Entry {
    /// Whether the shard still holds it.
    pub(super) fn is_live(&self) -> bool {
        self.live.load(Ordering::Acquire)
    }

    fn retire(&self) {
        self.live.store(false, Ordering::Release);
    }

    /// Mark it hit (for the CLOCK hand), writing only if the mark was not there.
    pub(super) fn touch(&self) {
        if !self.referenced.load(Ordering::Relaxed) {
            self.referenced.store(true, Ordering::Relaxed);
        }
    }

    /// Whether it was hit since the hand last passed, clearing the mark.
    fn take_referenced(&self) -> bool {
        self.referenced.load(Ordering::Relaxed) && self.referenced.swap(false, Ordering::Relaxed)
    }
}

/// A slot of the shard.
pub(super) struct Slot {
    /// The keyed hash the index files it under.
    key: u64,
    pub(super) entry: Arc<Entry>,
}

/// The index's hasher: the keys are already keyed hashes (SipHash with a per-cache random
/// key), so they are used as they are.
#[derive(Default)]
pub(super) struct PassThrough(u64);

impl Hasher for PassThrough {
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// What an insert did.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Inserted {
    /// Into a free slot.
    Free,
    /// In place of an evicted entry.
    Evicted,
    /// Not at all: the same token was already cached (a concurrent miss).
    Skipped,
    /// Not at all: the doorkeeper saw it for the first time.
    Refused,
}

pub(super) struct Shard {
    index: HashMap<u64, u32, BuildHasherDefault<PassThrough>>,
    slots: Vec<Slot>,
    hand: usize,
    capacity: usize,
    door: Option<Doorkeeper>,
    pub(super) hits: u64,
    pub(super) misses: u64,
    pub(super) evictions: u64,
    pub(super) refused: u64,
}

impl Shard {
    pub(super) fn new(capacity: usize, door: bool) -> Shard {
        Shard {
            index: HashMap::with_capacity_and_hasher(capacity, BuildHasherDefault::default()),
            slots: Vec::with_capacity(capacity),
            hand: 0,
            capacity,
            door: door.then(|| Doorkeeper::new(capacity)),
            hits: 0,
            misses: 0,
            evictions: 0,
            refused: 0,
        }
    }

    pub(super) fn len(&self) -> usize {
        self.slots.len()
    }

    /// The entry for `token`, marked as hit.
    pub(super) fn get(&mut self, key: u64, token: &[u8]) -> Option<&Slot> {
        let i = *self.index.get(&key)? as usize;
        let slot = self.slots.get_mut(i)?;
        if !ct::eq(&slot.entry.token, token) {
            return None;
        }
        slot.entry.touch();
        Some(slot)
    }

    /// Cache a verified token (subject to admission), evicting one entry if the shard is full.
    pub(super) fn insert(
        &mut self,
        key: u64,
        token: &[u8],
        hash: TokenHash,
        verified: &Arc<Verified<Claims>>,
    ) -> Inserted {
        if let Some(&i) = self.index.get(&key) {
            // The same token, verified by a concurrent miss: keep the entry. Another token
            // under the same 64-bit key (a chance collision): the newer one takes the slot.
            if let Some(slot) = self.slots.get_mut(i as usize) {
                if !ct::eq(&slot.entry.token, token) {
                    slot.entry.retire();
                    *slot = Slot::new(key, token, hash, verified);
                }
                return Inserted::Skipped;
            }
        }
        if let Some(door) = &mut self.door
            && !door.admit(key)
        {
            self.refused += 1;
            return Inserted::Refused;
        }
        let slot = Slot::new(key, token, hash, verified);
        if self.slots.len() < self.capacity {
            let Ok(i) = u32::try_from(self.slots.len()) else {
                return Inserted::Skipped;
            };
            self.slots.push(slot);
            self.index.insert(key, i);
            return Inserted::Free;
        }
        let Some(victim) = self.victim() else {
            return Inserted::Skipped;
        };
        let Ok(i) = u32::try_from(victim) else {
            return Inserted::Skipped;
        };
        let old = std::mem::replace(&mut self.slots[victim], slot);
        old.entry.retire();
        self.index.remove(&old.key);
        self.index.insert(key, i);
        self.evictions += 1;
        Inserted::Evicted
    }

    /// Drop the entry for `key` if it is still `entry` (a failed re-check).
    pub(super) fn remove(&mut self, key: u64, entry: &Arc<Entry>) {
        let Some(&i) = self.index.get(&key) else {
            return;
        };
        let i = i as usize;
        if !self
            .slots
            .get(i)
            .is_some_and(|s| Arc::ptr_eq(&s.entry, entry))
        {
            return;
        }
        self.index.remove(&key);
        self.slots.swap_remove(i).entry.retire();
        if let Some(moved) = self.slots.get(i) {
            // The last slot moved into the hole.
            if let Ok(i) = u32::try_from(i) {
                self.index.insert(moved.key, i);
            }
        }
        if self.hand >= self.slots.len() {
            self.hand = 0;
        }
    }

    pub(super) fn clear(&mut self) {
        for slot in &self.slots {
            slot.entry.retire();
        }
        self.index.clear();
        self.slots.clear();
        self.hand = 0;
        if let Some(door) = &mut self.door {
            door.clear();
        }
    }

    /// The CLOCK hand: the first entry from the hand on that was not hit since the hand last
    /// passed it, clearing the bits it passes. At most one full turn.
    fn victim(&mut self) -> Option<usize> {
        let n = self.slots.len();
        for _ in 0..=n {
            let i = self.hand;
            self.hand = if i + 1 >= n { 0 } else { i + 1 };
            if !self.slots.get(i)?.entry.take_referenced() {
                return Some(i);
            }
        }
        None
    }
}

impl Slot {
    fn new(key: u64, token: &[u8], hash: TokenHash, verified: &Arc<Verified<Claims>>) -> Slot {
        Slot {
            key,
            entry: Arc::new(Entry {
                token: token.into(),
                hash,
                verified: verified.clone(),
                live: AtomicBool::new(true),
                referenced: AtomicBool::new(false),
            }),
        }
    }
}

#[cfg(test)]
impl Shard {
    pub(super) fn capacity(&self) -> usize {
        self.capacity
    }
}
