//! Per-flag exponential backoff for failed reconciles: 5s, 10s, 20s, ...
//! capped at 5m, back to 5s after a success.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

pub const FIRST_DELAY: Duration = Duration::from_secs(5);
pub const MAX_DELAY: Duration = Duration::from_secs(300);

/// Delay before the retry that follows the `failures`-th failure in a row.
pub fn delay_for(failures: u32) -> Duration {
    let doublings = failures.saturating_sub(1).min(16);
    FIRST_DELAY.saturating_mul(1 << doublings).min(MAX_DELAY)
}

/// Consecutive failures per object key (`namespace/name`).
#[derive(Default)]
pub struct Backoff {
    failures: Mutex<HashMap<String, u32>>,
}

impl Backoff {
    /// Records a failure and returns how long to wait before retrying.
    pub fn failed(&self, key: &str) -> Duration {
        let mut failures = self.failures.lock().unwrap_or_else(PoisonError::into_inner);
        let count = failures.entry(key.to_string()).or_default();
        *count = count.saturating_add(1);
        delay_for(*count)
    }

    pub fn succeeded(&self, key: &str) {
        self.failures
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn doubles_from_five_seconds_to_five_minutes() {
        let delays: Vec<u64> = (1..=8).map(|n| delay_for(n).as_secs()).collect();
        assert_eq!(delays, [5, 10, 20, 40, 80, 160, 300, 300]);
    }

    #[test]
    fn is_per_object_and_resets_on_success() {
        let backoff = Backoff::default();
        assert_eq!(backoff.failed("shop/a"), Duration::from_secs(5));
        assert_eq!(backoff.failed("shop/a"), Duration::from_secs(10));
        assert_eq!(backoff.failed("shop/b"), Duration::from_secs(5));
        backoff.succeeded("shop/a");
        assert_eq!(backoff.failed("shop/a"), Duration::from_secs(5));
    }

    proptest! {
        #[test]
        fn never_shrinks_and_stays_within_bounds(n in 0u32..u32::MAX) {
            let (now, next) = (delay_for(n), delay_for(n.saturating_add(1)));
            prop_assert!(now <= next);
            prop_assert!(now >= FIRST_DELAY && now <= MAX_DELAY);
        }
    }
}
