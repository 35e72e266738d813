//! A streamed (SSE) response on its way to the client: read through a
//! [`StreamReader`] (decoded if the upstream compressed it, then the usage
//! filter and the answer's judge) and forwarded chunk by chunk, never
//! buffered. The attempt loop reads a stream's opening before committing it
//! (see `opening`); [`FilteredStream`] sends that opening, then the rest.
//! Once the first byte has gone out there is no retry, so every way a stream
//! can end early — the upstream breaking, stalling or stopping short, or the
//! sidecar shutting down — ends in an explicit SSE error event rather than a
//! silent cut.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use aiflags_api::Operation;
use bytes::{Bytes, BytesMut};
use hyper::body::{Body, Frame};
use serde_json::json;
use tokio::time::Sleep;
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

use crate::body::BoxError;
use crate::budget::Reservation;
use crate::record::{End, Tracked};
use crate::request::decode::{Coding, StreamDecoder};
use crate::sse::StreamFilter;
use crate::telemetry::{Judged, Record};
use crate::upstream::ResponseBody;

/// The most a compressed stream may decode to: a stream is not held, so this
/// only stops a decompression bomb.
const MAX_STREAM_DECODED: usize = 1 << 30;

/// An upstream stream's bytes, decoded and filtered for the client, with
/// what they said (usage, the end, the answer) read on the way.
pub(crate) struct StreamReader {
    /// The upstream compressed the stream despite being asked not to.
    coding: Option<Coding>,
    decoder: Option<Box<StreamDecoder>>,
    filter: StreamFilter,
}

impl StreamReader {
    /// `strip_usage_chunk`: the proxy asked for the usage chunk, so hide it.
    pub(crate) fn new(
        op: Operation,
        strip_usage_chunk: bool,
        coding: Option<Coding>,
    ) -> StreamReader {
        StreamReader {
            coding,
            decoder: None,
            filter: StreamFilter::new(op, strip_usage_chunk),
        }
    }

    /// Decodes (if needed) and filters one upstream chunk: the bytes for the client.
    pub(crate) fn feed(&mut self, chunk: Bytes) -> Result<Bytes, String> {
        let plain = match (&mut self.decoder, self.coding) {
            (Some(decoder), _) => decoder.push(&chunk).map_err(|e| e.to_string())?,
            (None, Some(coding)) => {
                // The first bytes tell zlib-wrapped deflate from raw.
                let mut decoder = StreamDecoder::new(coding, &chunk, MAX_STREAM_DECODED);
                let plain = decoder.push(&chunk).map_err(|e| e.to_string());
                self.decoder = Some(Box::new(decoder));
                plain?
            }
            (None, None) => chunk,
        };
        Ok(self.filter.push(plain))
    }

    /// The end of the upstream bytes: what the decoder and filter still held,
    /// and the decoder's complaint if the encoding was cut short.
    pub(crate) fn finish(&mut self) -> (Bytes, Option<String>) {
        let (rest, error, _) = self.finish_at_boundary();
        (rest, error)
    }

    /// [`Self::finish`], also saying whether the bytes ended between events.
    pub(crate) fn finish_at_boundary(&mut self) -> (Bytes, Option<String>, bool) {
        let mut out = BytesMut::new();
        let mut error = None;
        if let Some(decoder) = &mut self.decoder {
            match decoder.finish() {
                Ok(rest) => out.extend_from_slice(&self.filter.push(rest)),
                Err(e) => error = Some(e.to_string()),
            }
        }
        let boundary = self.filter.at_event_boundary();
        out.extend_from_slice(&self.filter.finish());
        (out.freeze(), error, boundary)
    }

    /// Whether the bytes for the client are decoded (drop `content-encoding`).
    pub(crate) fn decodes(&self) -> bool {
        self.coding.is_some()
    }

    pub(crate) fn filter(&self) -> &StreamFilter {
        &self.filter
    }

    /// The upstream ended the stream itself (`[DONE]`, `message_stop`, …),
    /// not with an error event.
    pub(crate) fn ended_naturally(&self) -> bool {
        self.filter.saw_done() && !self.filter.saw_error()
    }
}

/// What a stream needs besides its upstream body.
pub(crate) struct StreamSetup {
    pub operation: Operation,
    /// The upstream may go this long without sending anything.
    pub idle_timeout: Duration,
    /// Cancelled when the sidecar's drain time is up.
    pub drain: CancellationToken,
    /// The variant and model whose answer this is, for its verdict.
    pub answering: (Arc<str>, Arc<str>),
}

pub(crate) struct FilteredStream {
    /// The opening read before the response was committed, for the client.
    pending: Option<Bytes>,
    /// Holds the opening against the memory budget until it is sent.
    pending_held: Option<Reservation>,
    upstream: ResponseBody,
    reader: Box<StreamReader>,
    operation: Operation,
    idle_timeout: Duration,
    idle: Pin<Box<Sleep>>,
    drain: Pin<Box<WaitForCancellationFutureOwned>>,
    answering: (Arc<str>, Arc<str>),
    /// `Some` once ended: whether it ended naturally.
    ended: Option<bool>,
    streaming_since: Instant,
    first_byte_at: Option<Instant>,
    first_content_at: Option<Instant>,
}

impl FilteredStream {
    pub(crate) fn new(
        opening: Bytes,
        held: Option<Reservation>,
        upstream: ResponseBody,
        reader: Box<StreamReader>,
        setup: StreamSetup,
    ) -> FilteredStream {
        FilteredStream {
            pending: Some(opening),
            pending_held: held,
            upstream,
            reader,
            operation: setup.operation,
            idle_timeout: setup.idle_timeout,
            idle: Box::pin(tokio::time::sleep(setup.idle_timeout)),
            drain: Box::pin(setup.drain.cancelled_owned()),
            answering: setup.answering,
            ended: None,
            streaming_since: Instant::now(),
            first_byte_at: None,
            first_content_at: None,
        }
    }

    /// Bytes going to the client now: notes when the first byte, and the
    /// first that carried something to show, went.
    fn send(&mut self, out: Bytes) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let now = Instant::now();
        self.first_byte_at.get_or_insert(now);
        if self.reader.filter().judge().opened() {
            self.first_content_at.get_or_insert(now);
        }
        Poll::Ready(Some(Ok(Frame::data(out))))
    }

    /// Flushes the reader, appends the error event if any.
    fn end(&mut self, error: Option<String>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let (rest, decode_error, boundary) = self.reader.finish_at_boundary();
        let error = error.or(decode_error);
        let mut out = BytesMut::from(&rest[..]);
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
        if out.is_empty() {
            return Poll::Ready(None);
        }
        self.send(out.freeze())
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
        if let Some(opening) = this.pending.take() {
            this.pending_held = None;
            if !opening.is_empty() {
                return this.send(opening);
            }
        }
        if this.drain.as_mut().poll(cx).is_ready() {
            let message = "the sidecar is shutting down and its drain time is up".to_string();
            return this.end(Some(message));
        }
        loop {
            match Pin::new(&mut this.upstream).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => {
                    let deadline = tokio::time::Instant::now() + this.idle_timeout;
                    this.idle.as_mut().reset(deadline);
                    // Trailers are dropped: SSE carries nothing in them.
                    if let Ok(data) = frame.into_data() {
                        match this.reader.feed(data) {
                            Ok(out) if !out.is_empty() => return this.send(out),
                            Ok(_) => {}
                            Err(message) => return this.end(Some(message)),
                        }
                    }
                }
                Poll::Ready(Some(Err(e))) => {
                    let message = format!("the upstream stream broke: {e}");
                    return this.end(Some(message));
                }
                // Every protocol marks its natural end: `data: [DONE]` for chat
                // and completions, `response.completed` (or `incomplete`/`failed`)
                // for responses, `message_stop` for messages.
                Poll::Ready(None) if this.reader.filter().saw_done() => {
                    return this.end(None);
                }
                Poll::Ready(None) => {
                    let message =
                        "the upstream ended the stream before it was complete".to_string();
                    return this.end(Some(message));
                }
                Poll::Pending => {
                    ready!(this.idle.as_mut().poll(cx));
                    let message = format!(
                        "the upstream sent nothing for {}ms",
                        this.idle_timeout.as_millis()
                    );
                    return this.end(Some(message));
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
        record.usage = self.reader.filter().usage();
        record.stream_error = self.ended == Some(false);
        // A token is what the client would show; a stream that never carried
        // one is timed by its first byte.
        let first = self.first_content_at.or(self.first_byte_at);
        record.time_to_first_token = first.map(|t| t.saturating_duration_since(record.started));
        let ended = self.ended == Some(true) && self.reader.ended_naturally();
        let verdict = self.reader.filter().judge().verdict(ended);
        record.verdict = verdict;
        if let Some(verdict) = verdict {
            let (variant, model) = self.answering.clone();
            record.answers.push(Judged {
                variant,
                model,
                verdict,
            });
        }
    }
}

/// A passed-through stream (not read by the proxy): when the sidecar's
/// drain time is up it ends with the proxy's error event, after a blank line
/// that closes whatever event was under way.
pub(crate) struct DrainCut<B> {
    body: B,
    drain: Pin<Box<WaitForCancellationFutureOwned>>,
    operation: Operation,
    cut: bool,
}

impl<B> DrainCut<B> {
    pub(crate) fn new(body: B, drain: CancellationToken, operation: Operation) -> DrainCut<B> {
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
