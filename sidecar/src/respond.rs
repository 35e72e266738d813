//! The client's response, from whatever the route ended with: a served
//! attempt (whole or streamed), the last failure when nothing succeeded, a
//! pass-through answer, or the proxy's own error. Each one's body carries the
//! request's record and reports it when it ends; flagged responses say what
//! happened in `x-aiflags-*` headers.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use aiflags_api::{Failure, Operation};
use bytes::Bytes;
use http::response::Parts as ResponseParts;
use http::{HeaderMap, HeaderName, HeaderValue, Response, StatusCode, header};
use hyper::body::{Body, Frame, SizeHint};
use tokio::time::Sleep;

use crate::attempts::{Cause, Exchange, GaveUp, Served, ServedBody};
use crate::body::{BoxError, ProxyBody, boxed};
use crate::error::ProxyError;
use crate::record::{End, Recorded, ReportOnce, Tracked, WholeBody};
use crate::stream::{DrainCut, FilteredStream, StreamSetup};
use crate::telemetry::Record;
use crate::upstream::ResponseBody;
use crate::upstream::headers::strip_hop_by_hop;

/// What streams need from the sidecar.
#[derive(Clone)]
pub(crate) struct StreamContext {
    pub drain: tokio_util::sync::CancellationToken,
}

/// A served attempt.
pub(crate) fn served(
    exchange: &Exchange<'_>,
    served: Served,
    mut report: ReportOnce,
    ctx: &StreamContext,
) -> Response<ProxyBody> {
    let Served {
        mut head,
        body,
        variant,
    } = served;
    let serving = exchange.flag.variant(variant);
    let attempts = report.record().attempts;
    {
        let record = report.record();
        describe(record, exchange, variant);
        record.status = head.status.as_u16();
        record.pricing = serving.and_then(|v| v.pricing.clone());
    }
    strip_hop_by_hop(&mut head.headers);
    // The body may have been decoded or filtered; hyper sets the length it has.
    head.headers.remove(header::CONTENT_LENGTH);
    let body = match body {
        ServedBody::Whole {
            bytes,
            held,
            usage,
            verdict,
        } => {
            let record = report.record();
            record.usage = usage;
            record.verdict = verdict;
            // The bytes stay held against the budget until they are sent.
            boxed(Recorded::new(WholeBody::held(bytes, held), report))
        }
        ServedBody::Stream {
            opening,
            held,
            body,
            reader,
            ended: _,
        } => {
            let answering = match serving {
                Some(v) => (v.name.clone(), v.model.clone()),
                None => (Arc::from(""), Arc::from("")),
            };
            let setup = StreamSetup {
                operation: exchange.operation,
                idle_timeout: Duration::from_millis(
                    exchange.flag.compiled.fallback.per_attempt_timeout_ms,
                ),
                drain: ctx.drain.clone(),
                answering,
            };
            let stream = FilteredStream::new(opening, held, body, reader, setup);
            boxed(Recorded::new(stream, report))
        }
    };
    let mut response = Response::from_parts(head, body);
    set_aiflags_headers(response.headers_mut(), exchange, variant, attempts);
    response
}

/// No attempt succeeded: the last upstream error as it was, else our own.
pub(crate) fn gave_up(
    exchange: &Exchange<'_>,
    gave_up: GaveUp,
    mut report: ReportOnce,
) -> Response<ProxyBody> {
    let attempts = report.record().attempts;
    let Some((failed, variant)) = gave_up.last else {
        let error = ProxyError::Upstream {
            summary: format!("flag {} has no variant it could try", exchange.flag.key),
            last: "check the flag's variants and fallback chain".into(),
            status: StatusCode::BAD_GATEWAY,
        };
        return own_error(error, report, Some((exchange, exchange.chosen)));
    };
    describe(report.record(), exchange, variant);
    let verdict = failed.verdict();
    if let Some((mut head, bytes)) = failed.response.map(|r| *r) {
        let record = report.record();
        record.status = head.status.as_u16();
        // A bad answer, handed back as it came: nothing better was left.
        record.verdict = verdict;
        strip_hop_by_hop(&mut head.headers);
        head.headers.remove(header::CONTENT_LENGTH);
        let body = match failed.held {
            Some(held) => WholeBody::held(bytes, held),
            None => WholeBody::new(bytes),
        };
        let mut response = Response::from_parts(head, boxed(Recorded::new(body, report)));
        set_aiflags_headers(response.headers_mut(), exchange, variant, attempts);
        return response;
    }
    let summary = match attempts {
        0 => "no attempt could be made".to_string(),
        1 => "the only attempt failed".to_string(),
        n => format!("all {n} attempts failed"),
    };
    let error = ProxyError::Upstream {
        summary,
        last: failed.message,
        status: give_up_status(failed.cause),
    };
    own_error(error, report, Some((exchange, variant)))
}

/// The status a proxy-made answer gets when the attempts gave up for this cause.
fn give_up_status(cause: Cause) -> StatusCode {
    match cause {
        Cause::Upstream(Failure::Timeout) => StatusCode::GATEWAY_TIMEOUT,
        Cause::Unholdable { budget: true } => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::BAD_GATEWAY,
    }
}

/// The proxy's own answer; about a flag when `about` says which.
pub(crate) fn own_error(
    error: ProxyError,
    mut report: ReportOnce,
    about: Option<(&Exchange<'_>, usize)>,
) -> Response<ProxyBody> {
    tracing::debug!(error = %error, "request answered by the proxy");
    let status = error.status();
    let attempts = report.record().attempts;
    {
        let record = report.record();
        record.status = status.as_u16();
        if let Some((exchange, variant)) = about {
            describe(record, exchange, variant);
        }
    }
    let mut response = Response::new(boxed(Recorded::new(WholeBody::new(error.body()), report)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if let Some((exchange, variant)) = about {
        set_aiflags_headers(response.headers_mut(), exchange, variant, attempts);
    }
    response
}

/// A pass-through answer: the upstream's head and body as they are, the body
/// bounded by an idle timeout.
pub(crate) fn passed_through(
    response: Response<ResponseBody>,
    mut report: ReportOnce,
    idle: Duration,
    streams: &StreamContext,
    operation: Option<Operation>,
) -> Response<ProxyBody> {
    let (mut head, body): (ResponseParts, ResponseBody) = response.into_parts();
    strip_hop_by_hop(&mut head.headers);
    report.record().status = head.status.as_u16();
    let is_sse = head
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/event-stream"));
    let body = IdleBody::new(body, idle);
    let body = if is_sse {
        // Unread, but still a stream: cut at the drain time with an error
        // event, like a flagged one.
        let cut = DrainCut::new(
            body,
            streams.drain.clone(),
            operation.unwrap_or(Operation::Chat),
        );
        boxed(Recorded::new(cut, report))
    } else {
        boxed(Recorded::new(body, report))
    };
    Response::from_parts(head, body)
}

/// Labels a request: `variant` is the one the split chose (so a canary's
/// fallbacks count against the canary), `model` the one that served.
fn describe(record: &mut Record, exchange: &Exchange<'_>, serving: usize) {
    let flag = exchange.flag;
    record.flag = flag.key.clone();
    if let Some(chosen) = flag.variant(exchange.chosen) {
        record.variant = chosen.name.clone();
    }
    if let Some(serving) = flag.variant(serving) {
        record.model = serving.model.clone();
    }
}

/// `x-aiflags-flag`, `-variant` (the assignment), `-model` (what served), `-attempts`.
fn set_aiflags_headers(
    headers: &mut HeaderMap,
    exchange: &Exchange<'_>,
    serving: usize,
    attempts: u32,
) {
    // Constant names: inserting by `&str` would parse the name every time.
    const ATTEMPTS: HeaderName = HeaderName::from_static("x-aiflags-attempts");
    const FLAG: HeaderName = HeaderName::from_static("x-aiflags-flag");
    const VARIANT: HeaderName = HeaderName::from_static("x-aiflags-variant");
    const MODEL: HeaderName = HeaderName::from_static("x-aiflags-model");
    // A small count without building a value (`HeaderValue::from` allocates).
    const DIGITS: [&str; 10] = ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"];
    let count = match DIGITS.get(attempts as usize) {
        Some(digit) => HeaderValue::from_static(digit),
        None => HeaderValue::from(attempts),
    };
    headers.insert(ATTEMPTS, count);
    let flag = exchange.flag;
    // Values built when the config loaded: cloning one copies no bytes.
    let mut set = |name: HeaderName, value: &Option<HeaderValue>| {
        if let Some(value) = value {
            headers.insert(name, value.clone());
        }
    };
    set(FLAG, &flag.key_header);
    if let Some(chosen) = flag.variant(exchange.chosen) {
        set(VARIANT, &chosen.name_header);
    }
    if let Some(serving) = flag.variant(serving) {
        set(MODEL, &serving.model_header);
    }
}

/// A body that fails when its source goes quiet for too long: pass-through
/// bodies, in either direction, cannot pin a connection forever.
///
/// The quiet spell is counted from the first poll that finds the source
/// with nothing to give, and ends with its next frame. A body whose frames
/// are all there when asked for (a whole answer already read off the
/// socket) never reads the clock or builds a timer.
pub(crate) struct IdleBody<B> {
    body: B,
    idle: Duration,
    /// Built on the first quiet spell, reset for each later one.
    timer: Option<Pin<Box<Sleep>>>,
    /// The timer counts the current quiet spell.
    armed: bool,
    timed_out: bool,
}

impl<B> IdleBody<B> {
    pub(crate) fn new(body: B, idle: Duration) -> IdleBody<B> {
        IdleBody {
            body,
            idle,
            timer: None,
            armed: false,
            timed_out: false,
        }
    }

    /// Whether the quiet spell that `cx` waits in has lasted `idle`; starts
    /// counting one if none is being counted.
    fn quiet_too_long(&mut self, cx: &mut Context<'_>) -> bool {
        if !self.armed {
            let deadline = tokio::time::Instant::now() + self.idle;
            match &mut self.timer {
                Some(timer) => timer.as_mut().reset(deadline),
                None => self.timer = Some(Box::pin(tokio::time::sleep_until(deadline))),
            }
            self.armed = true;
        }
        self.timer
            .as_mut()
            .is_some_and(|timer| timer.as_mut().poll(cx).is_ready())
    }
}

impl<B> Body for IdleBody<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        match Pin::new(&mut this.body).poll_frame(cx) {
            Poll::Ready(frame) => {
                this.armed = false;
                Poll::Ready(frame.map(|f| f.map_err(Into::into)))
            }
            Poll::Pending => {
                if this.quiet_too_long(cx) {
                    this.timed_out = true;
                    let message = format!("the body sent nothing for {}s", this.idle.as_secs());
                    return Poll::Ready(Some(Err(message.into())));
                }
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

impl Tracked for IdleBody<ResponseBody> {
    fn settle(&mut self, record: &mut Record, end: End) {
        record.stream_error = self.timed_out || end == End::Broken;
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use bytes::Bytes;
    use http_body_util::{BodyExt, Full};
    use hyper::body::{Body, Frame};
    use tokio::sync::mpsc;
    use tokio::time::Instant;

    use super::IdleBody;

    /// A body whose frames arrive when the test sends them.
    struct Sent(mpsc::Receiver<Bytes>);

    impl Body for Sent {
        type Data = Bytes;
        type Error = std::convert::Infallible;

        fn poll_frame(
            mut self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
            self.0.poll_recv(cx).map(|b| b.map(|b| Ok(Frame::data(b))))
        }
    }

    /// Five quiet spells of 0.5 s, 2.5 s in all, against an idle time of 2 s:
    /// each frame restarts the count. Then silence fails the body, no sooner
    /// than the idle time after the last frame.
    #[tokio::test]
    async fn a_body_quiet_past_its_idle_time_fails_and_each_frame_restarts_the_count() {
        let idle = Duration::from_secs(2);
        let spell = Duration::from_millis(500);
        let (tx, rx) = mpsc::channel(1);
        let mut body = IdleBody::new(Sent(rx), idle);
        let sender = tokio::spawn(async move {
            for _ in 0..5 {
                tokio::time::sleep(spell).await;
                tx.send(Bytes::from("chunk")).await.unwrap();
            }
            // Open but silent: the body is quiet, not ended, until well past
            // the idle time (a body that never timed out would end then).
            tokio::time::sleep(idle * 5).await;
            drop(tx);
        });
        let started = Instant::now();
        for _ in 0..5 {
            let frame = body.frame().await.unwrap().unwrap();
            assert_eq!(frame.into_data().unwrap(), "chunk");
        }
        assert!(
            started.elapsed() > idle,
            "the spells outlasted the idle time together"
        );
        let last = Instant::now();
        let error = body
            .frame()
            .await
            .expect("the body timed out, not ended")
            .unwrap_err();
        assert_eq!(error.to_string(), "the body sent nothing for 2s");
        assert!(last.elapsed() >= idle);
        assert!(body.timed_out);
        sender.abort();
    }

    #[tokio::test]
    async fn a_body_that_never_waits_builds_no_timer() {
        let mut body = IdleBody::new(Full::new(Bytes::from("whole")), Duration::from_secs(1));
        let frame = body.frame().await.unwrap().unwrap();
        assert_eq!(frame.into_data().unwrap(), "whole");
        assert!(body.frame().await.is_none());
        assert!(body.timer.is_none() && !body.timed_out);
    }
}
