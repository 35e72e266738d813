//! A failed attempt: why, what to say, and what the upstream sent (an error
//! response or a bad answer) to hand back if nothing better comes.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use aiflags_api::Failure;
use bytes::Bytes;
use http::response::Parts as ResponseParts;
use http_body_util::{BodyExt, Limited};
use tokio::time::Instant;

use super::ms_until;
use crate::budget::Reservation;
use crate::fallback::parse_retry_after;
use crate::opening::OpenError;
use crate::upstream::ResponseBody;
use crate::upstream::target::Target;
use crate::verdict::Verdict;

/// Error bodies kept to hand back when no attempt succeeds (outside the
/// budget: small, and one per request at most).
const MAX_ERROR_BODY: usize = 64 << 10;

/// One failed attempt.
pub(crate) struct Failed {
    pub cause: Cause,
    pub message: String,
    /// The upstream's own error response (or bad answer), handed back if
    /// nothing succeeds.
    pub response: Option<Box<(ResponseParts, Bytes)>>,
    /// Holds a bad answer's bytes against the budget while they are kept.
    pub held: Option<Reservation>,
    pub retry_after: Option<Duration>,
}

/// Why an attempt failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Cause {
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
    pub(super) fn new(cause: Cause, message: String) -> Failed {
        Failed {
            cause,
            message,
            response: None,
            held: None,
            retry_after: None,
        }
    }

    /// An answer judged bad, which `fallback.on` names: kept to hand back.
    pub(super) fn bad_answer(
        verdict: Verdict,
        failure: Failure,
        target: &Target,
        response: (ResponseParts, Bytes),
        held: Option<Reservation>,
    ) -> Failed {
        let what = match verdict {
            Verdict::ContentFilter => "an answer its content filter stopped",
            _ => "an empty answer (no text, tool call or refusal)",
        };
        Failed {
            cause: Cause::Upstream(failure),
            message: format!("{} sent {what}", target.label()),
            response: Some(Box::new(response)),
            held,
            retry_after: None,
        }
    }

    /// The verdict of the answer this failure kept, if it was a bad one.
    pub(crate) fn verdict(&self) -> Option<Verdict> {
        match self.cause {
            Cause::Upstream(Failure::Empty) => Some(Verdict::Empty),
            Cause::Upstream(Failure::ContentFilter) => Some(Verdict::ContentFilter),
            _ => None,
        }
    }

    /// The `outcome` label of the attempt metric and the fallback `reason`.
    pub(crate) fn outcome_label(&self) -> Arc<str> {
        match self.cause {
            Cause::Upstream(Failure::Timeout) => "timeout".into(),
            Cause::Upstream(Failure::Connect) => "connect".into(),
            Cause::Upstream(Failure::Status(s)) => format!("status_{s}").into(),
            Cause::Upstream(Failure::Empty) => "empty".into(),
            Cause::Upstream(Failure::ContentFilter) => "content_filter".into(),
            Cause::Misconfigured | Cause::Unholdable { .. } => "error".into(),
        }
    }
}

/// A status `fallback.on` names: keep the error body to hand back if nothing
/// better comes.
pub(super) async fn failed_status(
    head: ResponseParts,
    body: ResponseBody,
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
        response: Some(Box::new((head, bytes))),
        held: None,
        retry_after,
    }
}

/// A stream whose opening could not be read: nothing reached the client.
pub(super) fn open_failed(
    error: OpenError,
    holding: bool,
    target: &Target,
    started: Instant,
    by: Instant,
) -> Failed {
    let label = target.label();
    let first = if holding {
        "first content"
    } else {
        "first byte"
    };
    let (failure, message) = match error {
        OpenError::Timeout { .. } => (
            Failure::Timeout,
            format!(
                "no first token within {}ms from {label}",
                ms_until(started, by)
            ),
        ),
        OpenError::Cut { detail: None, .. } => (
            Failure::Connect,
            format!("{label} ended the stream before its {first}"),
        ),
        OpenError::Cut {
            detail: Some(e), ..
        } => (
            Failure::Connect,
            format!("{label} broke the stream before its {first}: {e}"),
        ),
        OpenError::Undecodable(e) => (
            Failure::Connect,
            format!("{label} sent a stream the proxy could not decode: {e}"),
        ),
    };
    Failed::new(Cause::Upstream(failure), message)
}
