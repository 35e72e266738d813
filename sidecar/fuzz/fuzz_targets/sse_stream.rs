//! Upstream SSE bytes, cut into chunks anywhere (and compressed, as an
//! upstream may despite being asked not to), through the sidecar's parser
//! and the stream filter of every operation, hiding the usage chunk and not.
//!
//! Input: a first byte below 0x10 is a header, the number of chunk lengths
//! that follow it, then the raw stream; a raw stream starting with gzip's
//! magic is a compressed upstream. A first byte from 0x10 to 0x1f makes the
//! rest a program for `sse_gen`: structured events the target knows the
//! meaning of, framed in every way the standard allows, maybe cut mid-event,
//! maybe compressed, and the chunk lengths. Any other first byte starts a
//! raw stream, so a capture is a valid seed.
//!
//! The expected output is never asked of the code under test: blocks and
//! events come from the target's own reading of the standard (`sse`), which
//! usage chunk to hide from its definition (`sse::verdict`), or in
//! structured mode from how the stream was built (`sse_gen`), which also
//! says what usage, end and error a reader must find.
//!
//! Properties: nothing panics; the parser dispatches the standard's events,
//! whatever the cuts; without hiding, the filter forwards every byte as it
//! came; with hiding (chat and completions only), its output is the stream
//! less exactly the usage-only blocks, the same whatever the cuts; usage,
//! end and error read the same hiding or not, whatever the cuts, and as the
//! stream says; a decoded stream reads as the plain one; and the error event
//! the proxy appends to a stream that did not end is the client's last event.

#![no_main]

use std::ops::Range;

use aiflags_api::Operation;
use aiflags_sidecar::Usage;
use aiflags_sidecar::fuzzing::decode::{self, StreamDecoder};
use aiflags_sidecar::fuzzing::error_event;
use aiflags_sidecar::fuzzing::{SseEvent, SseParser, StreamFilter};
use aiflags_sidecar_fuzz::encode::{self, Coding, Decoded};
use aiflags_sidecar_fuzz::sse::{self, Verdict};
use aiflags_sidecar_fuzz::sse_gen::{self, Family, Generated};
use aiflags_sidecar_fuzz::{Source, cut};
use bytes::Bytes;
use libfuzzer_sys::fuzz_target;

/// Bounds a compressed stream's decoded size, as the sidecar bounds it.
const LIMIT: usize = 1 << 20;

const CUT_SHORT: &str = "the upstream ended the stream before it was complete";

fuzz_target!(|data: &[u8]| {
    aiflags_sidecar_fuzz::self_check();
    match data.split_first() {
        Some((&n, rest)) if n < 0x10 => {
            let (lengths, stream) = rest.split_at(usize::from(n).min(rest.len()));
            raw(stream, lengths);
        }
        Some((&n, rest)) if n < 0x20 => structured(rest),
        _ => raw(data, &[]),
    }
});

fn raw(input: &[u8], lengths: &[u8]) {
    if !input.starts_with(&[0x1f, 0x8b]) {
        check(input, &cut(input, lengths), None);
        return;
    }
    let decoded = decoded_chunks(decode::Coding::Gzip, &cut(input, lengths));
    match (encode::decode(Coding::Gzip, input, LIMIT), decoded) {
        (Decoded::Plain(plain), Ok(chunks)) => {
            assert_eq!(chunks.concat(), plain, "gzip stream decoded in chunks");
            let chunks: Vec<&[u8]> = chunks.iter().map(|c| &c[..]).collect();
            check(&plain, &chunks, None);
        }
        (Decoded::Plain(_), Err(e)) => panic!("a gzip stream the reference decodes: {e}"),
        (reference, Ok(_)) => panic!("a gzip stream the reference calls {reference:?} decoded"),
        (_, Err(_)) => {}
    }
}

fn structured(program: &[u8]) {
    let mut src = Source::new(program);
    let generated = sse_gen::generate(&mut src);
    let coding = match src.below(5) {
        0 => Some((Coding::Gzip, decode::Coding::Gzip)),
        1 => Some((Coding::Zlib, decode::Coding::Deflate)),
        2 => Some((Coding::Brotli, decode::Coding::Brotli)),
        _ => None,
    };
    let lengths = src.rest();
    let stream = &generated.stream;
    match coding {
        None => check(stream, &cut(stream, lengths), Some(&generated)),
        Some((coding, sidecar)) => {
            let encoded = coding.encode(stream);
            let chunks = match decoded_chunks(sidecar, &cut(&encoded, lengths)) {
                Ok(chunks) => chunks,
                Err(e) => panic!("{coding:?} stream: {e}"),
            };
            assert_eq!(
                &chunks.concat(),
                stream,
                "{coding:?} stream decoded in chunks"
            );
            let chunks: Vec<&[u8]> = chunks.iter().map(|c| &c[..]).collect();
            check(stream, &chunks, Some(&generated));
        }
    }
}

/// What `FilteredStream` hands the filter: each chunk's decoded bytes, then
/// what the decoder holds at the end.
fn decoded_chunks(coding: decode::Coding, chunks: &[&[u8]]) -> Result<Vec<Bytes>, String> {
    let first = chunks
        .iter()
        .find(|c| !c.is_empty())
        .copied()
        .unwrap_or_default();
    let mut decoder = StreamDecoder::new(coding, first, LIMIT);
    let mut out = Vec::new();
    for chunk in chunks {
        out.push(decoder.push(chunk).map_err(|e| e.to_string())?);
    }
    out.push(decoder.finish().map_err(|e| e.to_string())?);
    Ok(out)
}

/// What a filter produced and read from one stream.
#[derive(Debug, PartialEq)]
struct Filtered {
    out: Vec<u8>,
    usage: Option<Usage>,
    done: bool,
    error: bool,
    /// Whether the forwarded bytes ended between events (read before the
    /// filter's end, as `FilteredStream::end` reads it).
    boundary: bool,
}

fn filter(op: Operation, strip: bool, chunks: &[&[u8]]) -> Filtered {
    let mut filter = StreamFilter::new(op, strip);
    let mut out = Vec::new();
    for chunk in chunks {
        out.extend_from_slice(&filter.push(Bytes::copy_from_slice(chunk)));
    }
    let boundary = filter.at_event_boundary();
    out.extend_from_slice(&filter.finish());
    Filtered {
        out,
        usage: filter.usage(),
        done: filter.saw_done(),
        error: filter.saw_error(),
        boundary,
    }
}

fn parse(chunks: &[&[u8]]) -> Vec<SseEvent> {
    let mut parser = SseParser::new();
    let mut events: Vec<SseEvent> = chunks.iter().flat_map(|c| parser.push(c)).collect();
    events.extend(parser.finish());
    events
}

fn check(stream: &[u8], chunks: &[&[u8]], generated: Option<&Generated>) {
    let blocks = sse::blocks(stream);
    let standard: Vec<SseEvent> = blocks
        .iter()
        .filter_map(|b| b.event.clone())
        .map(|e| SseEvent {
            event: e.kind,
            data: e.data,
        })
        .collect();
    assert_eq!(parse(chunks), standard, "the parser's events");

    let verdicts: Vec<(Range<usize>, Verdict)> = match generated {
        Some(generated) => {
            let read: Vec<Range<usize>> = blocks.iter().map(|b| b.range.clone()).collect();
            let made: Vec<Range<usize>> =
                generated.blocks.iter().map(|b| b.range.clone()).collect();
            assert_eq!(
                read, made,
                "the generator's blocks as the standard reads them"
            );
            for (block, made) in blocks.iter().zip(&generated.blocks) {
                if block.complete {
                    assert_eq!(
                        sse::verdict(block.event.as_ref()),
                        made.verdict,
                        "{block:?}"
                    );
                }
            }
            generated
                .blocks
                .iter()
                .map(|b| (b.range.clone(), b.verdict))
                .collect()
        }
        None => blocks
            .iter()
            .map(|b| match b.complete {
                true => (b.range.clone(), sse::verdict(b.event.as_ref())),
                // A cut event is forwarded: nothing says it is whole.
                false => (b.range.clone(), Verdict::Forward),
            })
            .collect(),
    };

    for op in Operation::ALL {
        let plain = filter(op, false, chunks);
        assert_eq!(plain.out, stream, "{op:?}: pass-through changed the bytes");
        assert_eq!(plain, filter(op, false, &[stream]), "{op:?}: cuts matter");

        let stripped = filter(op, true, chunks);
        assert_eq!(
            stripped,
            filter(op, true, &[stream]),
            "{op:?}: hiding depends on the cuts"
        );
        let read = |f: &Filtered| (f.usage, f.done, f.error);
        assert_eq!(
            read(&stripped),
            read(&plain),
            "{op:?}: hiding changed what was read"
        );
        if matches!(op, Operation::Chat | Operation::Completions) {
            assert!(
                sse::filtered_as(stream, &verdicts, &stripped.out),
                "{op:?}: not the stream less its usage chunks: {:?}",
                String::from_utf8_lossy(&stripped.out)
            );
        } else {
            assert_eq!(
                stripped.out, stream,
                "{op:?}: only chat and completions hide"
            );
        }
        if let Some(generated) = generated.filter(|g| family_reads(g.family, op)) {
            let expect = generated.expect;
            assert_eq!(
                read(&plain),
                (expect.usage, expect.done, expect.error),
                "{op:?}: usage, done, error"
            );
        }
        for filtered in [&plain, &stripped] {
            check_error_event(op, filtered);
        }
    }
}

/// The operations whose reading of usage and ends a family's stream defines.
fn family_reads(family: Family, op: Operation) -> bool {
    match family {
        Family::OpenAi => matches!(op, Operation::Chat | Operation::Completions),
        Family::Responses => op == Operation::Responses,
        Family::Anthropic => op == Operation::Messages,
    }
}

/// `FilteredStream` ends a stream that did not end itself with an error
/// event: the client must read it as the last event.
fn check_error_event(op: Operation, filtered: &Filtered) {
    if filtered.done {
        return;
    }
    let appended = error_event(op, CUT_SHORT);
    let want = sse::events(&appended);
    assert_eq!(want.len(), 1, "the error event alone");
    // As `FilteredStream::end` writes it: an event cut short is closed first.
    let mut client = filtered.out.clone();
    if !filtered.boundary {
        client.extend_from_slice(b"\n\n");
    }
    client.extend_from_slice(&appended);
    assert_eq!(
        sse::events(&client).last(),
        want.last(),
        "{op:?}: the error event after {:?}",
        String::from_utf8_lossy(&filtered.out)
    );
}
