//! Oracles and inputs shared by the fuzz targets.
//!
//! Every oracle here is written from the specification it names — RFC 8259
//! and RFC 7386 for JSON bodies, the WHATWG event-stream rules for SSE, the
//! providers' documentation for answers and usage — and never calls the sidecar code it
//! checks: a fuzz target that asks the code under test what the right answer
//! is can only find crashes.
//!
//! Each oracle checks itself against fixed cases ([`self_check`]) when a
//! target starts, so an oracle bug shows as a failure, not as silence.

pub mod answer;
pub mod config;
pub mod encode;
pub mod json;
pub mod request;
pub mod select;
pub mod sse;
pub mod sse_gen;

/// Every oracle against its fixed cases, once per process.
pub fn self_check() {
    static CHECKED: std::sync::Once = std::sync::Once::new();
    CHECKED.call_once(|| {
        answer::self_check();
        json::self_check();
        select::self_check();
        encode::self_check();
        sse::self_check();
    });
}

/// Reads fuzz input as a stream of choices; zeros once it runs out, so every
/// input, however short, is a complete program.
#[derive(Debug)]
pub struct Source<'a> {
    data: &'a [u8],
}

impl<'a> Source<'a> {
    pub fn new(data: &'a [u8]) -> Source<'a> {
        Source { data }
    }

    pub fn byte(&mut self) -> u8 {
        match self.data.split_first() {
            Some((&b, rest)) => {
                self.data = rest;
                b
            }
            None => 0,
        }
    }

    /// A number below `n` (`n` > 0).
    pub fn below(&mut self, n: usize) -> usize {
        usize::from(self.byte()) % n.max(1)
    }

    pub fn flag(&mut self) -> bool {
        self.byte() & 1 == 1
    }

    /// A number of tokens, small most of the time.
    pub fn count(&mut self) -> u64 {
        match self.byte() {
            0..=199 => u64::from(self.byte()),
            200..=249 => u64::from(self.byte()) << 8 | u64::from(self.byte()),
            _ => u64::from(u32::from_le_bytes([
                self.byte(),
                self.byte(),
                self.byte(),
                self.byte(),
            ])),
        }
    }

    /// Up to `max` raw bytes.
    pub fn bytes(&mut self, max: usize) -> &'a [u8] {
        let n = self.below(max + 1).min(self.data.len());
        let (taken, rest) = self.data.split_at(n);
        self.data = rest;
        taken
    }

    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// Whatever is left.
    pub fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.data)
    }
}

/// Splits `bytes` into chunks of the given lengths (each taken modulo what is
/// left plus one), then the remainder.
pub fn cut<'b>(mut bytes: &'b [u8], lengths: &[u8]) -> Vec<&'b [u8]> {
    let mut chunks = Vec::with_capacity(lengths.len() + 1);
    for &length in lengths {
        let (chunk, rest) = bytes.split_at(usize::from(length).min(bytes.len()));
        chunks.push(chunk);
        bytes = rest;
    }
    chunks.push(bytes);
    chunks
}

/// FNV-1a folded to 32 bits: a random number that replays with its input.
pub fn fnv1a(data: &[u8]) -> u32 {
    let hash = data.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    });
    (hash ^ (hash >> 32)) as u32
}
