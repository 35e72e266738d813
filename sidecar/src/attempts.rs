//! The attempt loop: the chosen variant, its retries, then the fallback
//! chain, each attempt bounded by its timeouts and the flag's deadline, each
//! target guarded by its circuit breaker. A response is committed to the
//! client only once it is good (or nothing better is left).

use std::time::{Duration, SystemTime};

use aiflags_api::{CompiledVariant, Failure};
use bytes::Bytes;
use http::header;
use http::response::Parts as ResponseParts;
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use tokio::time::{Instant, timeout};

use crate::body::full;
use crate::circuit::Admission;
use crate::error::ProxyError;
use crate::fallback::{attempt_plan, classify_status, next_delay, parse_retry_after};
use crate::proxy::{Exchange, Proxy, Routed, random_u32};
use crate::respond::{give_up, respond};
use crate::rewrite::{apply_variant, ensure_stream_usage, is_streaming};
use crate::telemetry::{AttemptOutcome, RequestOutcome};
use crate::upstream::{Target, UpstreamError};

/// Error bodies kept to hand back when no attempt succeeds.
const MAX_ERROR_BODY: usize = 1 << 20;
/// Largest non-streamed response held to read its usage (embeddings of a
/// large batch run to tens of megabytes); past it the attempt fails.
const MAX_RESPONSE_BODY: usize = 128 << 20;
/// Timeouts from config are clamped to this, so deadline arithmetic cannot overflow.
const MAX_TIMEOUT: Duration = Duration::from_secs(7 * 24 * 3600);

/// `now` plus `ms` milliseconds, clamped to [`MAX_TIMEOUT`].
fn after(now: Instant, ms: u64) -> Instant {
    let wait = Duration::from_millis(ms).min(MAX_TIMEOUT);
    now.checked_add(wait).unwrap_or(now)
}

/// Whether an outcome says the target itself is unwell, whatever the flag's
/// `fallback.on` says: a flag that retries on 400s must not open a provider's
/// circuit because its clients send bad requests.
fn target_unwell(failure: Failure) -> bool {
    match failure {
        Failure::Timeout | Failure::Connect => true,
        Failure::Status(s) => s == 429 || s >= 500,
    }
}

/// One failed attempt.
pub(crate) struct Failed {
    /// `None`: not a failure class fallback can act on (e.g. a missing credential).
    pub(crate) failure: Option<Failure>,
    pub(crate) message: String,
    /// The upstream's own error response, handed back if nothing succeeds.
    pub(crate) response: Option<(ResponseParts, Bytes)>,
    pub(crate) retry_after: Option<Duration>,
}

impl Failed {
    fn new(failure: Option<Failure>, message: String) -> Failed {
        Failed {
            failure,
            message,
            response: None,
            retry_after: None,
        }
    }

    fn outcome_label(&self) -> String {
        match self.failure {
            Some(Failure::Timeout) => "timeout".into(),
            Some(Failure::Connect) => "connect".into(),
            Some(Failure::Status(s)) => format!("status_{s}"),
            None => "error".into(),
        }
    }
}

/// A good response, not yet sent.
pub(crate) enum Served {
    Whole(ResponseParts, Bytes),
    Stream {
        head: ResponseParts,
        first: Bytes,
        body: Incoming,
        strip_usage: bool,
    },
}

pub(crate) async fn run(
    proxy: &Proxy,
    exchange: Exchange<'_>,
    outcome: &mut RequestOutcome,
) -> Result<Routed, ProxyError> {
    let flag = exchange.flag;
    let fallback = &flag.fallback;
    let deadline = after(Instant::now(), fallback.deadline_ms);
    let streaming = is_streaming(&exchange.body);
    outcome.flag = flag.key.clone();
    let mut attempts = 0u32;
    let mut last: Option<(Failed, &CompiledVariant)> = None;
    let mut last_index = None;
    // A target given up on (circuit open, no time left to wait) is not retried.
    let mut skip = None;
    let mut retry_number = 0;
    for variant_index in attempt_plan(flag, exchange.chosen) {
        let Some(variant) = flag.variants.get(variant_index) else {
            continue;
        };
        let remaining = deadline.saturating_duration_since(Instant::now());
        if skip == Some(variant_index) || remaining.is_zero() {
            continue;
        }
        // Retries of the same target wait (Retry-After or backoff); moving
        // down the chain goes at once.
        if last_index == Some(variant_index) {
            let retry_after = last.as_ref().and_then(|(failed, _)| failed.retry_after);
            let Some(delay) = next_delay(retry_number, retry_after, remaining, random_u32()) else {
                skip = Some(variant_index);
                continue;
            };
            retry_number += 1;
            tokio::time::sleep(delay).await;
            // Waiting before a retry (backoff or Retry-After) is the upstream's
            // doing, not work of the proxy's: it is not overhead.
            outcome.upstream_duration += delay;
        } else {
            retry_number = 0;
        }
        last_index = Some(variant_index);
        let target = match proxy
            .upstream
            .target_for(exchange.protocol, variant.provider.as_ref())
        {
            Ok(target) => target,
            Err(e) => {
                // A misconfigured target fails the same way every time: no retries.
                last = Some((Failed::new(None, e.to_string()), variant));
                skip = Some(variant_index);
                continue;
            }
        };
        outcome.provider = target.label().to_string();
        let key = format!("{} {}", target.label(), variant.model);
        let admission = admit(proxy, &key);
        if let Admission::Rejected { retry_in } = admission {
            let message = format!(
                "the circuit for {key} is open after repeated failures; next probe in {}ms",
                retry_in.as_millis()
            );
            report_attempt(proxy, &target, variant, "circuit_open");
            last = Some((Failed::new(Some(Failure::Connect), message), variant));
            skip = Some(variant_index);
            continue;
        }
        if let Some((failed, from)) = &last {
            let reason = failed.outcome_label();
            outcome
                .fallbacks
                .push((from.model.clone(), variant.model.clone(), reason));
        }
        attempts += 1;
        let mut body = exchange.body.clone();
        apply_variant(&mut body, variant);
        let strip_usage = streaming && ensure_stream_usage(exchange.operation, &mut body);
        let started = Instant::now();
        let result = attempt(
            proxy,
            &exchange,
            &target,
            body,
            streaming,
            strip_usage,
            deadline,
        )
        .await;
        outcome.upstream_duration += started.elapsed();
        let health = match &result {
            Ok(Served::Whole(head, _)) => {
                Some(!classify_status(head.status.as_u16()).is_some_and(target_unwell))
            }
            Ok(Served::Stream { .. }) => Some(true),
            // A failure of our own (no credential, oversized response) says
            // nothing about the target: the breaker hears nothing.
            Err(f) => f.failure.map(|f| !target_unwell(f)),
        };
        if let Some(open) = health.and_then(|healthy| record(proxy, &key, admission, healthy)) {
            proxy
                .telemetry
                .circuit_changed(target.label(), &variant.model, open);
        }
        match result {
            Ok(served) => {
                report_attempt(proxy, &target, variant, "ok");
                describe(outcome, &exchange, variant, attempts);
                return Ok(respond(
                    proxy, &exchange, served, variant, attempts, outcome,
                ));
            }
            Err(failed) => {
                report_attempt(proxy, &target, variant, &failed.outcome_label());
                tracing::info!(flag = %flag.key, variant = %variant.name, error = %failed.message, "attempt failed");
                let go_on = failed.failure.is_some_and(|f| fallback.applies_to(f));
                last = Some((failed, variant));
                if !go_on {
                    break;
                }
            }
        }
    }
    give_up(&exchange, last, attempts, outcome)
}

/// One attempt: send, then wait for a response worth committing to.
async fn attempt(
    proxy: &Proxy,
    exchange: &Exchange<'_>,
    target: &Target,
    body: serde_json::Value,
    streaming: bool,
    strip_usage: bool,
    deadline: Instant,
) -> Result<Served, Failed> {
    let fallback = &exchange.flag.fallback;
    let now = Instant::now();
    let attempt_end = after(now, fallback.per_attempt_timeout_ms).min(deadline);
    // Streams must show their first byte by the first-token timeout.
    let first_byte_by = match (streaming, fallback.first_token_timeout_ms) {
        (true, Some(ms)) => after(now, ms).min(attempt_end),
        _ => attempt_end,
    };
    let timed_out = |what: &str| {
        Failed::new(
            Some(Failure::Timeout),
            format!("{what} from {}", target.label()),
        )
    };
    let bytes = serde_json::to_vec(&body).unwrap_or_default();
    let send = proxy
        .upstream
        .send(target, &exchange.parts, full(bytes), true);
    let response = match tokio::time::timeout_at(first_byte_by, send).await {
        Err(_) => {
            return Err(timed_out(&format!(
                "no response within {}ms",
                ms_until(now, first_byte_by)
            )));
        }
        Ok(Err(UpstreamError::Connect(message))) => {
            return Err(Failed::new(Some(Failure::Connect), message));
        }
        Ok(Err(UpstreamError::Config(message))) => return Err(Failed::new(None, message)),
        Ok(Ok(response)) => response,
    };
    let (head, mut body) = response.into_parts();
    let failure = classify_status(head.status.as_u16());
    if let Some(failure) = failure.filter(|f| fallback.applies_to(*f)) {
        let retry_after = parse_retry_after(&head.headers, SystemTime::now());
        let limited = Limited::new(body, MAX_ERROR_BODY).collect();
        let bytes = match tokio::time::timeout_at(attempt_end, limited).await {
            Ok(Ok(collected)) => collected.to_bytes(),
            _ => Bytes::new(),
        };
        return Err(Failed {
            failure: Some(failure),
            message: format!("{} answered {}", target.label(), head.status),
            response: Some((head, bytes)),
            retry_after,
        });
    }
    let is_sse = head
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/event-stream"));
    if streaming && is_sse && head.status.is_success() {
        loop {
            let frame = match tokio::time::timeout_at(first_byte_by, body.frame()).await {
                Err(_) => {
                    return Err(timed_out(&format!(
                        "no first token within {}ms",
                        ms_until(now, first_byte_by)
                    )));
                }
                Ok(None) => {
                    return Err(Failed::new(
                        Some(Failure::Connect),
                        format!("{} ended the stream before its first byte", target.label()),
                    ));
                }
                Ok(Some(Err(e))) => {
                    return Err(Failed::new(
                        Some(Failure::Connect),
                        format!(
                            "{} broke the stream before its first byte: {e}",
                            target.label()
                        ),
                    ));
                }
                Ok(Some(Ok(frame))) => frame,
            };
            if let Some(first) = frame.into_data().ok().filter(|d| !d.is_empty()) {
                return Ok(Served::Stream {
                    head,
                    first,
                    body,
                    strip_usage,
                });
            }
        }
    }
    let whole = Limited::new(body, MAX_RESPONSE_BODY).collect();
    match timeout(attempt_end.saturating_duration_since(Instant::now()), whole).await {
        Err(_) => Err(timed_out(&format!(
            "no complete response within {}ms",
            ms_until(now, attempt_end)
        ))),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => Err(Failed::new(
            None,
            format!(
                "{} sent a response larger than {} MiB",
                target.label(),
                MAX_RESPONSE_BODY >> 20
            ),
        )),
        Ok(Err(e)) => Err(Failed::new(
            Some(Failure::Connect),
            format!("{} broke off the response: {e}", target.label()),
        )),
        Ok(Ok(collected)) => Ok(Served::Whole(head, collected.to_bytes())),
    }
}

fn ms_until(from: Instant, to: Instant) -> u128 {
    to.saturating_duration_since(from).as_millis()
}

/// Labels a served request: `variant` is the one the split chose (so a
/// canary's fallbacks count against the canary), `model` the one that served.
fn describe(
    outcome: &mut RequestOutcome,
    exchange: &Exchange<'_>,
    variant: &CompiledVariant,
    attempts: u32,
) {
    outcome.variant = exchange.chosen_name().to_string();
    outcome.model = variant.model.clone();
    outcome.pricing = variant.pricing.clone();
    outcome.attempts = attempts;
}

fn admit(proxy: &Proxy, key: &String) -> Admission {
    proxy.breakers.try_acquire(key, std::time::Instant::now())
}

/// `Some(open)` when the breaker changed state.
fn record(proxy: &Proxy, key: &String, admission: Admission, success: bool) -> Option<bool> {
    proxy
        .breakers
        .record(key, admission, success, std::time::Instant::now())
}

fn report_attempt(proxy: &Proxy, target: &Target, variant: &CompiledVariant, outcome: &str) {
    proxy.telemetry.attempt_finished(&AttemptOutcome {
        provider: target.label(),
        model: &variant.model,
        outcome: outcome.to_string(),
    });
}
