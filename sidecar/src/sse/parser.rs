//! An incremental Server-Sent Events parser, as the WHATWG "event stream
//! interpretation" defines it.
//!
//! Upstream bytes are untrusted: every buffer here is bounded by
//! [`MAX_EVENT_BYTES`] and nothing panics on malformed input.

/// The largest event the parser buffers. Beyond it the event is skipped
/// (counted in [`SseParser::overflows`]) and parsing resumes at the next one.
pub(crate) const MAX_EVENT_BYTES: usize = 1 << 20;

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
    pub(super) line: Vec<u8>,
    /// Whether the current line has any byte, even ones dropped while skipping.
    line_started: bool,
    /// The previous chunk ended in `\r`: a leading `\n` completes that line break.
    pub(crate) pending_cr: bool,
    /// No line completed yet: a byte order mark may lead the first one.
    at_start: bool,
    event: String,
    data: String,
    has_data: bool,
    /// The current event outgrew [`MAX_EVENT_BYTES`]: drop it up to its end.
    skipping: bool,
    overflows: u64,
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
    #[cfg(any(test, feature = "fuzzing"))]
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
    #[cfg(test)]
    pub(crate) fn overflows(&self) -> u64 {
        self.overflows
    }

    /// Whether the bytes so far end between events: no line and no event
    /// under way. Anything written after them is then an event of its own.
    pub(crate) fn at_event_boundary(&self) -> bool {
        !self.line_started && !self.has_data && self.event.is_empty() && !self.skipping
    }

    /// Calls `on_boundary(end, event)` at every blank line, with `end` the
    /// offset in `chunk` just past it; `event` is `None` for a block with no data.
    pub(crate) fn feed(
        &mut self,
        chunk: &[u8],
        mut on_boundary: impl FnMut(usize, Option<SseEvent>),
    ) {
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
