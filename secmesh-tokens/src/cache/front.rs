//! The per-thread front of the cache: a hit on a token this thread uses often writes no
//! memory that another thread writes.
//!
//! A hit through a shard takes the shard's lock and clones the entry's `Arc`: two atomic
//! writes to lines that every thread hitting that shard or that token pulls to its own core
//! (two threads on hot hits cost ~1.8x one thread). The front is a small set-associative table
//! in a `thread_local!`, shared by every cache of the process and told apart by a cache id. A
//! resident holds the shard's entry (the token, its [`TokenHash`], a liveness flag) and this
//! thread's own copy of the verified claims, so the `Arc` a hit hands out is counted on this
//! thread's line only. A front hit reads the entry (lines written only when the entry is
//! made or retired), compares the token in constant time, and then the caller re-checks time
//! and revocation exactly as on a shard hit.
//!
//! Invalidation stays with the shard: when the shard evicts, replaces or drops an entry, or the
//! cache is cleared, the entry is retired (its flag cleared) and a front resident holding it
//! no longer hits. A re-check that fails takes the resident out here and the entry out of its
//! shard.
//!
//! A token enters the front the second time this thread finds it in its shard: the first
//! sighting only writes its tag in a small table of recent keys, so a thread cycling through
//! many tokens copies no claims. Bounded: `SETS` x `WAYS` (512) residents per thread (a token of
//! at most the verifier's size limit and one copy of its claims each), replaced by a CLOCK
//! hand within each set that never evicts a resident hit since it last passed (so that a set
//! with more hot tokens than ways does not copy claims on every turn); a resident of a dropped cache is freed when it is replaced or when
//! its thread ends.

use std::cell::RefCell;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use secmesh_core::claims::Claims;

use super::TokenHash;
use super::ct;
use super::shard::Entry;
use crate::verifier::Verified;

/// Sets in a thread's front (chosen by the key's low bits).
pub(super) const SETS: usize = 128;
/// Residents per set.
pub(super) const WAYS: usize = 4;
/// Tags of recently seen keys (a token is copied into the front on its second sighting).
const SEEN: usize = 1024;

/// What the front says about a token.
pub(super) enum Look {
    /// A hit: this thread's copy of the claims, the token's hash, and this thread's stripe
    /// for counting it.
    Hit(Arc<Verified<Claims>>, TokenHash, usize),
    /// Not resident, but seen recently on this thread: on a shard hit, make it resident.
    Promote,
    /// Not resident and not seen recently (now noted), or no front on this thread.
    First,
}

struct Resident {
    entry: Arc<Entry>,
    local: Arc<Verified<Claims>>,
}

#[derive(Default)]
struct Way {
    /// The cache's id; 0 for an empty way.
    cache: u64,
    key: u64,
    resident: Option<Resident>,
    /// Hit since the set's hand last passed.
    referenced: bool,
}

struct Front {
    ways: Box<[Way]>,
    hands: [u8; SETS],
    seen: Box<[u64]>,
    stripe: usize,
}

thread_local! {
    static FRONT: RefCell<Front> = RefCell::new(Front::new());
}

/// Hands each thread's front a stripe of the hit counters, in turn.
static NEXT_STRIPE: AtomicUsize = AtomicUsize::new(0);

impl Front {
    fn new() -> Front {
        Front {
            ways: (0..SETS * WAYS).map(|_| Way::default()).collect(),
            hands: [0; SETS],
            seen: vec![0u64; SEEN].into_boxed_slice(),
            stripe: NEXT_STRIPE.fetch_add(1, Ordering::Relaxed),
        }
    }

    fn set(&mut self, key: u64) -> (usize, &mut [Way]) {
        let set = key as usize & (SETS - 1);
        let ways = self
            .ways
            .get_mut(set * WAYS..(set + 1) * WAYS)
            .unwrap_or_default();
        (set, ways)
    }

    fn look(&mut self, cache: u64, key: u64, token: &[u8]) -> Look {
        let stripe = self.stripe;
        let (_, ways) = self.set(key);
        if let Some(way) = ways.iter_mut().find(|w| w.cache == cache && w.key == key) {
            match &way.resident {
                // Retired by its shard: free it now.
                Some(r) if !r.entry.is_live() => *way = Way::default(),
                Some(r) if ct::eq(&r.entry.token, token) => {
                    way.referenced = true;
                    // For its shard's hand too (a write only when the hand cleared it).
                    r.entry.touch();
                    return Look::Hit(r.local.clone(), r.entry.hash, stripe);
                }
                _ => {}
            }
        }
        let tag = (key ^ cache.wrapping_mul(0x9e37_79b9_7f4a_7c15)) | 1;
        let i = (key >> 24) as usize & (SEEN - 1);
        match self.seen.get_mut(i) {
            Some(seen) if *seen == tag => Look::Promote,
            Some(seen) => {
                *seen = tag;
                Look::First
            }
            None => Look::First,
        }
    }

    /// Make `entry` resident with the copy `local` makes, if the set has room: a free way,
    /// the way already filed under `key`, or one not hit since the set's hand last passed
    /// (CLOCK). When every way was hit since, the hand clears their bits and the token is not
    /// taken this time: a set that more hot tokens map to than it has ways keeps the ones it
    /// holds (the others are served by their shard) instead of copying claims on every turn.
    fn install(
        &mut self,
        cache: u64,
        key: u64,
        entry: Arc<Entry>,
        local: impl FnOnce(&Entry) -> Arc<Verified<Claims>>,
    ) -> Option<Arc<Verified<Claims>>> {
        let set = key as usize & (SETS - 1);
        let (Some(ways), Some(hand)) = (
            self.ways.get_mut(set * WAYS..(set + 1) * WAYS),
            self.hands.get_mut(set),
        ) else {
            return None;
        };
        let pick = ways
            .iter()
            .position(|w| w.cache == cache && w.key == key)
            .or_else(|| ways.iter().position(|w| w.resident.is_none()))
            .or_else(|| {
                let mut at = usize::from(*hand) % WAYS;
                for _ in 0..WAYS {
                    let taken = ways
                        .get_mut(at)
                        .is_some_and(|w| std::mem::take(&mut w.referenced));
                    let here = at;
                    at = (at + 1) % WAYS;
                    if !taken {
                        *hand = at as u8;
                        return Some(here);
                    }
                }
                *hand = at as u8;
                None
            })?;
        let way = ways.get_mut(pick)?;
        let local = local(&entry);
        *way = Way {
            cache,
            key,
            resident: Some(Resident {
                entry,
                local: local.clone(),
            }),
            referenced: false,
        };
        Some(local)
    }

    fn take(&mut self, cache: u64, key: u64) -> Option<Arc<Entry>> {
        let (_, ways) = self.set(key);
        let way = ways.iter_mut().find(|w| w.cache == cache && w.key == key)?;
        std::mem::take(way).resident.map(|r| r.entry)
    }
}

/// What this thread's front holds for `token` (keyed `key` in cache `cache`).
pub(super) fn look(cache: u64, key: u64, token: &[u8]) -> Look {
    FRONT
        .try_with(|f| match f.try_borrow_mut() {
            Ok(mut f) => f.look(cache, key, token),
            Err(_) => Look::First,
        })
        .unwrap_or(Look::First)
}

/// Make `entry` resident in this thread's front if its set has room, with this thread's copy
/// of its claims (made by `local` only then): that copy, or `None` when it was not taken.
pub(super) fn install(
    cache: u64,
    key: u64,
    entry: Arc<Entry>,
    local: impl FnOnce(&Entry) -> Arc<Verified<Claims>>,
) -> Option<Arc<Verified<Claims>>> {
    // A thread whose front is gone (it is ending) just does not keep it.
    FRONT
        .try_with(|f| f.try_borrow_mut().ok()?.install(cache, key, entry, local))
        .ok()
        .flatten()
}

/// Take the resident for `key` out of this thread's front (its re-check failed).
pub(super) fn take(cache: u64, key: u64) -> Option<Arc<Entry>> {
    FRONT
        .try_with(|f| f.try_borrow_mut().ok()?.take(cache, key))
        .ok()
        .flatten()
}

/// How many residents this thread's front holds.
#[cfg(test)]
pub(super) fn residents() -> usize {
    FRONT.with(|f| {
        f.borrow()
            .ways
            .iter()
            .filter(|w| w.resident.is_some())
            .count()
    })
}
