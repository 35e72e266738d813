//! The attempt loop: the I/O shell around [`FallbackChain`]. It sends each
//! attempt the chain asks for — the body spliced for that variant, bounded by
//! the per-attempt and first-token timeouts and the flag's deadline, guarded
//! by the target's circuit breaker — sleeps the waits it asks for, and tells
//! it what happened. A response is committed to the client only once it is
//! good (or nothing better is left): a whole answer once read and judged
//! ([`crate::verdict`]), a stream once its opening is read ([`crate::opening`]).

mod failed;
mod one;

use std::sync::Arc;
use std::time::Duration;

use aiflags_api::{Failure, Operation};
use bytes::Bytes;
use http::request::Parts;
use http::response::Parts as ResponseParts;
use tokio::time::Instant;

pub(crate) use self::failed::{Cause, Failed};
use crate::budget::{Budget, Reservation};
use crate::circuit::{Admission, Breakers};
use crate::fallback::{Event, FallbackChain, Step, classify_status, target_unwell};
use crate::flags::resolved::{ResolvedFlag, ResolvedVariant};
use crate::opening::{Hold, MAX_HELD};
use crate::request::ScannedBody;
use crate::stream::StreamReader;
use crate::telemetry::{Judged, Record, Telemetry};
use crate::upstream::target::{Protocol, Target};
use crate::upstream::{ResponseBody, Upstream};
use crate::usage::Usage;
use crate::verdict::Verdict;

/// Timeouts from config are clamped to this, so deadline arithmetic cannot overflow.
const MAX_TIMEOUT: Duration = Duration::from_secs(7 * 24 * 3600);

/// A request a flag applies to, on its way upstream.
pub(crate) struct Exchange<'a> {
    pub parts: &'a Parts,
    pub operation: Operation,
    pub protocol: Protocol,
    pub flag: &'a ResolvedFlag,
    /// The variant the flag chose.
    pub chosen: usize,
    pub body: &'a ScannedBody,
}

/// What the attempt loop needs from the sidecar.
pub(crate) struct Attempts<'a> {
    pub upstream: &'a Upstream,
    /// Keyed by provider label + model: one sick model does not block its provider.
    pub breakers: &'a Breakers<Arc<str>>,
    pub telemetry: &'a dyn Telemetry,
    pub budget: &'a Arc<Budget>,
    /// Largest whole (non-streamed) response held to read it.
    pub max_response_bytes: usize,
}

/// A good response, not yet sent.
pub(crate) struct Served {
    pub head: ResponseParts,
    pub body: ServedBody,
    /// The variant that served it.
    pub variant: usize,
}

pub(crate) enum ServedBody {
    /// Read whole (decoded, if the upstream compressed it); the reservation
    /// holds its bytes against the budget until it is sent.
    Whole {
        bytes: Bytes,
        held: Reservation,
        usage: Option<Usage>,
        /// `None` for an error status or a body that is no answer's shape.
        verdict: Option<Verdict>,
    },
    /// A stream: its opening, read before committing it (decoded and
    /// filtered), then the rest through the same reader.
    Stream {
        opening: Bytes,
        held: Option<Reservation>,
        body: ResponseBody,
        reader: Box<StreamReader>,
        /// The stream ended while it was held: its verdict, known before it
        /// was committed (and counted by the stream when it is sent).
        ended: Option<Verdict>,
    },
}

/// No attempt succeeded.
pub(crate) struct GaveUp {
    /// The last failure and the variant it happened on; `None` when no attempt could be made.
    pub last: Option<(Failed, usize)>,
}

impl Attempts<'_> {
    /// Runs the flag's fallback chain for `exchange`, filling `record`.
    pub(crate) async fn run(
        &self,
        exchange: &Exchange<'_>,
        record: &mut Record,
    ) -> Result<Served, GaveUp> {
        let flag = exchange.flag;
        let policy = &flag.compiled.fallback;
        let deadline = after(Instant::now(), policy.deadline_ms);
        let mut chain = FallbackChain::new(
            exchange.chosen,
            &flag.chain,
            flag.variants.len(),
            policy.retries,
            deadline,
        );
        let streaming = exchange.body.streaming();
        // Ask for the usage chunk when the client did not; hide it again later.
        let strip_usage_chunk = streaming
            && matches!(exchange.operation, Operation::Chat | Operation::Completions)
            && !exchange.body.wants_usage_chunk();
        let hold = (streaming && policy.judges_answers()).then(|| Hold {
            budget: self.budget.clone(),
            limit: MAX_HELD,
        });
        let plan = Plan {
            streaming,
            strip_usage_chunk,
            hold: hold.as_ref(),
            deadline,
        };
        let mut last: Option<(Failed, usize)> = None;
        let mut event = Event::Start;
        loop {
            let index = match chain.next(event, Instant::now(), crate::random::random_u32()) {
                Step::GiveUp => return Err(GaveUp { last }),
                Step::Wait(wait) => {
                    tokio::time::sleep(wait).await;
                    // Waiting for an upstream's Retry-After is not the proxy's work.
                    record.upstream_time += wait;
                    event = Event::Waited;
                    continue;
                }
                Step::Send(index) => index,
            };
            let Some(variant) = flag.variant(index) else {
                event = Event::Skipped;
                continue;
            };
            let target = match variant.target(exchange.protocol) {
                Ok(target) => target,
                Err(message) => {
                    last = Some((Failed::new(Cause::Misconfigured, message.clone()), index));
                    event = Event::Skipped;
                    continue;
                }
            };
            record.provider = target.label_arc();
            let key = variant.breaker_key(exchange.protocol);
            let admission = self.breakers.try_acquire(key, std::time::Instant::now());
            if let Admission::Rejected { retry_in } = admission {
                let message = format!(
                    "the circuit for {} {} is open after repeated failures; next probe in {}ms",
                    target.label(),
                    variant.model,
                    retry_in.as_millis()
                );
                self.telemetry
                    .attempt_finished(target.label(), &variant.model, "circuit_open");
                last = Some((
                    Failed::new(Cause::Upstream(Failure::Connect), message),
                    index,
                ));
                event = Event::Skipped;
                continue;
            }
            if let Some((failed, from)) = &last
                && *from != index
                && let Some(from) = flag.variant(*from)
            {
                record.fallbacks.push((
                    from.model.clone(),
                    variant.model.clone(),
                    failed.outcome_label(),
                ));
            }
            record.attempts += 1;
            let started = Instant::now();
            let result = self.attempt(exchange, target, variant, &plan).await;
            record.upstream_time += started.elapsed();
            self.judge_target(key, admission, target, variant, &result);
            let judged = match &result {
                Ok((_, ServedBody::Whole { verdict, .. })) => *verdict,
                Ok((_, ServedBody::Stream { ended, .. })) => *ended,
                Err(failed) => failed.verdict(),
            };
            // A served stream counts its own answer when it ends.
            let counted_later = matches!(result, Ok((_, ServedBody::Stream { .. })));
            if let Some(verdict) = judged.filter(|_| !counted_later) {
                record.answers.push(Judged {
                    variant: variant.name.clone(),
                    model: variant.model.clone(),
                    verdict,
                });
            }
            match result {
                Ok((head, body)) => {
                    let outcome = judged.map_or("ok", |v| match v {
                        Verdict::Content => "ok",
                        bad => bad.label(),
                    });
                    self.telemetry
                        .attempt_finished(target.label(), &variant.model, outcome);
                    return Ok(Served {
                        head,
                        body,
                        variant: index,
                    });
                }
                Err(failed) => {
                    self.telemetry.attempt_finished(
                        target.label(),
                        &variant.model,
                        &failed.outcome_label(),
                    );
                    tracing::info!(flag = %flag.key, variant = %variant.name, error = %failed.message, "attempt failed");
                    event = match failed.cause {
                        // Its filter would stop the same prompt again.
                        Cause::Upstream(Failure::ContentFilter) => Event::Refused,
                        Cause::Upstream(failure) => Event::Failed {
                            covered: policy.applies_to(failure),
                            retry_after: failed.retry_after,
                        },
                        Cause::Misconfigured => Event::Skipped,
                        Cause::Unholdable { .. } => Event::Failed {
                            covered: false,
                            retry_after: None,
                        },
                    };
                    last = Some((failed, index));
                }
            }
        }
    }

    /// Tells the target's breaker how it did. A failure of our own (no
    /// credential, an answer too large to hold) says nothing about the
    /// target, and neither does a status the target is not to blame for.
    fn judge_target(
        &self,
        key: &Arc<str>,
        admission: Admission,
        target: &Target,
        variant: &ResolvedVariant,
        result: &Result<(ResponseParts, ServedBody), Failed>,
    ) {
        let healthy = match result {
            Ok((head, _)) => {
                Some(!classify_status(head.status.as_u16()).is_some_and(target_unwell))
            }
            Err(Failed {
                cause: Cause::Upstream(failure),
                ..
            }) => Some(!target_unwell(*failure)),
            Err(_) => None,
        };
        let changed = healthy.and_then(|healthy| {
            self.breakers
                .record(key, admission, healthy, std::time::Instant::now())
        });
        if let Some(open) = changed {
            self.telemetry
                .circuit_changed(target.label(), &variant.model, open);
        }
    }
}

/// How every attempt of one request is made.
struct Plan<'a> {
    streaming: bool,
    /// The proxy asks for the usage chunk and hides it again.
    strip_usage_chunk: bool,
    /// Streams are held back until their first content: the flag judges answers.
    hold: Option<&'a Hold>,
    deadline: Instant,
}

/// `now` plus `ms` milliseconds, clamped to [`MAX_TIMEOUT`].
fn after(now: Instant, ms: u64) -> Instant {
    let wait = Duration::from_millis(ms).min(MAX_TIMEOUT);
    now.checked_add(wait).unwrap_or(now)
}

fn ms_until(from: Instant, to: Instant) -> u128 {
    to.saturating_duration_since(from).as_millis()
}
