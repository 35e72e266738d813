//! FNV-1a, for hash maps whose keys come from config (flag keys, model
//! names and glob literals, metric label values). A request's strings only
//! look keys up, never insert them, so a fixed, unkeyed hash gives a client
//! no way to grow a bucket; and it is several times cheaper than SipHash on
//! the short strings these maps hold.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

#[derive(Default)]
pub(crate) struct Fnv(u64);

impl Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        let mut hash = if self.0 == 0 {
            0xcbf2_9ce4_8422_2325
        } else {
            self.0
        };
        for byte in bytes {
            hash ^= u64::from(*byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
        self.0 = hash;
    }
}

/// A map keyed by config strings.
pub(crate) type FnvMap<K, V> = HashMap<K, V, BuildHasherDefault<Fnv>>;
