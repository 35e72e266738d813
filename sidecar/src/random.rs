//! Randomness for unsticky splits, jitter and request ids: xorshift64* per
//! thread, seeded once from std's random SipHash keys, so it needs no RNG
//! crate and costs a few instructions a call. Not for secrets.

use std::cell::Cell;
use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};

pub(crate) fn random_u32() -> u32 {
    thread_local! {
        static STATE: Cell<u64> = Cell::new(seed());
    }
    STATE.with(|state| {
        let mut x = state.get();
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        state.set(x);
        (x.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 32) as u32
    })
}

/// A random non-zero state (xorshift stays at zero once there).
fn seed() -> u64 {
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u64(0x5eed);
    hasher.finish() | 1
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Uniform enough for a split: each of 16 buckets gets its share of
    /// 160,000 draws within 3 %, and no draw repeats the one before.
    #[test]
    fn draws_spread_evenly() {
        let mut buckets = [0u32; 16];
        let mut previous = random_u32();
        for _ in 0..160_000 {
            let n = random_u32();
            assert_ne!(n, previous);
            previous = n;
            buckets[(n >> 28) as usize] += 1;
        }
        for count in buckets {
            assert!((9_700..=10_300).contains(&count), "{buckets:?}");
        }
    }
}
