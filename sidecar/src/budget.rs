//! One process-wide budget for the bytes the proxy holds in memory: request
//! bodies read to find their flag, whole responses read for their usage and
//! verdict, and the silent openings of streams held back until their first
//! content (`opening`). Streams otherwise pass through and cost nothing here. Past the budget a request gets
//! a clear 503 instead of the pod being OOM-killed with every request in it.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Bytes in use against a fixed limit.
#[derive(Debug)]
pub struct Budget {
    limit: usize,
    used: AtomicUsize,
}

/// Bytes held against a [`Budget`]; released when dropped.
#[derive(Debug)]
pub struct Reservation {
    budget: Arc<Budget>,
    bytes: usize,
}

impl Budget {
    pub fn new(limit: usize) -> Arc<Budget> {
        Arc::new(Budget {
            limit,
            used: AtomicUsize::new(0),
        })
    }

    pub(crate) fn limit(&self) -> usize {
        self.limit
    }

    /// Bytes currently held, for tests and diagnostics.
    #[cfg(any(test, feature = "fuzzing"))]
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    /// An empty reservation, to grow as bytes arrive.
    pub fn reserve_none(self: &Arc<Self>) -> Reservation {
        Reservation {
            budget: self.clone(),
            bytes: 0,
        }
    }

    fn take(&self, bytes: usize) -> bool {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(bytes).filter(|total| *total <= self.limit)
            })
            .is_ok()
    }

    fn give_back(&self, bytes: usize) {
        self.used.fetch_sub(bytes, Ordering::AcqRel);
    }
}

impl Reservation {
    /// Holds `total` bytes in all (more or fewer than now); `false`, holding
    /// what it held before, when the budget cannot cover the growth.
    pub fn resize(&mut self, total: usize) -> bool {
        if total > self.bytes {
            if !self.budget.take(total - self.bytes) {
                return false;
            }
        } else {
            self.budget.give_back(self.bytes - total);
        }
        self.bytes = total;
        true
    }

    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.budget.give_back(self.bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reservations_grow_within_the_limit_and_give_back_on_drop() {
        let budget = Budget::new(100);
        let mut a = budget.reserve_none();
        assert!(a.resize(60));
        let mut b = budget.reserve_none();
        assert!(!b.resize(41), "60 + 41 is past 100");
        assert_eq!(b.bytes(), 0);
        assert!(b.resize(40));
        assert_eq!(budget.used(), 100);
        assert!(a.resize(10));
        assert_eq!(budget.used(), 50);
        drop(a);
        drop(b);
        assert_eq!(budget.used(), 0);
    }
}
