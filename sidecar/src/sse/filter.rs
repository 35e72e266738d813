//! Forwarding an upstream SSE stream to the client while reading it: the
//! usage it reports (interpreted by `usage`), what its answer amounts to
//! (judged by `verdict`), its natural end, and — when the proxy asked for
//! it — the usage-only chunk hidden from a client that did not.

use aiflags_api::Operation;
use bytes::{Bytes, BytesMut};
use serde_json::Value;

use super::parser::{MAX_EVENT_BYTES, SseEvent, SseParser};
use crate::usage::{AnthropicCounts, Usage, openai_usage, responses_usage};
use crate::verdict::StreamJudge;

/// Forwards an upstream SSE stream to the client while reading it: usage, the
/// end of the stream, and (when the proxy asked for it) the usage-only chunk
/// to hide from a client that did not.
#[derive(Debug)]
pub struct StreamFilter {
    op: Operation,
    strip_usage_chunk: bool,
    parser: SseParser,
    /// Bytes of the trailing incomplete event, held back while stripping.
    pub(super) held: BytesMut,
    /// The current event outgrew the hold and is being forwarded as it comes.
    forwarding_oversized: bool,
    /// A stripped event ended in `\r` at a chunk end: its `\n` may come next.
    drop_leading_lf: bool,
    usage: Option<Usage>,
    anthropic: AnthropicCounts,
    judge: StreamJudge,
    done: bool,
    error: bool,
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
            judge: StreamJudge::default(),
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

    /// Whether what was forwarded ends between events.
    pub fn at_event_boundary(&self) -> bool {
        self.parser.at_event_boundary()
    }

    /// What the answer read so far amounts to.
    pub(crate) fn judge(&self) -> &StreamJudge {
        &self.judge
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
        self.judge.observe(self.op, kind, &data);
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
