//! Upstream SSE bytes, cut into chunks anywhere, through the parser and the
//! stream filter of every operation, stripping on and off.
//!
//! Input: a leading byte below 0x10 is a header, the number of chunk lengths
//! that follow it (one byte each, 0 = an empty chunk); the rest is the stream,
//! its remainder the last chunk. Any other first byte starts the stream, so a
//! raw capture is a valid seed.
//!
//! Properties: nothing panics; the parser's events do not depend on the cuts;
//! without stripping the filter forwards every byte unchanged; with stripping
//! its output does not depend on the cuts either, and re-parsed it holds the
//! input's events less exactly the usage-only chunks; usage, end and error
//! read the same with stripping on or off.

#![no_main]

use aiflags_api::Operation;
use aiflags_sidecar::sse::{SseEvent, SseParser, StreamFilter, Usage};
use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

const BOM: &[u8] = b"\xEF\xBB\xBF";

/// What a filter produced and read from one stream.
#[derive(Debug, PartialEq)]
struct Filtered {
    out: Vec<u8>,
    usage: Option<Usage>,
    done: bool,
    error: bool,
}

fuzz_target!(|data: &[u8]| {
    let (lengths, stream) = match data.split_first() {
        Some((&n, rest)) if n < 0x10 => rest.split_at(usize::from(n).min(rest.len())),
        _ => (&[][..], data),
    };
    let chunks = cut(stream, lengths);

    let whole = parse(&[stream], true);
    assert_eq!(parse(&chunks, true), whole, "events depend on the cuts");

    for op in Operation::ALL {
        let plain = filter(op, false, &chunks);
        assert_eq!(plain.out, stream, "{op:?}: pass-through changed the bytes");
        assert_eq!(plain, filter(op, false, &[stream]), "{op:?}: cuts matter");

        let stripped = filter(op, true, &chunks);
        let stripped_whole = filter(op, true, &[stream]);
        assert_eq!(
            stripped, stripped_whole,
            "{op:?}: stripping depends on the cuts"
        );
        let read = |f: &Filtered| (f.usage, f.done, f.error);
        assert_eq!(
            read(&stripped),
            read(&plain),
            "{op:?}: stripping changed what was read"
        );
        if !matches!(op, Operation::Chat | Operation::Completions) {
            assert_eq!(
                stripped.out, stream,
                "{op:?}: only chat and completions strip"
            );
            continue;
        }
        // Hiding the first block can leave bytes that look like a byte order
        // mark at the start of the output, which then reads differently.
        if stripped.out.starts_with(BOM) && stripped.out != stream {
            continue;
        }
        let expected: Vec<SseEvent> = parse(&[stream], false)
            .into_iter()
            .filter(|e| !is_usage_only_chunk(e))
            .collect();
        assert_eq!(
            parse(&[&stripped.out], false),
            expected,
            "{op:?}: stripping broke the framing or hid the wrong event"
        );
    }
});

/// Splits `stream` into chunks of the given lengths, then the remainder.
fn cut<'a>(mut stream: &'a [u8], lengths: &[u8]) -> Vec<&'a [u8]> {
    let mut chunks = Vec::with_capacity(lengths.len() + 1);
    for &length in lengths {
        let (chunk, rest) = stream.split_at(usize::from(length).min(stream.len()));
        chunks.push(chunk);
        stream = rest;
    }
    chunks.push(stream);
    chunks
}

/// The events of a stream; `finish` also takes an unterminated last event.
fn parse(chunks: &[&[u8]], finish: bool) -> Vec<SseEvent> {
    let mut parser = SseParser::new();
    let mut events: Vec<SseEvent> = chunks.iter().flat_map(|c| parser.push(c)).collect();
    if finish {
        events.extend(parser.finish());
    }
    events
}

fn filter(op: Operation, strip: bool, chunks: &[&[u8]]) -> Filtered {
    let mut filter = StreamFilter::new(op, strip);
    let mut out = Vec::new();
    for chunk in chunks {
        out.extend_from_slice(&filter.push(Bytes::copy_from_slice(chunk)));
    }
    out.extend_from_slice(&filter.finish());
    Filtered {
        out,
        usage: filter.usage(),
        done: filter.saw_done(),
        error: filter.saw_error(),
    }
}

/// The chunk `stream_options.include_usage` adds: usage set, no choices.
/// Written out again here, so the fuzzer checks the filter against the
/// definition rather than against itself. Like the filter, it skips data
/// without a literal `"usage"`: no upstream escapes its key names.
fn is_usage_only_chunk(event: &SseEvent) -> bool {
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
