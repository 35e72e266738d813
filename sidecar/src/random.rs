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
        let (next, drawn) = step(state.get());
        state.set(next);
        drawn
    })
}

/// One xorshift64* step: the next state and the draw (the product's high
/// half, its best-mixed bits).
fn step(mut x: u64) -> (u64, u32) {
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    (x, (x.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 32) as u32)
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

    /// Uniform enough for a split: from a fixed state (so the test cannot
    /// flake), each of 16 buckets gets its share of 160,000 draws within
    /// 3 %, and no draw repeats the one before.
    #[test]
    fn draws_spread_evenly() {
        let mut buckets = [0u32; 16];
        let (mut state, mut previous) = step(0x9e37_79b9_7f4a_7c15);
        for _ in 0..160_000 {
            let (next, n) = step(state);
            state = next;
            assert_ne!(n, previous);
            previous = n;
            buckets[(n >> 28) as usize] += 1;
        }
        for count in buckets {
            assert!((9_700..=10_300).contains(&count), "{buckets:?}");
        }
    }

    #[test]
    fn a_thread_starts_from_a_non_zero_state_and_draws() {
        assert_eq!(seed() & 1, 1);
        let draws: Vec<u32> = (0..4).map(|_| random_u32()).collect();
        assert!(draws.windows(2).any(|w| w[0] != w[1]), "{draws:?}");
    }
}
