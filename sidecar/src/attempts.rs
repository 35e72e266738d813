//! The attempt loop: the I/O shell around [`FallbackChain`]. It sends each
//! attempt the chain asks for — the body spliced for that variant, bounded by
//! the per-attempt and first-token timeouts and the flag's deadline, guarded
//! by the target's circuit breaker — sleeps the waits it asks for, and tells
//! it what happened. A response is committed to the client only once it is
//! good (or nothing better is left).

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use aiflags_api::{Failure, Operation};
use bytes::Bytes;
use http::request::Parts;
use http::response::Parts as ResponseParts;
use http::{StatusCode, header};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use tokio::time::Instant;

use crate::body::boxed;
use crate::budget::{Budget, Reservation};
use crate::circuit::{Admission, Breakers};
use crate::fallback::{
    Event, FallbackChain, Step, classify_status, parse_retry_after, target_unwell,
};
use crate::flags::resolved::{ResolvedFlag, ResolvedVariant};
use crate::request::decode::{Coding, StreamDecoder, codings, decode_whole};
use crate::request::splice::{Edits, splice};
use crate::request::{ReadError, ScannedBody, read_bounded};
use crate::telemetry::{Record, Telemetry};
use crate::upstream::target::{Protocol, Target};
use crate::upstream::{Send, Upstream, UpstreamError};

/// Error bodies kept to hand back when no attempt succeeds (outside the
/// budget: small, and one per request at most).
const MAX_ERROR_BODY: usize = 64 << 10;
/// Timeouts from config are clamped to this, so deadline arithmetic cannot overflow.
const MAX_TIMEOUT: Duration = Duration::from_secs(7 * 24 * 3600);

/// A request a flag applies to, on its way upstream.
pub struct Exchange<'a> {
    pub parts: &'a Parts,
    pub operation: Operation,
    pub protocol: Protocol,
    pub flag: &'a ResolvedFlag,
    /// The variant the flag chose.
    pub chosen: usize,
    pub body: &'a ScannedBody,
}

/// What the attempt loop needs from the sidecar.
pub struct Attempts<'a> {
    pub upstream: &'a Upstream,
    /// Keyed by provider label + model: one sick model does not block its provider.
    pub breakers: &'a Breakers<Arc<str>>,
    pub telemetry: &'a dyn Telemetry,
    pub budget: &'a Arc<Budget>,
    /// Largest whole (non-streamed) response held to read it.
    pub max_response_bytes: usize,
}

/// A good response, not yet sent.
pub struct Served {
    pub head: ResponseParts,
    pub body: ServedBody,
    /// The variant that served it.
    pub variant: usize,
    /// The proxy asked for the usage chunk: hide it from the client.
    pub strip_usage_chunk: bool,
}

pub enum ServedBody {
    /// Read whole (decoded, if the upstream compressed it); the reservation
    /// holds its bytes against the budget until it is sent.
    Whole(Bytes, Reservation),
    /// The first data of a stream and the rest of it.
    Stream {
        first: Bytes,
        body: Incoming,
        decoder: Option<Box<StreamDecoder>>,
    },
}

/// No attempt succeeded.
pub struct GaveUp {
    /// The last failure and the variant it happened on; `None` when no attempt could be made.
    pub last: Option<(Failed, usize)>,
}

/// One failed attempt.
pub struct Failed {
    pub cause: Cause,
    pub message: String,
    /// The upstream's own error response, handed back if nothing succeeds.
    pub response: Option<(ResponseParts, Bytes)>,
    pub retry_after: Option<Duration>,
}

/// Why an attempt failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cause {
    /// The upstream failed in a way `fallback.on` can name.
    Upstream(Failure),
    /// The target is misconfigured (no credential, bad URL): it fails the
    /// same way every time, so it is skipped, not retried.
    Misconfigured,
    /// The upstream's answer could not be held: too large, or the memory
    /// budget is spent. Nothing else is tried.
    Unholdable { budget: bool },
}

impl Failed {
    fn new(cause: Cause, message: String) -> Failed {
        Failed {
            cause,
            message,
            response: None,
            retry_after: None,
        }
    }

    /// The `outcome` label of the attempt metric and the fallback `reason`.
    pub fn outcome_label(&self) -> Arc<str> {
        match self.cause {
            Cause::Upstream(Failure::Timeout) => "timeout".into(),
            Cause::Upstream(Failure::Connect) => "connect".into(),
            Cause::Upstream(Failure::Status(s)) => format!("status_{s}").into(),
            Cause::Misconfigured | Cause::Unholdable { .. } => "error".into(),
        }
    }
}

impl Attempts<'_> {
    /// Runs the flag's fallback chain for `exchange`, filling `record`.
    pub async fn run(
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
            let result = self
                .attempt(
                    exchange,
                    target,
                    variant,
                    streaming,
                    strip_usage_chunk,
                    deadline,
                )
                .await;
            record.upstream_time += started.elapsed();
            self.judge_target(key, admission, target, variant, &result);
            match result {
                Ok(body) => {
                    let (head, body) = body;
                    self.telemetry
                        .attempt_finished(target.label(), &variant.model, "ok");
                    return Ok(Served {
                        head,
                        body,
                        variant: index,
                        strip_usage_chunk,
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

    /// One attempt: send, then wait for a response worth committing to.
    async fn attempt(
        &self,
        exchange: &Exchange<'_>,
        target: &Target,
        variant: &ResolvedVariant,
        streaming: bool,
        strip_usage_chunk: bool,
        deadline: Instant,
    ) -> Result<(ResponseParts, ServedBody), Failed> {
        let policy = &exchange.flag.compiled.fallback;
        let now = Instant::now();
        let attempt_end = after(now, policy.per_attempt_timeout_ms).min(deadline);
        // Streams must show their first byte by the first-token timeout.
        let first_byte_by = match (streaming, policy.first_token_timeout_ms) {
            (true, Some(ms)) => after(now, ms).min(attempt_end),
            _ => attempt_end,
        };
        let timed_out = |what: String| {
            Failed::new(
                Cause::Upstream(Failure::Timeout),
                format!("{what} from {}", target.label()),
            )
        };
        let edits = Edits {
            model: &variant.model,
            params: variant.params.as_ref(),
            include_usage: strip_usage_chunk,
        };
        let body = splice(&exchange.body.bytes, &exchange.body.scanned, &edits)
            .map_err(|e| Failed::new(Cause::Misconfigured, e.to_string()))?;
        let how = Send {
            decoded: exchange.body.decoded,
            reads_response: true,
        };
        let send = self.upstream.send(target, exchange.parts, boxed(body), how);
        let response = match tokio::time::timeout_at(first_byte_by, send).await {
            Err(_) => {
                return Err(timed_out(format!(
                    "no response within {}ms",
                    ms_until(now, first_byte_by)
                )));
            }
            Ok(Err(UpstreamError::Connect(message))) => {
                return Err(Failed::new(Cause::Upstream(Failure::Connect), message));
            }
            Ok(Err(UpstreamError::Config(message))) => {
                return Err(Failed::new(Cause::Misconfigured, message));
            }
            Ok(Ok(response)) => response,
        };
        let (head, mut body) = response.into_parts();
        if let Some(failure) =
            classify_status(head.status.as_u16()).filter(|f| policy.applies_to(*f))
        {
            return Err(failed_status(head, body, failure, target, attempt_end).await);
        }
        let response_codings = codings(&head.headers);
        if streaming && is_event_stream(&head) && head.status.is_success() {
            let coding = match response_codings.as_deref() {
                Ok([]) => None,
                Ok([coding]) if *coding != Coding::Zstd => Some(*coding),
                _ => {
                    return Err(Failed::new(
                        Cause::Upstream(Failure::Connect),
                        format!(
                            "{} sent a stream with a content-encoding the proxy cannot decode as it streams",
                            target.label()
                        ),
                    ));
                }
            };
            let first = first_data(&mut body, first_byte_by, now, target).await?;
            // The first bytes tell zlib-wrapped deflate from raw.
            let decoder =
                coding.map(|c| Box::new(StreamDecoder::new(c, &first, MAX_STREAM_DECODED)));
            return Ok((
                head,
                ServedBody::Stream {
                    first,
                    body,
                    decoder,
                },
            ));
        }
        let (bytes, mut reservation) = self.read_whole(body, attempt_end, now, target).await?;
        let mut head = head;
        let bytes = match response_codings {
            Ok(codings) if codings.is_empty() => bytes,
            Ok(codings) => {
                let plain =
                    decode_whole(bytes, &codings, self.max_response_bytes).map_err(|e| {
                        Failed::new(
                            Cause::Upstream(Failure::Connect),
                            format!("{}: {e}", target.label()),
                        )
                    })?;
                head.headers.remove(header::CONTENT_ENCODING);
                // The decoded bytes are what is held now.
                if !reservation.resize(plain.len()) {
                    return Err(Failed::new(
                        Cause::Unholdable { budget: true },
                        format!(
                            "the sidecar's buffer budget ({} bytes) cannot hold the decoded response; try again shortly",
                            self.budget.limit()
                        ),
                    ));
                }
                plain
            }
            // An encoding we cannot undo: hand it on as it came, unread.
            Err(_) => bytes,
        };
        Ok((head, ServedBody::Whole(bytes, reservation)))
    }

    /// Reads a whole response within the size limit, the budget and the attempt's time.
    async fn read_whole(
        &self,
        body: Incoming,
        attempt_end: Instant,
        started: Instant,
        target: &Target,
    ) -> Result<(Bytes, Reservation), Failed> {
        let limit = self.max_response_bytes;
        let read = read_bounded(body, limit, self.budget);
        match tokio::time::timeout_at(attempt_end, read).await {
            Err(_) => Err(Failed::new(
                Cause::Upstream(Failure::Timeout),
                format!(
                    "no complete response within {}ms from {}",
                    ms_until(started, attempt_end),
                    target.label()
                ),
            )),
            Ok(Ok(read)) => Ok(read),
            Ok(Err(ReadError::TooLarge)) => Err(Failed::new(
                Cause::Unholdable { budget: false },
                format!(
                    "{} sent a response larger than {} bytes; raise --max-response-bytes (AIFLAGS_MAX_RESPONSE_BYTES) to accept it",
                    target.label(),
                    limit
                ),
            )),
            Ok(Err(ReadError::Budget)) => Err(Failed::new(
                Cause::Unholdable { budget: true },
                format!(
                    "the sidecar's buffer budget ({} bytes) is spent; try again shortly",
                    self.budget.limit()
                ),
            )),
            Ok(Err(ReadError::Broken(e))) => Err(Failed::new(
                Cause::Upstream(Failure::Connect),
                format!("{} broke off the response: {e}", target.label()),
            )),
        }
    }
}

/// The most a compressed stream may decode to: a stream is not held, so this
/// only stops a decompression bomb.
const MAX_STREAM_DECODED: usize = 1 << 30;

/// A status `fallback.on` names: keep the error body to hand back if nothing
/// better comes.
async fn failed_status(
    head: ResponseParts,
    body: Incoming,
    failure: Failure,
    target: &Target,
    attempt_end: Instant,
) -> Failed {
    let retry_after = parse_retry_after(&head.headers, SystemTime::now());
    let limited = Limited::new(body, MAX_ERROR_BODY).collect();
    let bytes = match tokio::time::timeout_at(attempt_end, limited).await {
        Ok(Ok(collected)) => collected.to_bytes(),
        _ => Bytes::new(),
    };
    Failed {
        cause: Cause::Upstream(failure),
        message: format!("{} answered {}", target.label(), head.status),
        response: Some((head, bytes)),
        retry_after,
    }
}

/// Waits for a stream's first data, by the first-token deadline.
async fn first_data(
    body: &mut Incoming,
    first_byte_by: Instant,
    started: Instant,
    target: &Target,
) -> Result<Bytes, Failed> {
    loop {
        let frame = match tokio::time::timeout_at(first_byte_by, body.frame()).await {
            Err(_) => {
                return Err(Failed::new(
                    Cause::Upstream(Failure::Timeout),
                    format!(
                        "no first token within {}ms from {}",
                        ms_until(started, first_byte_by),
                        target.label()
                    ),
                ));
            }
            Ok(None) => {
                return Err(Failed::new(
                    Cause::Upstream(Failure::Connect),
                    format!("{} ended the stream before its first byte", target.label()),
                ));
            }
            Ok(Some(Err(e))) => {
                return Err(Failed::new(
                    Cause::Upstream(Failure::Connect),
                    format!(
                        "{} broke the stream before its first byte: {e}",
                        target.label()
                    ),
                ));
            }
            Ok(Some(Ok(frame))) => frame,
        };
        if let Some(first) = frame.into_data().ok().filter(|d| !d.is_empty()) {
            return Ok(first);
        }
    }
}

fn is_event_stream(head: &ResponseParts) -> bool {
    head.headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/event-stream"))
}

/// The status a proxy-made answer gets when the attempts gave up for this cause.
pub fn give_up_status(cause: Cause) -> StatusCode {
    match cause {
        Cause::Upstream(Failure::Timeout) => StatusCode::GATEWAY_TIMEOUT,
        Cause::Unholdable { budget: true } => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::BAD_GATEWAY,
    }
}

/// `now` plus `ms` milliseconds, clamped to [`MAX_TIMEOUT`].
fn after(now: Instant, ms: u64) -> Instant {
    let wait = Duration::from_millis(ms).min(MAX_TIMEOUT);
    now.checked_add(wait).unwrap_or(now)
}

fn ms_until(from: Instant, to: Instant) -> u128 {
    to.saturating_duration_since(from).as_millis()
}
