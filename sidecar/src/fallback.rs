//! Planning the attempts of one request: which variants, in which order, and
//! how long to wait before each retry. The shell sleeps and sends; nothing here
//! does I/O or reads a clock.
//!
//! Waiting is for retries of the *same* target only: its `Retry-After`, or
//! exponential backoff. Moving down the chain to a different target goes at
//! once, since the failed target's `Retry-After` describes that target's limits,
//! not the next one's, and the per-target circuit breaker already keeps a
//! failing target from being hammered.

use std::time::{Duration, SystemTime};

use aiflags_api::{CompiledFlag, Failure};
use http::HeaderMap;

/// Bound on retries per target, whatever a hand-written config says, so a plan
/// stays small (the CRD allows at most 5).
pub const MAX_RETRIES: u32 = 10;

/// First retry waits between half of this and this.
const BACKOFF_BASE: Duration = Duration::from_millis(100);
/// No backoff step waits longer.
const BACKOFF_CAP: Duration = Duration::from_secs(2);
/// A `Retry-After` beyond this is treated as this; longer than any deadline.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// Variant indices to try, in order: the chosen one `1 + retries` times, then
/// each `fallback.chain` variant (skipping the chosen one, duplicates and
/// unknown names) `1 + retries` times each. An out-of-range `chosen` is
/// skipped, leaving the chain.
pub fn attempt_plan(flag: &CompiledFlag, chosen: usize) -> Vec<usize> {
    let tries = flag.fallback.retries.min(MAX_RETRIES) as usize + 1;
    let mut targets: Vec<usize> = Vec::new();
    let chain = flag
        .fallback
        .chain
        .iter()
        .filter_map(|name| flag.variants.iter().position(|v| &v.name == name));
    for index in std::iter::once(chosen).chain(chain) {
        if index < flag.variants.len() && !targets.contains(&index) {
            targets.push(index);
        }
    }
    targets
        .into_iter()
        .flat_map(|index| std::iter::repeat_n(index, tries))
        .collect()
}

/// Any error status is a failure; whether it triggers a retry or fallback is
/// `CompiledFallback::applies_to`'s call, so `fallback.on: ["404"]` works.
pub fn classify_status(status: u16) -> Option<Failure> {
    (status >= 400).then_some(Failure::Status(status))
}

/// Exponential backoff with "equal jitter": step `n` (0 for the first retry)
/// waits between half and all of `min(100ms * 2^n, 2s)`, `random` choosing
/// where. The fixed half keeps retries from firing back to back; the random
/// half spreads the sidecars of a fleet apart.
pub fn backoff(retry_number: u32, random: u32) -> Duration {
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
pub fn parse_retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
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
/// the wait would not leave time for the attempt before the deadline: give up
/// on this target.
pub fn next_delay(
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
