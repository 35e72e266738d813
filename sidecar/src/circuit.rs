//! Per-target circuit breakers: after `failure_threshold` consecutive failures
//! a target is skipped for `cooldown`, then exactly one probe request is let
//! through; its outcome closes the breaker or opens it for another cooldown.
//!
//! Time is passed in, so the state machine is tested without sleeping. The lock
//! is held only for a map lookup and never across an `await`.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct BreakerSettings {
    /// Consecutive failures that open the breaker (0 behaves as 1).
    pub failure_threshold: u32,
    /// How long an open breaker rejects before letting a probe through; also
    /// how long a probe may stay unreported before another is allowed.
    pub cooldown: Duration,
}

/// Whether a request may go to a target.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Admission {
    Allowed,
    /// Allowed as the single trial request of a half-open breaker: report its
    /// outcome with [`Breakers::record`].
    Probe,
    /// Skip this target; it may be tried again after `retry_in`.
    Rejected {
        retry_in: Duration,
    },
}

/// The breakers of all targets, keyed by whatever identifies a target.
#[derive(Debug)]
pub(crate) struct Breakers<K> {
    settings: BreakerSettings,
    /// Only targets with recent failures have an entry; absent means closed.
    states: Mutex<HashMap<K, State>>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Closed {
        failures: u32,
    },
    Open {
        until: Instant,
    },
    /// A probe is out. If it is never reported (its client went away), a new
    /// probe is allowed at `expires`, so the breaker cannot wedge.
    HalfOpen {
        expires: Instant,
    },
}

impl Default for BreakerSettings {
    fn default() -> Self {
        BreakerSettings {
            failure_threshold: 5,
            cooldown: Duration::from_secs(30),
        }
    }
}

impl<K: Eq + Hash + Clone> Breakers<K> {
    pub(crate) fn new(settings: BreakerSettings) -> Self {
        Breakers {
            settings,
            states: Mutex::new(HashMap::new()),
        }
    }

    /// Asks to send a request to `key` at `now`.
    pub(crate) fn try_acquire(&self, key: &K, now: Instant) -> Admission {
        let mut states = self.lock();
        let Some(state) = states.get_mut(key) else {
            return Admission::Allowed;
        };
        match *state {
            State::Closed { .. } => Admission::Allowed,
            State::Open { until } | State::HalfOpen { expires: until } if now < until => {
                Admission::Rejected {
                    retry_in: until.saturating_duration_since(now),
                }
            }
            State::Open { .. } | State::HalfOpen { .. } => {
                *state = State::HalfOpen {
                    expires: self.after_cooldown(now),
                };
                Admission::Probe
            }
        }
    }

    /// Reports the outcome of a request admitted by [`Self::try_acquire`].
    /// Any success closes the breaker: the target answered. A failure counts
    /// toward the threshold when closed, and a failed probe re-opens the
    /// breaker; failures of requests admitted before it opened change nothing.
    /// Returns the new state when the breaker opened (`Some(true)`) or closed
    /// (`Some(false)`), so the caller can update a gauge only on change.
    pub(crate) fn record(
        &self,
        key: &K,
        admission: Admission,
        success: bool,
        now: Instant,
    ) -> Option<bool> {
        if matches!(admission, Admission::Rejected { .. }) {
            return None;
        }
        let mut states = self.lock();
        if success {
            // Almost always: no breaker has an entry, nothing to hash.
            if states.is_empty() {
                return None;
            }
            let was_open = states
                .remove(key)
                .is_some_and(|state| !matches!(state, State::Closed { .. }));
            return was_open.then_some(false);
        }
        let threshold = self.settings.failure_threshold.max(1);
        let reopened = State::Open {
            until: self.after_cooldown(now),
        };
        let state = states
            .entry(key.clone())
            .or_insert(State::Closed { failures: 0 });
        match (*state, admission) {
            (State::Closed { failures }, _) => {
                let failures = failures.saturating_add(1);
                if failures >= threshold {
                    *state = reopened;
                    return Some(true);
                }
                *state = State::Closed { failures };
                None
            }
            // Already counted as open: a failed probe only extends the cooldown.
            (State::HalfOpen { .. }, Admission::Probe) => {
                *state = reopened;
                None
            }
            _ => None,
        }
    }

    fn after_cooldown(&self, now: Instant) -> Instant {
        now.checked_add(self.settings.cooldown).unwrap_or(now)
    }

    /// No code panics while holding the lock, but a poisoned map is still
    /// consistent: every update is a single assignment.
    fn lock(&self) -> MutexGuard<'_, HashMap<K, State>> {
        self.states.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
#[path = "circuit_tests.rs"]
mod tests;
