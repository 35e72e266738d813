//! Turning the attempt loop's result into the client's response: the
//! `x-aiflags-*` headers, the stream body that reports when it ends, or the
//! last failure when nothing succeeded.

use std::time::Duration;

use aiflags_api::{CompiledVariant, Failure};
use http::response::Parts as ResponseParts;
use http::{HeaderValue, Response, header};

use crate::attempts::{Failed, Served};
use crate::body::{ProxyBody, full};
use crate::error::{AttemptsFailed, ProxyError};
use crate::proxy::{Exchange, Proxy, Routed};
use crate::stream::{FilteredStream, StreamEnd};
use crate::telemetry::RequestOutcome;
use crate::upstream::strip_hop_by_hop;
use crate::usage::usage_from_bytes;

/// Builds the client's response and arranges its telemetry.
pub(crate) fn respond(
    proxy: &Proxy,
    exchange: &Exchange<'_>,
    served: Served,
    variant: &CompiledVariant,
    attempts: u32,
    outcome: &RequestOutcome,
) -> Routed {
    let operation = exchange.operation;
    match served {
        Served::Whole(head, bytes) => {
            let mut outcome = outcome.clone();
            outcome.usage = usage_from_bytes(operation, &bytes);
            outcome.status = head.status.as_u16();
            outcome.finish();
            proxy.telemetry.request_finished(&outcome);
            let response = with_headers(head, full(bytes), exchange, variant, attempts);
            Routed {
                response,
                reports_itself: true,
            }
        }
        Served::Stream {
            head,
            first,
            body,
            strip_usage,
        } => {
            let mut outcome = outcome.clone();
            outcome.status = head.status.as_u16();
            outcome.time_to_first_token = outcome.started.map(|s| s.elapsed());
            let telemetry = proxy.telemetry.clone();
            let streaming_since = std::time::Instant::now();
            let on_end = Box::new(move |end: StreamEnd, usage| {
                // The body's lifetime is the upstream generating tokens.
                outcome.upstream_duration += streaming_since.elapsed();
                outcome.usage = usage;
                outcome.stream_error = end == StreamEnd::Broken;
                if end == StreamEnd::ClientGone {
                    outcome.status = 499;
                }
                outcome.finish();
                telemetry.request_finished(&outcome);
            });
            let idle = Duration::from_millis(exchange.flag.fallback.per_attempt_timeout_ms);
            let stream = FilteredStream::new(operation, first, body, strip_usage, idle, on_end);
            let body = http_body_util::BodyExt::boxed_unsync(stream);
            let response = with_headers(head, body, exchange, variant, attempts);
            Routed {
                response,
                reports_itself: true,
            }
        }
    }
}

/// No attempt succeeded: the last upstream error as it was, else our own.
pub(crate) fn give_up(
    exchange: &Exchange<'_>,
    last: Option<(Failed, &CompiledVariant)>,
    attempts: u32,
    outcome: &mut RequestOutcome,
) -> Result<Routed, ProxyError> {
    let Some((failed, variant)) = last else {
        return Err(AttemptsFailed {
            summary: format!("flag {} has no variant to try", exchange.flag.key),
            last: "check the flag's variants".into(),
            timed_out: false,
        }
        .into());
    };
    outcome.variant = exchange.chosen_name().to_string();
    outcome.model = variant.model.clone();
    outcome.attempts = attempts;
    if let Some((head, bytes)) = failed.response {
        let response = with_headers(head, full(bytes), exchange, variant, attempts);
        return Ok(Routed {
            response,
            reports_itself: false,
        });
    }
    let summary = match attempts {
        0 => "no attempt could be made".to_string(),
        1 => "the only attempt failed".to_string(),
        n => format!("all {n} attempts failed"),
    };
    Err(AttemptsFailed {
        summary,
        last: failed.message,
        timed_out: failed.failure == Some(Failure::Timeout),
    }
    .into())
}

/// The `x-aiflags-*` headers for a response the proxy made itself.
pub(crate) fn set_aiflags_headers(response: &mut Response<ProxyBody>, outcome: &RequestOutcome) {
    if outcome.flag.is_empty() {
        return;
    }
    let headers = response.headers_mut();
    let attempts = outcome.attempts.to_string();
    for (name, value) in [
        ("x-aiflags-flag", outcome.flag.as_str()),
        ("x-aiflags-variant", outcome.variant.as_str()),
        ("x-aiflags-model", outcome.model.as_str()),
        ("x-aiflags-attempts", attempts.as_str()),
    ] {
        if let Ok(value) = HeaderValue::from_str(value) {
            headers.insert(name, value);
        }
    }
}

fn with_headers(
    mut head: ResponseParts,
    body: ProxyBody,
    exchange: &Exchange<'_>,
    variant: &CompiledVariant,
    attempts: u32,
) -> Response<ProxyBody> {
    strip_hop_by_hop(&mut head.headers);
    // The body may have been re-framed or filtered; hyper sets the length it has.
    head.headers.remove(header::CONTENT_LENGTH);
    let headers = &mut head.headers;
    let mut set = |name: &'static str, value: &str| {
        if let Ok(value) = HeaderValue::from_str(value) {
            headers.insert(name, value);
        }
    };
    set("x-aiflags-flag", &exchange.flag.key);
    // The variant is the user's assignment (what an A/B analysis groups by);
    // the model is what served it, which differs after a fallback.
    set("x-aiflags-variant", exchange.chosen_name());
    set("x-aiflags-model", &variant.model);
    set("x-aiflags-attempts", &attempts.to_string());
    Response::from_parts(head, body)
}
