//! Server-Sent Events from upstreams: an incremental parser, the filter that
//! forwards a stream while reading its usage (interpreted by `usage`), and
//! the proxy's own error event.
//!
//! Upstream bytes are untrusted: every buffer here is bounded by
//! [`MAX_EVENT_BYTES`] and nothing panics on malformed input.

use aiflags_api::Operation;
use bytes::{Bytes, BytesMut};
use serde_json::{Value, json};

use crate::usage::{AnthropicCounts, openai_usage, responses_usage};
// Where callers found them before usage reading had its own module.
pub use crate::usage::{Usage, usage_from_response};

/// The largest event the parser buffers. Beyond it the event is skipped
/// (counted in [`SseParser::overflows`]) and parsing resumes at the next one.
pub const MAX_EVENT_BYTES: usize = 1 << 20;

/// A UTF-8 byte order mark, which may lead a stream.
const BOM: &[u8] = b"\xEF\xBB\xBF";

/// One dispatched event, as the WHATWG "event stream interpretation" defines it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SseEvent {
    /// The `event:` field; `None` for the default type (`message`).
    pub event: Option<String>,
    /// The `data:` lines joined with `\n`.
    pub data: String,
}

/// Incremental SSE parser: accepts the stream in chunks split anywhere, also
/// inside a UTF-8 character or between `\r` and `\n`.
#[derive(Debug)]
pub struct SseParser {
    /// The current line, without its terminator.
    line: Vec<u8>,
    /// Whether the current line has any byte, even ones dropped while skipping.
    line_started: bool,
    /// The previous chunk ended in `\r`: a leading `\n` completes that line break.
    pending_cr: bool,
    /// No line completed yet: a byte order mark may lead the first one.
    at_start: bool,
    event: String,
    data: String,
    has_data: bool,
    /// The current event outgrew [`MAX_EVENT_BYTES`]: drop it up to its end.
    skipping: bool,
    overflows: u64,
}

/// Forwards an upstream SSE stream to the client while reading it: usage, the
/// end of the stream, and (when the proxy asked for it) the usage-only chunk
/// to hide from a client that did not.
#[derive(Debug)]
pub struct StreamFilter {
    op: Operation,
    strip_usage_chunk: bool,
    parser: SseParser,
    /// Bytes of the trailing incomplete event, held back while stripping.
    held: BytesMut,
    /// The current event outgrew the hold and is being forwarded as it comes.
    forwarding_oversized: bool,
    /// A stripped event ended in `\r` at a chunk end: its `\n` may come next.
    drop_leading_lf: bool,
    usage: Option<Usage>,
    anthropic: AnthropicCounts,
    done: bool,
    error: bool,
}

impl Default for SseParser {
    fn default() -> Self {
        Self::new()
    }
}

impl SseParser {
    pub fn new() -> Self {
        SseParser {
            line: Vec::new(),
            line_started: false,
            pending_cr: false,
            at_start: true,
            event: String::new(),
            data: String::new(),
            has_data: false,
            skipping: false,
            overflows: 0,
        }
    }

    /// Parses a chunk, returning the events it completes.
    pub fn push(&mut self, chunk: &[u8]) -> Vec<SseEvent> {
        let mut events = Vec::new();
        self.feed(chunk, |_, event| events.extend(event));
        events
    }

    /// The end of the stream ends the current line and event. (The spec drops
    /// an unterminated event; accepting it is kinder to upstreams that omit
    /// the final blank line, and costs nothing since the bytes already went on.)
    pub fn finish(&mut self) -> Option<SseEvent> {
        let mut last = None;
        if self.line_started {
            self.end_line(&mut |_, _| {});
        }
        self.end_line(&mut |_, event| last = event);
        last
    }

    /// How many oversized events were skipped.
    pub fn overflows(&self) -> u64 {
        self.overflows
    }

    /// Calls `on_boundary(end, event)` at every blank line, with `end` the
    /// offset in `chunk` just past it; `event` is `None` for a block with no data.
    fn feed(&mut self, chunk: &[u8], mut on_boundary: impl FnMut(usize, Option<SseEvent>)) {
        let mut rest = chunk;
        if self.pending_cr && !rest.is_empty() {
            self.pending_cr = false;
            if let Some(after) = rest.strip_prefix(b"\n") {
                rest = after;
            }
        }
        while let Some(pos) = rest.iter().position(|b| *b == b'\n' || *b == b'\r') {
            let (content, terminator) = rest.split_at(pos);
            self.append(content);
            rest = terminator.get(1..).unwrap_or_default();
            if terminator.first() == Some(&b'\r') {
                match rest.first() {
                    Some(b'\n') => rest = rest.get(1..).unwrap_or_default(),
                    Some(_) => {}
                    None => self.pending_cr = true,
                }
            }
            let end = chunk.len() - rest.len();
            self.end_line(&mut |_, event| on_boundary(end, event));
        }
        self.append(rest);
    }

    fn append(&mut self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        self.line_started = true;
        if self.skipping {
            return;
        }
        if self.line.len() + self.data.len() + self.event.len() + bytes.len() > MAX_EVENT_BYTES {
            self.overflows += 1;
            self.skipping = true;
            self.line = Vec::new();
            self.reset_event();
            return;
        }
        self.line.extend_from_slice(bytes);
    }

    fn end_line(&mut self, on_boundary: &mut impl FnMut(usize, Option<SseEvent>)) {
        let mut started = std::mem::take(&mut self.line_started);
        let mut line = std::mem::take(&mut self.line);
        if std::mem::take(&mut self.at_start) && line.starts_with(BOM) {
            line.drain(..BOM.len());
            // A line that was only the mark is a blank line.
            started = !line.is_empty();
        }
        if !started {
            self.skipping = false;
            on_boundary(0, self.dispatch());
        } else if !self.skipping {
            self.field(&line);
        }
    }

    fn field(&mut self, line: &[u8]) {
        if line.first() == Some(&b':') {
            return;
        }
        let (name, value) = match line.iter().position(|b| *b == b':') {
            Some(colon) => {
                let (name, value) = line.split_at(colon);
                let value = value.get(1..).unwrap_or_default();
                (name, value.strip_prefix(b" ").unwrap_or(value))
            }
            None => (line, &b""[..]),
        };
        let value = String::from_utf8_lossy(value);
        match name {
            b"data" => {
                self.data.push_str(&value);
                self.data.push('\n');
                self.has_data = true;
            }
            b"event" => self.event = value.into_owned(),
            // `id` and `retry` steer browser reconnection, which a proxy does not do.
            _ => {}
        }
    }

    fn dispatch(&mut self) -> Option<SseEvent> {
        if !self.has_data {
            self.reset_event();
            return None;
        }
        let mut data = std::mem::take(&mut self.data);
        data.pop();
        let event = std::mem::take(&mut self.event);
        self.reset_event();
        Some(SseEvent {
            event: (!event.is_empty()).then_some(event),
            data,
        })
    }

    fn reset_event(&mut self) {
        self.event.clear();
        self.data.clear();
        self.has_data = false;
    }
}

impl StreamFilter {
    /// `strip_usage_chunk`: the proxy added `stream_options.include_usage`, so
    /// the usage-only chunk must not reach the client.
    pub fn new(op: Operation, strip_usage_chunk: bool) -> Self {
        StreamFilter {
            op,
            strip_usage_chunk: strip_usage_chunk
                && matches!(op, Operation::Chat | Operation::Completions),
            parser: SseParser::new(),
            held: BytesMut::new(),
            forwarding_oversized: false,
            drop_leading_lf: false,
            usage: None,
            anthropic: AnthropicCounts::default(),
            done: false,
            error: false,
        }
    }

    /// Reads a chunk and returns the bytes to forward now. Without stripping
    /// that is the chunk itself; with it, every complete event except the
    /// usage-only one, holding back only an incomplete trailing event.
    pub fn push(&mut self, chunk: Bytes) -> Bytes {
        if !self.strip_usage_chunk {
            let mut events = Vec::new();
            self.parser.feed(&chunk, |_, event| events.extend(event));
            events.iter().for_each(|e| self.observe(e));
            return chunk;
        }
        if chunk.is_empty() {
            return chunk;
        }
        let mut out = Output::default();
        let mut start = 0;
        // A `\n` completing a `\r` that ended the previous chunk belongs with
        // the bytes before it, which were already forwarded or hidden.
        let hidden_before = std::mem::take(&mut self.drop_leading_lf);
        if self.parser.pending_cr && self.held.is_empty() && chunk.first() == Some(&b'\n') {
            start = 1;
            if !hidden_before {
                out.push(chunk.slice(..1));
            }
        }
        let mut boundaries = Vec::new();
        self.parser
            .feed(&chunk, |end, event| boundaries.push((end, event)));
        for (end, event) in boundaries {
            let piece = chunk.slice(start.min(end)..end);
            start = end;
            let oversized = std::mem::take(&mut self.forwarding_oversized);
            let hide = event.as_ref().is_some_and(|e| {
                self.observe(e);
                !oversized && is_usage_only_chunk(e)
            });
            if hide {
                self.held.clear();
                self.drop_leading_lf = end == chunk.len() && self.parser.pending_cr;
            } else {
                out.push(self.held.split().freeze());
                out.push(piece);
            }
        }
        let tail = chunk.slice(start.min(chunk.len())..);
        if self.forwarding_oversized {
            out.push(tail);
        } else {
            self.held.extend_from_slice(&tail);
            if self.held.len() > MAX_EVENT_BYTES {
                // Too big to be a usage chunk worth hiding; never hoard it.
                self.forwarding_oversized = true;
                out.push(self.held.split().freeze());
            }
        }
        out.into_bytes()
    }

    /// The end of the upstream stream: returns any held bytes.
    pub fn finish(&mut self) -> Bytes {
        if let Some(event) = self.parser.finish() {
            self.observe(&event);
        }
        self.held.split().freeze()
    }

    /// The usage read so far: the final usage chunk (chat, completions), the
    /// terminal `response.*` event (responses), or `message_start` updated by
    /// `message_delta` (Anthropic).
    pub fn usage(&self) -> Option<Usage> {
        self.usage
    }

    /// The upstream ended the stream explicitly: `[DONE]`, `message_stop`, a
    /// terminal `response.*` event, or an error event. A stream that closes
    /// without one was cut, and the proxy must say so.
    pub fn saw_done(&self) -> bool {
        self.done
    }

    /// The upstream itself sent an error event.
    pub fn saw_error(&self) -> bool {
        self.error
    }

    fn observe(&mut self, event: &SseEvent) {
        if event.data.trim() == "[DONE]" {
            self.done = true;
            return;
        }
        let Ok(data) = serde_json::from_str::<Value>(&event.data) else {
            return;
        };
        let kind = data
            .get("type")
            .and_then(Value::as_str)
            .or(event.event.as_deref());
        if kind == Some("error") || data.get("error").is_some_and(|e| !e.is_null()) {
            self.error = true;
            self.done = true;
            return;
        }
        match self.op {
            Operation::Chat | Operation::Completions | Operation::Embeddings => {
                if let Some(usage) = data.get("usage").and_then(openai_usage) {
                    self.usage = Some(usage);
                }
            }
            Operation::Responses => {
                if let Some("response.completed" | "response.incomplete" | "response.failed") = kind
                {
                    self.done = true;
                    if let Some(usage) = data.pointer("/response/usage").and_then(responses_usage) {
                        self.usage = Some(usage);
                    }
                }
            }
            Operation::Messages => match kind {
                Some("message_start") => self.anthropic_update(data.pointer("/message/usage")),
                Some("message_delta") => self.anthropic_update(data.get("usage")),
                Some("message_stop") => self.done = true,
                _ => {}
            },
        }
    }

    fn anthropic_update(&mut self, usage: Option<&Value>) {
        if let Some(usage) = usage.and_then(|u| self.anthropic.update(u)) {
            self.usage = Some(usage);
        }
    }
}

/// Pieces of a chunk to forward, concatenated only when there is more than one.
#[derive(Default)]
struct Output(Vec<Bytes>);

impl Output {
    fn push(&mut self, bytes: Bytes) {
        if !bytes.is_empty() {
            self.0.push(bytes);
        }
    }

    fn into_bytes(mut self) -> Bytes {
        if self.0.len() <= 1 {
            return self.0.pop().unwrap_or_default();
        }
        let mut out = BytesMut::with_capacity(self.0.iter().map(Bytes::len).sum());
        self.0.iter().for_each(|piece| out.extend_from_slice(piece));
        out.freeze()
    }
}

/// The SSE event that ends a stream the upstream broke after the client got
/// its first byte, in the shape each SDK raises as an API error.
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

/// The chunk `include_usage` adds: usage set and no choices.
fn is_usage_only_chunk(event: &SseEvent) -> bool {
    // Cheap test first: most chunks are content deltas.
    if !event.data.contains("\"usage\"") {
        return false;
    }
    serde_json::from_str::<Value>(&event.data).is_ok_and(|data| {
        data.get("usage").is_some_and(|u| !u.is_null())
            && data
                .get("choices")
                .and_then(Value::as_array)
                .is_some_and(Vec::is_empty)
    })
}

#[cfg(test)]
#[path = "sse_tests.rs"]
mod tests;
