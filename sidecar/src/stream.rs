//! A streamed (SSE) response on its way to the client: forwarded chunk by
//! chunk through the usage filter, never buffered. Once the first byte has
//! gone out there is no retry, so every way a stream can end early — the
//! upstream breaking, stalling or stopping short, or the sidecar shutting
//! down — ends in an explicit SSE error event rather than a silent cut.

use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use aiflags_api::Operation;
use bytes::{Bytes, BytesMut};
use hyper::body::{Body, Frame, Incoming};
use serde_json::json;
use tokio::time::Sleep;
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

use crate::body::BoxError;
use crate::record::{End, Tracked};
use crate::request::decode::StreamDecoder;
use crate::sse::StreamFilter;
use crate::telemetry::Record;

/// What a stream needs besides its upstream body.
pub struct StreamSetup {
    pub operation: Operation,
    /// The proxy asked for the usage chunk: hide it from the client.
    pub strip_usage_chunk: bool,
    /// The upstream may go this long without sending anything.
    pub idle_timeout: Duration,
    /// Cancelled when the sidecar's drain time is up.
    pub drain: CancellationToken,
    /// The upstream compressed the stream despite being asked not to.
    pub decoder: Option<Box<StreamDecoder>>,
}

pub struct FilteredStream {
    /// Bytes read before the response was committed (still encoded, if the
    /// stream is).
    pending: Option<Bytes>,
    upstream: Incoming,
    decoder: Option<Box<StreamDecoder>>,
    filter: StreamFilter,
    operation: Operation,
    idle_timeout: Duration,
    idle: Pin<Box<Sleep>>,
    drain: Pin<Box<WaitForCancellationFutureOwned>>,
    /// `Some` once ended: whether it ended naturally.
    ended: Option<bool>,
    streaming_since: Instant,
}

impl FilteredStream {
    pub fn new(first: Bytes, upstream: Incoming, setup: StreamSetup) -> FilteredStream {
        FilteredStream {
            pending: Some(first),
            upstream,
            decoder: setup.decoder,
            filter: StreamFilter::new(setup.operation, setup.strip_usage_chunk),
            operation: setup.operation,
            idle_timeout: setup.idle_timeout,
            idle: Box::pin(tokio::time::sleep(setup.idle_timeout)),
            drain: Box::pin(setup.drain.cancelled_owned()),
            ended: None,
            streaming_since: Instant::now(),
        }
    }

    /// Decodes (if needed) and filters one upstream chunk.
    fn feed(&mut self, chunk: Bytes) -> Result<Bytes, String> {
        let plain = match &mut self.decoder {
            Some(decoder) => decoder.push(&chunk).map_err(|e| e.to_string())?,
            None => chunk,
        };
        Ok(self.filter.push(plain))
    }

    /// Flushes the decoder and filter, appends the error event if any.
    fn end(&mut self, error: Option<String>) -> Option<Result<Frame<Bytes>, BoxError>> {
        let mut out = BytesMut::new();
        let mut error = error;
        if let Some(decoder) = &mut self.decoder {
            match decoder.finish() {
                Ok(rest) => out.extend_from_slice(&self.filter.push(rest)),
                Err(e) if error.is_none() => error = Some(e.to_string()),
                Err(_) => {}
            }
        }
        let boundary = self.filter.at_event_boundary();
        out.extend_from_slice(&self.filter.finish());
        self.ended = Some(error.is_none());
        if let Some(message) = error {
            // Cut mid-event: end that event first, so the error is an event
            // of its own and the client's last one.
            if !boundary {
                out.extend_from_slice(b"\n\n");
            }
            tracing::warn!(operation = self.operation.as_str(), error = %message, "stream ended early after its first byte; sent an error event");
            out.extend_from_slice(&error_event(self.operation, &message));
        }
        (!out.is_empty()).then(|| Ok(Frame::data(out.freeze())))
    }
}

impl Body for FilteredStream {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        if this.ended.is_some() {
            return Poll::Ready(None);
        }
        if let Some(first) = this.pending.take() {
            match this.feed(first) {
                Ok(out) if !out.is_empty() => return Poll::Ready(Some(Ok(Frame::data(out)))),
                Ok(_) => {}
                Err(message) => return Poll::Ready(this.end(Some(message))),
            }
        }
        if this.drain.as_mut().poll(cx).is_ready() {
            let message = "the sidecar is shutting down and its drain time is up".to_string();
            return Poll::Ready(this.end(Some(message)));
        }
        loop {
            match Pin::new(&mut this.upstream).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => {
                    let deadline = tokio::time::Instant::now() + this.idle_timeout;
                    this.idle.as_mut().reset(deadline);
                    // Trailers are dropped: SSE carries nothing in them.
                    if let Ok(data) = frame.into_data() {
                        match this.feed(data) {
                            Ok(out) if !out.is_empty() => {
                                return Poll::Ready(Some(Ok(Frame::data(out))));
                            }
                            Ok(_) => {}
                            Err(message) => return Poll::Ready(this.end(Some(message))),
                        }
                    }
                }
                Poll::Ready(Some(Err(e))) => {
                    let message = format!("the upstream stream broke: {e}");
                    return Poll::Ready(this.end(Some(message)));
                }
                // Every protocol marks its natural end: `data: [DONE]` for chat
                // and completions, `response.completed` (or `incomplete`/`failed`)
                // for responses, `message_stop` for messages.
                Poll::Ready(None) if this.filter.saw_done() => {
                    return Poll::Ready(this.end(None));
                }
                Poll::Ready(None) => {
                    let message =
                        "the upstream ended the stream before it was complete".to_string();
                    return Poll::Ready(this.end(Some(message)));
                }
                Poll::Pending => {
                    ready!(this.idle.as_mut().poll(cx));
                    let message = format!(
                        "the upstream sent nothing for {}ms",
                        this.idle_timeout.as_millis()
                    );
                    return Poll::Ready(this.end(Some(message)));
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.ended.is_some()
    }
}

impl Tracked for FilteredStream {
    fn settle(&mut self, record: &mut Record, _end: End) {
        // The body's lifetime is the upstream generating tokens: not overhead.
        record.upstream_time += self.streaming_since.elapsed();
        record.usage = self.filter.usage();
        record.stream_error = self.ended == Some(false);
    }
}

/// A passed-through stream (not read by the proxy): when the sidecar's
/// drain time is up it ends with the proxy's error event, after a blank line
/// that closes whatever event was under way.
pub struct DrainCut<B> {
    body: B,
    drain: Pin<Box<WaitForCancellationFutureOwned>>,
    operation: Operation,
    cut: bool,
}

impl<B> DrainCut<B> {
    pub fn new(body: B, drain: CancellationToken, operation: Operation) -> DrainCut<B> {
        DrainCut {
            body,
            drain: Box::pin(drain.cancelled_owned()),
            operation,
            cut: false,
        }
    }
}

impl<B: Body<Data = Bytes, Error = BoxError> + Unpin> Body for DrainCut<B> {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if self.cut {
            return Poll::Ready(None);
        }
        if self.drain.as_mut().poll(cx).is_ready() {
            self.cut = true;
            let mut out = BytesMut::from(&b"\n\n"[..]);
            out.extend_from_slice(&error_event(
                self.operation,
                "the sidecar is shutting down and its drain time is up",
            ));
            return Poll::Ready(Some(Ok(Frame::data(out.freeze()))));
        }
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.cut || self.body.is_end_stream()
    }
}

impl<B: Tracked> Tracked for DrainCut<B> {
    fn settle(&mut self, record: &mut Record, end: End) {
        self.body.settle(record, end);
        record.stream_error |= self.cut;
    }
}

/// The SSE event that ends a stream the proxy could not finish, in the shape
/// each SDK raises as an API error.
pub fn error_event(op: Operation, message: &str) -> Bytes {
    let (event, data) = match op {
        Operation::Messages => (
            "event: error\n",
            json!({"type": "error", "error": {"type": "api_error", "message": message}}),
        ),
        _ => (
            "",
            json!({"error": {
                "message": message,
                "type": "aiflags_error",
                "code": "upstream_stream_interrupted",
            }}),
        ),
    };
    Bytes::from(format!("{event}data: {data}\n\n"))
}
