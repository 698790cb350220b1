//! Admission: whether a token verified on a miss is worth a place in the cache.
//!
//! Behind the edge of a mesh every request carries a freshly minted token, so caching every
//! verified token evicts an entry per request (and frees its claims) for entries that will
//! never be hit. [`Admission::SeenTwice`] puts a doorkeeper in front of each shard, as in
//! TinyLFU: a small Bloom filter of the tokens verified recently. A token is cached the second
//! time it is verified within the window; the first time, it is only remembered in the
//! filter (two bits). The filter is cleared after as many sightings as its shard holds
//! entries, so its false-positive rate stays low (about 5%) and a token seen once long ago is
//! forgotten. A false positive only admits a token early; it never changes an answer.

/// Which verified tokens the cache keeps.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Admission {
    /// Cache a token the second time it is verified within the doorkeeper's window (the
    /// default): a token used once costs one verification and no cache churn; a token used
    /// `n` times costs two verifications and `n - 2` hits.
    #[default]
    SeenTwice,
    /// Cache every token that verifies: a token used `n` times costs one verification and
    /// `n - 1` hits, and each one-off token evicts an entry once the cache is full.
    Always,
}

/// The doorkeeper of one shard: a Bloom filter with two probes over the token's keyed hash.
#[derive(Debug)]
pub(super) struct Doorkeeper {
    bits: Box<[u64]>,
    mask: u64,
    seen: usize,
    window: usize,
}

/// Bits in the filter per entry of the shard.
const BITS_PER_ENTRY: usize = 8;

impl Doorkeeper {
    pub(super) fn new(entries: usize) -> Doorkeeper {
        let nbits = (entries.max(8) * BITS_PER_ENTRY).next_power_of_two();
        Doorkeeper {
            bits: vec![0u64; nbits / 64].into_boxed_slice(),
            mask: nbits as u64 - 1,
            seen: 0,
            window: entries.max(1),
        }
    }

    /// Whether `key` was recorded in the current window; records it if not.
    pub(super) fn admit(&mut self, key: u64) -> bool {
        // Bits 32.. pick the shard (constant within one): the probes take the low bits and
        // the bits from 40 on.
        let probes = [key & self.mask, key.rotate_right(40) & self.mask];
        let present = probes.iter().all(|&p| self.bit(p));
        if !present {
            if self.seen >= self.window {
                self.clear();
            }
            self.seen += 1;
            for p in probes {
                self.set(p);
            }
        }
        present
    }

    pub(super) fn clear(&mut self) {
        self.bits.fill(0);
        self.seen = 0;
    }

    fn bit(&self, p: u64) -> bool {
        self.bits
            .get((p / 64) as usize)
            .is_some_and(|w| w & (1 << (p % 64)) != 0)
    }

    fn set(&mut self, p: u64) {
        if let Some(w) = self.bits.get_mut((p / 64) as usize) {
            *w |= 1 << (p % 64);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Doorkeeper;

    #[test]
    fn admits_the_second_sighting_and_forgets_after_a_window() {
        let mut d = Doorkeeper::new(16);
        let key = 0x1234_5678_9abc_def0;
        assert!(!d.admit(key));
        assert!(d.admit(key));
        // A window of other sightings clears the filter.
        for i in 0..32u64 {
            d.admit(i.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        }
        d.admit(0xdead_beef_dead_beef);
        assert!(!d.admit(key));
    }
}
