//! flagd-compatible fractional bucketing: the sticky split.
//!
//! A user lands in the same variant on every pod and every restart because the
//! bucket depends only on `flagKey + stickyValue`. The arithmetic is flagd's
//! "high-precision" (v2) fractional evaluation: hash with MurmurHash3 x86 32-bit
//! (seed 0), project the unsigned hash onto `[0, total)` as
//! `(hash * total) >> 32`, and take the first variant whose cumulative weight
//! exceeds the bucket.
//!
//! Two consequences the rollout relies on:
//! - `floor(h * T / 2^32) < c` holds exactly when `h / 2^32 < c / T`, so the pick
//!   depends only on the weight *ratios*: basis points `[2500, 7500]` and flagd's
//!   percents `[25, 75]` pick the same variant for every user.
//! - A variant listed last only gains users as its weight grows, so raising a
//!   canary from 10% to 20% keeps every earlier canary user in the canary.

/// MurmurHash3, x86 32-bit variant (Austin Appleby's `MurmurHash3_x86_32`).
pub(crate) fn murmur3_32(data: &[u8], seed: u32) -> u32 {
    let mut h = seed;
    let mut blocks = data.chunks_exact(4);
    for block in &mut blocks {
        let word = <[u8; 4]>::try_from(block).map_or(0, u32::from_le_bytes);
        h ^= scramble(word);
        h = h.rotate_left(13).wrapping_mul(5).wrapping_add(0xe654_6b64);
    }
    let tail = blocks.remainder();
    if !tail.is_empty() {
        let word = tail
            .iter()
            .rev()
            .fold(0u32, |acc, byte| (acc << 8) | u32::from(*byte));
        h ^= scramble(word);
    }
    // The reference folds in the length modulo 2^32.
    h ^= data.len() as u32;
    finalize(h)
}

/// The bucket of `flagKey + stickyValue` in `[0, total)`; 0 when `total` is 0.
#[cfg(test)]
pub(crate) fn bucket(flag_key: &str, sticky_value: &str, total: u32) -> u32 {
    // The product of two u32 shifted right by 32 is below `total`, so it fits.
    project(hash_key(flag_key, sticky_value), u64::from(total)) as u32
}

/// The sticky pick: index of the first weight whose running sum exceeds the
/// bucket of `flagKey + stickyValue`; `None` when the weights sum to 0.
pub(crate) fn pick_weighted(flag_key: &str, sticky_value: &str, weights: &[u32]) -> Option<usize> {
    pick_with_hash(hash_key(flag_key, sticky_value), weights)
}

/// The same pick for requests with no sticky value, from a uniform random `u32`
/// supplied by the caller (keeps this module deterministic).
pub(crate) fn pick_random(weights: &[u32], random: u32) -> Option<usize> {
    pick_with_hash(random, weights)
}

fn hash_key(flag_key: &str, sticky_value: &str) -> u32 {
    let mut key = String::with_capacity(flag_key.len() + sticky_value.len());
    key.push_str(flag_key);
    key.push_str(sticky_value);
    murmur3_32(key.as_bytes(), 0)
}

fn pick_with_hash(hash: u32, weights: &[u32]) -> Option<usize> {
    // u64 sums cannot overflow for any slice that fits in memory.
    let total: u64 = weights.iter().map(|w| u64::from(*w)).sum();
    if total == 0 {
        return None;
    }
    let bucket = project(hash, total);
    let mut range_end = 0u64;
    weights.iter().position(|weight| {
        range_end += u64::from(*weight);
        bucket < range_end
    })
}

/// `(hash * total) >> 32`, widened so totals above `u32::MAX` cannot overflow.
fn project(hash: u32, total: u64) -> u64 {
    ((u128::from(hash) * u128::from(total)) >> 32) as u64
}

fn scramble(word: u32) -> u32 {
    word.wrapping_mul(0xcc9e_2d51)
        .rotate_left(15)
        .wrapping_mul(0x1b87_3593)
}

fn finalize(mut h: u32) -> u32 {
    h ^= h >> 16;
    h = h.wrapping_mul(0x85eb_ca6b);
    h ^= h >> 13;
    h = h.wrapping_mul(0xc2b2_ae35);
    h ^ (h >> 16)
}

#[cfg(test)]
#[path = "bucketing_tests.rs"]
mod tests;
