//! One attempt: send the body spliced for its variant, then read a response
//! worth committing to — a whole answer, read and judged, or a stream's
//! opening — within the attempt's time.

use aiflags_api::Failure;
use bytes::Bytes;
use http::header;
use http::response::Parts as ResponseParts;
use tokio::time::Instant;

use super::failed::{Cause, Failed, failed_status, open_failed};
use super::{Attempts, Exchange, Plan, ServedBody, after, ms_until};
use crate::ablation::{self, Part};
use crate::body::boxed;
use crate::budget::Reservation;
use crate::fallback::classify_status;
use crate::flags::resolved::ResolvedVariant;
use crate::opening::{Opened, open_stream};
use crate::request::decode::{Coding, codings, decode_whole};
use crate::request::splice::{Edits, splice};
use crate::request::{ReadError, read_bounded};
use crate::stream::StreamReader;
use crate::upstream::target::Target;
use crate::upstream::{ResponseBody, Send, UpstreamError};
use crate::usage::{Usage, usage_from_bytes};
use crate::verdict::{Verdict, read_answer};

impl Attempts<'_> {
    /// One attempt: send, then wait for a response worth committing to.
    pub(super) async fn attempt(
        &self,
        exchange: &Exchange<'_>,
        target: &Target,
        variant: &ResolvedVariant,
        plan: &Plan<'_>,
    ) -> Result<(ResponseParts, ServedBody), Failed> {
        let policy = &exchange.flag.compiled.fallback;
        let now = Instant::now();
        let attempt_end = after(now, policy.per_attempt_timeout_ms).min(plan.deadline);
        // Streams must show their first byte (or, held back, their first
        // content) by the first-token timeout.
        let first_byte_by = match (plan.streaming, policy.first_token_timeout_ms) {
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
            params: exchange.flag.params(variant),
            include_usage: plan.strip_usage_chunk,
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
        let (head, body) = response.into_parts();
        if let Some(failure) =
            classify_status(head.status.as_u16()).filter(|f| policy.applies_to(*f))
        {
            return Err(failed_status(head, body, failure, target, attempt_end).await);
        }
        let response_codings = codings(&head.headers);
        let clock = Clock {
            started: now,
            first_byte_by,
        };
        if plan.streaming && is_event_stream(&head) && head.status.is_success() {
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
            let reader = StreamReader::new(exchange.operation, plan.strip_usage_chunk, coding);
            return open(head, body, reader, exchange, plan, target, &clock).await;
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
            Err(_) => return Ok((head, whole(bytes, reservation, None, None))),
        };
        judge_whole(head, bytes, reservation, exchange, target)
    }

    /// Reads a whole response within the size limit, the budget and the attempt's time.
    async fn read_whole(
        &self,
        body: ResponseBody,
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

/// When an attempt started, and when it must show its first byte (or content).
struct Clock {
    started: Instant,
    first_byte_by: Instant,
}

/// Reads a stream's opening: commits it, or fails the attempt when the
/// opening could not be read or the stream ended with an answer
/// `fallback.on` names.
async fn open(
    mut head: ResponseParts,
    mut body: ResponseBody,
    reader: StreamReader,
    exchange: &Exchange<'_>,
    plan: &Plan<'_>,
    target: &Target,
    clock: &Clock,
) -> Result<(ResponseParts, ServedBody), Failed> {
    let mut reader = Box::new(reader);
    let opened = open_stream(&mut body, &mut reader, plan.hold, clock.first_byte_by).await;
    if reader.decodes() {
        head.headers.remove(header::CONTENT_ENCODING);
    }
    let (opening, held, ended) = match opened {
        Ok(Opened::Commit { bytes, held }) => (bytes, held, None),
        Ok(Opened::Ended {
            verdict,
            bytes,
            held,
        }) => match fails(exchange, verdict) {
            Some(failure) => {
                let kept = (head, bytes);
                return Err(Failed::bad_answer(verdict, failure, target, kept, held));
            }
            None => (bytes, held, Some(verdict)),
        },
        Err(e) => {
            let holding = plan.hold.is_some();
            let failed = open_failed(e, holding, target, clock.started, clock.first_byte_by);
            return Err(failed);
        }
    };
    let body = ServedBody::Stream {
        opening,
        held,
        body,
        reader,
        ended,
    };
    Ok((head, body))
}

/// Judges a whole response read: an answer `fallback.on` names fails the
/// attempt (kept to hand back); any other is served with its verdict.
fn judge_whole(
    head: ResponseParts,
    bytes: Bytes,
    held: Reservation,
    exchange: &Exchange<'_>,
    target: &Target,
) -> Result<(ResponseParts, ServedBody), Failed> {
    if ablation::off(Part::Judge) {
        return Ok((head, whole(bytes, held, None, None)));
    }
    if !head.status.is_success() {
        let usage = usage_from_bytes(exchange.operation, &bytes);
        return Ok((head, whole(bytes, held, usage, None)));
    }
    let answer = read_answer(exchange.operation, &bytes);
    if let Some(verdict) = answer.verdict
        && let Some(failure) = fails(exchange, verdict)
    {
        let kept = (head, bytes);
        return Err(Failed::bad_answer(
            verdict,
            failure,
            target,
            kept,
            Some(held),
        ));
    }
    Ok((head, whole(bytes, held, answer.usage, answer.verdict)))
}

/// The failure a bad verdict is, when the flag's `fallback.on` names it.
fn fails(exchange: &Exchange<'_>, verdict: Verdict) -> Option<Failure> {
    let policy = &exchange.flag.compiled.fallback;
    verdict.failure().filter(|f| policy.applies_to(*f))
}

fn whole(
    bytes: Bytes,
    held: Reservation,
    usage: Option<Usage>,
    verdict: Option<Verdict>,
) -> ServedBody {
    ServedBody::Whole {
        bytes,
        held,
        usage,
        verdict,
    }
}

fn is_event_stream(head: &ResponseParts) -> bool {
    head.headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/event-stream"))
}
