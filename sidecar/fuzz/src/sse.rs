//! An event stream read again, from the WHATWG HTML standard's "event stream
//! interpretation", into blocks: the bytes up to and including each blank
//! line, with the event each one dispatches. And the definition of the chunk
//! `stream_options.include_usage` adds, from OpenAI's API reference: a chunk
//! whose `usage` is set and whose `choices` is empty.

use std::ops::Range;

use serde_json::Value;

const BOM: &[u8] = b"\xEF\xBB\xBF";

/// A dispatched event: its type (`None` for the default, `message`) and data.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    pub kind: Option<String>,
    pub data: String,
}

/// The bytes of one block and what it dispatches.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Block {
    pub range: Range<usize>,
    pub event: Option<Event>,
    /// Ended by a blank line; the last block of a cut stream is not, and is
    /// dispatched at the end of the stream (as the sidecar's parser does,
    /// beyond the standard, which drops it).
    pub complete: bool,
}

/// The blocks of a whole stream.
pub fn blocks(stream: &[u8]) -> Vec<Block> {
    let mut out = Vec::new();
    let mut reader = Fields::default();
    let mut start = 0;
    let mut i = 0;
    let mut first_line = true;
    while i < stream.len() {
        let rest = &stream[i..];
        let Some(end) = rest.iter().position(|b| *b == b'\r' || *b == b'\n') else {
            reader.line(&stream[i..], first_line);
            i = stream.len();
            break;
        };
        let terminator = if rest[end..].starts_with(b"\r\n") {
            2
        } else {
            1
        };
        let mut line = &rest[..end];
        if std::mem::take(&mut first_line) {
            line = line.strip_prefix(BOM).unwrap_or(line);
        }
        i += end + terminator;
        if line.is_empty() {
            out.push(Block {
                range: start..i,
                event: reader.dispatch(),
                complete: true,
            });
            start = i;
        } else {
            reader.line(line, false);
        }
    }
    if start < i {
        out.push(Block {
            range: start..i,
            event: reader.dispatch(),
            complete: false,
        });
    }
    out
}

/// The dispatched events of a stream, in order.
pub fn events(stream: &[u8]) -> Vec<Event> {
    blocks(stream).into_iter().filter_map(|b| b.event).collect()
}

/// The buffers of the standard's parser.
#[derive(Default)]
struct Fields {
    kind: String,
    data: String,
}

impl Fields {
    /// A line without its terminator.
    fn line(&mut self, line: &[u8], first: bool) {
        let line = if first {
            line.strip_prefix(BOM).unwrap_or(line)
        } else {
            line
        };
        if line.first() == Some(&b':') {
            return;
        }
        let (name, value) = match line.iter().position(|b| *b == b':') {
            Some(colon) => {
                let value = &line[colon + 1..];
                (&line[..colon], value.strip_prefix(b" ").unwrap_or(value))
            }
            None => (line, &b""[..]),
        };
        let value = String::from_utf8_lossy(value);
        match name {
            b"event" => self.kind = value.into_owned(),
            b"data" => {
                self.data.push_str(&value);
                self.data.push('\n');
            }
            _ => {}
        }
    }

    fn dispatch(&mut self) -> Option<Event> {
        let kind = std::mem::take(&mut self.kind);
        let mut data = std::mem::take(&mut self.data);
        if data.is_empty() {
            return None;
        }
        data.pop();
        Some(Event {
            kind: (!kind.is_empty()).then_some(kind),
            data,
        })
    }
}

/// What a filter hiding the usage chunk must do with a block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Forward,
    Hide,
    /// The definition leaves it open: a usage chunk whose keys may be
    /// escaped, or whose `usage` is set but not an object.
    Either,
}

/// The verdict for a complete block's event.
pub fn verdict(event: Option<&Event>) -> Verdict {
    let Some(event) = event else {
        return Verdict::Forward;
    };
    let Ok(Value::Object(chunk)) = serde_json::from_str::<Value>(&event.data) else {
        return Verdict::Forward;
    };
    let no_choices = chunk
        .get("choices")
        .and_then(Value::as_array)
        .is_some_and(Vec::is_empty);
    match chunk.get("usage") {
        Some(Value::Object(_)) if no_choices && !event.data.contains("\\u") => Verdict::Hide,
        Some(usage) if no_choices && !usage.is_null() => Verdict::Either,
        _ => Verdict::Forward,
    }
}

/// Whether `out` is `stream` with each block forwarded or hidden as its
/// verdict says.
pub fn filtered_as(stream: &[u8], verdicts: &[(Range<usize>, Verdict)], out: &[u8]) -> bool {
    // Every offset of `out` the blocks so far can have reached.
    let mut reached = vec![0usize];
    for (range, verdict) in verdicts {
        let block = &stream[range.clone()];
        let mut next = Vec::new();
        for &at in &reached {
            if *verdict != Verdict::Hide && out[at..].starts_with(block) {
                next.push(at + block.len());
            }
            if *verdict != Verdict::Forward {
                next.push(at);
            }
        }
        next.sort_unstable();
        next.dedup();
        reached = next;
    }
    reached.contains(&out.len())
}

pub fn self_check() {
    let stream =
        b"\xEF\xBB\xBF: hi\r\nevent: a\ndata:x\rdata:  y\r\n\r\nid: 1\n\ndata: [DONE]\n\rdata";
    let found = blocks(stream);
    let event = |kind: Option<&str>, data: &str| Event {
        kind: kind.map(str::to_string),
        data: data.to_string(),
    };
    assert_eq!(
        found,
        [
            Block {
                range: 0..37,
                event: Some(event(Some("a"), "x\n y")),
                complete: true,
            },
            Block {
                range: 37..44,
                event: None,
                complete: true,
            },
            Block {
                range: 44..58,
                event: Some(event(None, "[DONE]")),
                complete: true,
            },
            Block {
                range: 58..62,
                event: Some(event(None, "")),
                complete: false,
            },
        ]
    );
    assert_eq!(
        blocks(b"\xEF\xBB\xBF\n").len(),
        1,
        "a line of only the mark is blank"
    );
    let usage = event(None, r#"{"choices":[],"usage":{"prompt_tokens":1}}"#);
    assert_eq!(verdict(Some(&usage)), Verdict::Hide);
    let content = event(None, r#"{"choices":[{}],"usage":{"prompt_tokens":1}}"#);
    assert_eq!(verdict(Some(&content)), Verdict::Forward);
    let null = event(None, r#"{"choices":[],"usage":null}"#);
    assert_eq!(verdict(Some(&null)), Verdict::Forward);
    let escaped = event(None, r#"{"choices":[],"\u0075sage":{}}"#);
    assert_eq!(verdict(Some(&escaped)), Verdict::Either);
    let verdicts = [
        (0..2, Verdict::Forward),
        (2..4, Verdict::Hide),
        (4..6, Verdict::Either),
    ];
    assert!(filtered_as(b"aabbcc", &verdicts, b"aacc"));
    assert!(filtered_as(b"aabbcc", &verdicts, b"aa"));
    assert!(!filtered_as(b"aabbcc", &verdicts, b"aabbcc"));
    assert!(!filtered_as(b"aabbcc", &verdicts, b"cc"));
}
