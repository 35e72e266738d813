//! A streamed (SSE) response on its way to the client: forwarded chunk by
//! chunk through the usage filter, never buffered. Once the first byte has
//! gone out there is no retry, so every way a stream can break ends in an
//! explicit SSE error event rather than a silent truncation.

use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use aiflags_api::Operation;
use bytes::{Bytes, BytesMut};
use hyper::body::{Body, Frame, Incoming};
use tokio::time::{Instant, Sleep};

use crate::body::BoxError;
use crate::sse::{StreamFilter, Usage, error_event};

/// How a stream ended, for telemetry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StreamEnd {
    Complete,
    /// The upstream broke, stalled or stopped early; the client got an error event.
    Broken,
    /// The client went away; the upstream request was dropped with it.
    ClientGone,
}

pub type OnStreamEnd = Box<dyn FnOnce(StreamEnd, Option<Usage>) + Send>;

pub struct FilteredStream {
    /// The first chunk, read before the response was committed.
    first: Option<Bytes>,
    upstream: Incoming,
    filter: StreamFilter,
    operation: Operation,
    idle_timeout: Duration,
    idle: Pin<Box<Sleep>>,
    finished: bool,
    on_end: Option<OnStreamEnd>,
}

impl FilteredStream {
    pub fn new(
        operation: Operation,
        first: Bytes,
        upstream: Incoming,
        strip_usage_chunk: bool,
        idle_timeout: Duration,
        on_end: OnStreamEnd,
    ) -> FilteredStream {
        FilteredStream {
            first: Some(first),
            upstream,
            filter: StreamFilter::new(operation, strip_usage_chunk),
            operation,
            idle_timeout,
            idle: Box::pin(tokio::time::sleep(idle_timeout)),
            finished: false,
            on_end: Some(on_end),
        }
    }

    /// Flushes the filter, appends the error event if any, and reports.
    fn end(
        &mut self,
        how: StreamEnd,
        error: Option<String>,
    ) -> Option<Result<Frame<Bytes>, BoxError>> {
        self.finished = true;
        let mut out = BytesMut::from(self.filter.finish());
        if let Some(message) = error {
            tracing::warn!(operation = self.operation.as_str(), error = %message, "stream broke after the first byte; sent an error event");
            out.extend_from_slice(&error_event(self.operation, &message));
        }
        if let Some(report) = self.on_end.take() {
            report(how, self.filter.usage());
        }
        (!out.is_empty()).then(|| Ok(Frame::data(out.freeze())))
    }

    /// Every protocol marks its natural end: `data: [DONE]` for chat and
    /// completions, `response.completed` (or `incomplete`/`failed`) for
    /// responses, `message_stop` for messages. A close without it is a cut.
    fn complete(&self) -> bool {
        self.filter.saw_done()
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
        if this.finished {
            return Poll::Ready(None);
        }
        if let Some(first) = this.first.take() {
            let out = this.filter.push(first);
            if !out.is_empty() {
                return Poll::Ready(Some(Ok(Frame::data(out))));
            }
        }
        loop {
            match Pin::new(&mut this.upstream).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => {
                    let deadline = Instant::now() + this.idle_timeout;
                    this.idle.as_mut().reset(deadline);
                    // Trailers are dropped: SSE carries nothing in them.
                    if let Ok(data) = frame.into_data() {
                        let out = this.filter.push(data);
                        if !out.is_empty() {
                            return Poll::Ready(Some(Ok(Frame::data(out))));
                        }
                    }
                }
                Poll::Ready(Some(Err(e))) => {
                    let message = format!("the upstream stream broke: {e}");
                    return Poll::Ready(this.end(StreamEnd::Broken, Some(message)));
                }
                Poll::Ready(None) if this.complete() => {
                    return Poll::Ready(this.end(StreamEnd::Complete, None));
                }
                Poll::Ready(None) => {
                    let message =
                        "the upstream ended the stream before it was complete".to_string();
                    return Poll::Ready(this.end(StreamEnd::Broken, Some(message)));
                }
                Poll::Pending => {
                    ready!(this.idle.as_mut().poll(cx));
                    let message = format!(
                        "the upstream sent nothing for {}ms",
                        this.idle_timeout.as_millis()
                    );
                    return Poll::Ready(this.end(StreamEnd::Broken, Some(message)));
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.finished
    }
}

impl Drop for FilteredStream {
    /// The client hung up: dropping `upstream` here cancels the upstream request.
    fn drop(&mut self) {
        if let Some(report) = self.on_end.take() {
            report(StreamEnd::ClientGone, self.filter.usage());
        }
    }
}
