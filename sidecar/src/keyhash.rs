//! The hash for maps whose keys come from config (flag keys, model names
//! and glob literals, upstream origins, metric label values). A request's
//! strings only look keys up, never insert them, so a fixed, unkeyed hash
//! gives a client no way to grow a bucket, and the hash can be cheap: eight
//! bytes a step (a multiply and an xor), where FNV-1a took one byte a step
//! and SipHash several times that. `finish` folds the 128-bit product of
//! the state, so the low bits (the bucket) and the high ones (hashbrown's
//! tag) both depend on every input byte.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// An odd multiplier with bits spread over the whole word (rustc-hash's).
const K: u64 = 0xf135_7aea_2e62_a9c5;
/// The fold's multiplier (the fractional digits of π).
const FOLD: u64 = 0x243f_6a88_85a3_08d3;

pub(crate) struct KeyHasher(u64);

impl Default for KeyHasher {
    fn default() -> Self {
        KeyHasher(FOLD)
    }
}

impl KeyHasher {
    #[inline]
    fn add(&mut self, word: u64) {
        self.0 = (self.0 ^ word).wrapping_mul(K).rotate_left(23);
    }
}

impl Hasher for KeyHasher {
    #[inline]
    fn finish(&self) -> u64 {
        let product = u128::from(self.0) * u128::from(FOLD);
        (product as u64) ^ ((product >> 64) as u64)
    }

    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut words = bytes.chunks_exact(8);
        for word in &mut words {
            let mut buf = [0u8; 8];
            buf.copy_from_slice(word);
            self.add(u64::from_le_bytes(buf));
        }
        // The last one to seven bytes, and the length, so that inputs that
        // differ only by trailing zero bytes hash apart.
        let rest = words.remainder();
        let mut buf = [0u8; 8];
        buf[..rest.len()].copy_from_slice(rest);
        self.add(u64::from_le_bytes(buf) ^ ((bytes.len() as u64) << 56));
    }

    /// `str`'s end marker (and any other single byte): one step.
    #[inline]
    fn write_u8(&mut self, byte: u8) {
        self.add(u64::from(byte) | 0x100);
    }
}

/// A map keyed by config strings.
pub(crate) type KeyMap<K, V> = HashMap<K, V, BuildHasherDefault<KeyHasher>>;

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::hash::Hash;

    use super::*;

    fn hash<T: Hash + ?Sized>(value: &T) -> u64 {
        let mut hasher = KeyHasher::default();
        value.hash(&mut hasher);
        hasher.finish()
    }

    #[test]
    fn equal_keys_hash_alike_and_boundaries_count() {
        assert_eq!(hash("bench-model"), hash(&String::from("bench-model")));
        assert_ne!(hash(&["ab", "c"]), hash(&["a", "bc"]));
        assert_ne!(hash(b"abc\0".as_slice()), hash(b"abc".as_slice()));
        assert_ne!(hash(""), hash(&["", ""]));
    }

    /// Config-like keys that differ in a digit or two: no two hash alike,
    /// and both the low bits (hashbrown's bucket) and the top seven (its
    /// tag) spread over their range.
    #[test]
    fn similar_keys_spread_over_buckets_and_tags() {
        let keys: Vec<String> = (0..20_000)
            .map(|i| format!("bench-model-{i:04}-2026-12-01"))
            .chain((0..20_000).map(|i| format!("flag-{i}")))
            .collect();
        let hashes: Vec<u64> = keys.iter().map(|k| hash(k.as_str())).collect();
        assert_eq!(hashes.iter().collect::<HashSet<_>>().len(), keys.len());
        let mut buckets = vec![0u32; 1024];
        let mut tags = vec![0u32; 128];
        for h in &hashes {
            buckets[(h & 1023) as usize] += 1;
            tags[(h >> 57) as usize] += 1;
        }
        // 40,000 keys: about 39 a bucket and 312 a tag on average.
        assert!(
            buckets.iter().all(|&n| (10..=80).contains(&n)),
            "{buckets:?}"
        );
        assert!(tags.iter().all(|&n| (200..=450).contains(&n)), "{tags:?}");
    }
}
