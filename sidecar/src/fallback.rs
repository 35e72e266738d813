//! The fallback decision as a pure state machine: given what happened to the
//! last attempt, what to do next — send to a target, wait, or give up. The
//! attempt loop sleeps and sends; nothing here does I/O or reads a clock.
//!
//! Targets are the chosen variant, then each `fallback.chain` variant
//! (skipping the chosen one, duplicates and unknown names), each tried
//! `1 + retries` times (but once, when its content filter stopped the answer). Waiting is for retries of the *same* target only: its
//! `Retry-After`, or exponential backoff with jitter. Moving down the chain
//! goes at once, since the failed target's `Retry-After` describes that
//! target's limits, not the next one's, and the per-target circuit breaker
//! already keeps a failing target from being hammered.

use std::time::{Duration, SystemTime};

use aiflags_api::Failure;
use http::HeaderMap;
use tokio::time::Instant;

/// Bound on retries per target, whatever a hand-written config says.
pub(crate) const MAX_RETRIES: u32 = 10;

/// First retry waits between half of this and this.
const BACKOFF_BASE: Duration = Duration::from_millis(100);
/// No backoff step waits longer.
const BACKOFF_CAP: Duration = Duration::from_secs(2);
/// A `Retry-After` beyond this is treated as this; longer than any deadline.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// What the attempt loop does next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Step {
    /// Send an attempt to this variant.
    Send(usize),
    /// Sleep this long, then report [`Event::Waited`].
    Wait(Duration),
    /// Stop: nothing more to try, or no time left.
    GiveUp,
}

/// What happened since the last [`Step`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Event {
    /// The request arrived: the first step.
    Start,
    /// The wait asked for is over.
    Waited,
    /// The attempt failed. `covered`: the flag's `fallback.on` names this
    /// failure, so retrying or falling back may help.
    Failed {
        covered: bool,
        retry_after: Option<Duration>,
    },
    /// The target could not be tried at all (its circuit is open, or it is
    /// misconfigured): move on to the next one without retrying it.
    Skipped,
    /// The target answered, but its content filter stopped the answer and
    /// `fallback.on` names that: the same target would stop the same prompt
    /// again, so move on to the next one without retrying it.
    Refused,
}

/// One request's way through its targets.
#[derive(Clone, Debug)]
pub(crate) struct FallbackChain {
    /// Variant indices in the order they are tried, each once.
    targets: Vec<usize>,
    /// Attempts allowed per target: `1 + retries`.
    tries: u32,
    /// Index into `targets` of the current one.
    position: usize,
    /// Attempts made on the current target.
    tries_here: u32,
    deadline: Instant,
    done: bool,
}

impl FallbackChain {
    /// `chosen`, then `chain` (variant indices), among `variant_count`
    /// variants, `1 + retries` times each, until `deadline`.
    pub(crate) fn new(
        chosen: usize,
        chain: &[usize],
        variant_count: usize,
        retries: u32,
        deadline: Instant,
    ) -> FallbackChain {
        let mut targets: Vec<usize> = Vec::with_capacity(chain.len() + 1);
        for index in std::iter::once(chosen).chain(chain.iter().copied()) {
            if index < variant_count && !targets.contains(&index) {
                targets.push(index);
            }
        }
        FallbackChain {
            targets,
            tries: retries.min(MAX_RETRIES) + 1,
            position: 0,
            tries_here: 0,
            deadline,
            done: false,
        }
    }

    /// The variant indices this chain may try, in order.
    #[cfg(test)]
    pub(crate) fn targets(&self) -> &[usize] {
        &self.targets
    }

    /// The next step after `event`, at `now`; `random` spreads backoff.
    pub(crate) fn next(&mut self, event: Event, now: Instant, random: u32) -> Step {
        if self.done {
            return Step::GiveUp;
        }
        let step = match event {
            Event::Start | Event::Waited => self.send_current(),
            Event::Skipped | Event::Refused => self.move_on(),
            Event::Failed { covered: false, .. } => Step::GiveUp,
            Event::Failed {
                covered: true,
                retry_after,
            } if self.tries_here < self.tries => {
                let remaining = self.deadline.saturating_duration_since(now);
                match next_delay(self.tries_here - 1, retry_after, remaining, random) {
                    Some(wait) => Step::Wait(wait),
                    None => self.move_on(),
                }
            }
            Event::Failed { covered: true, .. } => self.move_on(),
        };
        // Nothing is sent once the deadline has passed.
        let step = match step {
            Step::Send(_) if now >= self.deadline => Step::GiveUp,
            other => other,
        };
        if let Step::Send(_) = step {
            self.tries_here += 1;
        }
        self.done = step == Step::GiveUp;
        step
    }

    fn send_current(&self) -> Step {
        self.targets
            .get(self.position)
            .map_or(Step::GiveUp, |t| Step::Send(*t))
    }

    fn move_on(&mut self) -> Step {
        self.position += 1;
        self.tries_here = 0;
        self.send_current()
    }
}

/// Any error status is a failure; whether it triggers a retry or fallback is
/// `CompiledFallback::applies_to`'s call, so `fallback.on: ["404"]` works.
pub(crate) fn classify_status(status: u16) -> Option<Failure> {
    (status >= 400).then_some(Failure::Status(status))
}

/// Whether a failure says the target itself is unwell, whatever the flag's
/// `fallback.on` says: a flag that retries on 400s must not open a provider's
/// circuit because its clients send bad requests, and an empty or filtered
/// answer came from a target that answered.
pub(crate) fn target_unwell(failure: Failure) -> bool {
    match failure {
        Failure::Timeout | Failure::Connect => true,
        Failure::Status(s) => s == 429 || s >= 500,
        Failure::Empty | Failure::ContentFilter => false,
    }
}

/// Exponential backoff with "equal jitter": step `n` (0 for the first retry)
/// waits between half and all of `min(100ms * 2^n, 2s)`, `random` choosing
/// where. The fixed half keeps retries from firing back to back; the random
/// half spreads the sidecars of a fleet apart.
pub(crate) fn backoff(retry_number: u32, random: u32) -> Duration {
    let ceiling = BACKOFF_BASE
        .checked_mul(1 << retry_number.min(16))
        .map_or(BACKOFF_CAP, |d| d.min(BACKOFF_CAP));
    let half = ceiling / 2;
    let jitter_nanos = (half.as_nanos() * u128::from(random)) >> 32;
    half + Duration::from_nanos(u64::try_from(jitter_nanos).unwrap_or(u64::MAX))
}

/// How long the upstream asked to wait: OpenAI's `retry-after-ms`, else
/// `retry-after` as seconds or an HTTP-date (past dates mean now). Unparsable
/// or negative values are ignored; huge ones are capped at an hour.
pub(crate) fn parse_retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let header = |name| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    };
    let wait = if let Some(ms) = header("retry-after-ms").and_then(parse_non_negative) {
        Duration::try_from_secs_f64(ms / 1000.0).ok()
    } else {
        let value = header("retry-after")?;
        match parse_non_negative(value) {
            Some(secs) => Duration::try_from_secs_f64(secs).ok(),
            None => {
                let at = httpdate::parse_http_date(value).ok()?;
                Some(at.duration_since(now).unwrap_or(Duration::ZERO))
            }
        }
    };
    // An overflowing value is absurd, not garbage: it means "not soon".
    Some(wait.unwrap_or(MAX_RETRY_AFTER).min(MAX_RETRY_AFTER))
}

/// The wait before retry `retry_number` (0 for the first) of the same target:
/// the upstream's `Retry-After` if it gave one, else [`backoff`]. `None` means
/// the wait would not leave time for the attempt before the deadline.
pub(crate) fn next_delay(
    retry_number: u32,
    retry_after: Option<Duration>,
    remaining: Duration,
    random: u32,
) -> Option<Duration> {
    let delay = retry_after.unwrap_or_else(|| backoff(retry_number, random));
    (delay < remaining).then_some(delay)
}

fn parse_non_negative(value: &str) -> Option<f64> {
    value
        .parse::<f64>()
        .ok()
        .filter(|v| v.is_finite() && *v >= 0.0)
}

#[cfg(test)]
#[path = "fallback_tests.rs"]
mod tests;
