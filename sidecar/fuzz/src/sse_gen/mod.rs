//! Upstream streams built from structured events, so the target knows what
//! each block is — content, the usage-only chunk, the end, an error — and
//! what a reader of the stream must find in it, from each provider's
//! documentation: OpenAI chat and completions chunks (`usage` on the last
//! chunk, `[DONE]`), OpenAI responses events (usage on the terminal
//! `response.*` event), Anthropic messages events (usage in `message_start`,
//! cumulative counts in `message_delta`). The framing varies as the standard
//! allows: line endings, a byte order mark, comments, `id`/`retry` lines,
//! JSON split over several `data:` lines, and a stream cut mid-event.

mod events;

use std::ops::Range;

use aiflags_sidecar::Usage;

use self::events::{Effect, event};
use crate::Source;
use crate::sse::Verdict;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    /// Chat completions and (legacy) completions.
    OpenAi,
    Responses,
    Anthropic,
}

/// A block of the generated stream and what a usage-hiding filter must do with it.
#[derive(Clone, Debug)]
pub struct GenBlock {
    pub range: Range<usize>,
    pub verdict: Verdict,
}

/// What a reader of the stream must find, for the family's operations.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Expect {
    pub usage: Option<Usage>,
    pub done: bool,
    pub error: bool,
}

#[derive(Debug)]
pub struct Generated {
    pub family: Family,
    pub stream: Vec<u8>,
    pub blocks: Vec<GenBlock>,
    pub expect: Expect,
}

pub fn generate(src: &mut Source<'_>) -> Generated {
    let family = match src.below(3) {
        0 => Family::OpenAi,
        1 => Family::Responses,
        _ => Family::Anthropic,
    };
    let mut stream = Vec::new();
    let bom = src.below(8) == 0;
    let mut blocks = Vec::new();
    let mut effects = Vec::new();
    let mut last_data: Option<Range<usize>> = None;
    // Whether the bytes so far end in a lone `\r`.
    let mut after_cr = false;
    let events = 1 + src.below(16);
    for _ in 0..events {
        if src.is_empty() {
            break;
        }
        let spec = event(family, src);
        let start = stream.len();
        if bom && blocks.is_empty() {
            stream.extend_from_slice(b"\xEF\xBB\xBF");
        }
        let mut lines: Vec<Vec<u8>> = Vec::new();
        if src.below(6) == 0 {
            lines.push(b": keep-alive".to_vec());
        }
        if src.below(8) == 0 {
            lines.push(b"id: 42".to_vec());
        }
        if src.below(12) == 0 {
            lines.push(b"retry: 3000".to_vec());
        }
        let kind_line = spec.kind.map(|k| format!("event: {k}").into_bytes());
        let kind_first = src.flag();
        if kind_first {
            lines.extend(kind_line.clone());
        }
        let first_data = lines.len();
        let mut pieces = spec.data.iter().peekable();
        while pieces.peek().is_some() {
            let mut line = if src.flag() {
                b"data: ".to_vec()
            } else {
                b"data:".to_vec()
            };
            let take = 1 + src.below(4);
            for piece in pieces.by_ref().take(take) {
                line.extend_from_slice(piece.as_bytes());
            }
            lines.push(line);
        }
        if !kind_first {
            lines.extend(kind_line);
        }
        let mut payload = None;
        for (i, line) in lines.iter().enumerate() {
            let line_start = stream.len();
            stream.extend_from_slice(line);
            if i == first_data && !spec.data.is_empty() {
                let prefix = if line.starts_with(b"data: ") { 6 } else { 5 };
                payload = Some(line_start + prefix..stream.len());
            }
            after_cr = terminate(&mut stream, src, after_cr, false);
        }
        after_cr = terminate(&mut stream, src, after_cr, true);
        blocks.push(GenBlock {
            range: start..stream.len(),
            verdict: spec.verdict,
        });
        effects.push(spec.effect);
        last_data = payload;
    }
    // Cut the last event before its data is whole: the first data line
    // keeps less than all of its payload (the payload ends on the last one).
    let cut = !blocks.is_empty() && src.below(4) == 0;
    if cut {
        let end = match (&last_data, blocks.last()) {
            (Some(payload), _) => payload.start + src.below(payload.len()),
            (None, Some(block)) => block.range.start + src.below(block.range.len()),
            (None, None) => stream.len(),
        };
        stream.truncate(end);
        if let Some(block) = blocks.last_mut() {
            block.range.end = end;
            block.verdict = Verdict::Forward;
        }
        effects.pop();
        if blocks.last().is_some_and(|b| b.range.is_empty()) {
            blocks.pop();
        }
    }
    Generated {
        family,
        stream,
        blocks,
        expect: expect(&effects),
    }
}

/// Ends a line (`blank`: an empty one, ending the event) with `\n`, `\r\n`
/// or `\r`. After a lone `\r`, an empty line cannot end in `\n` alone: the
/// two would read as one line ending.
fn terminate(stream: &mut Vec<u8>, src: &mut Source<'_>, after_cr: bool, blank: bool) -> bool {
    let ending: &[u8] = match src.below(3) {
        0 if blank && after_cr => b"\r\n",
        0 => b"\n",
        1 => b"\r\n",
        _ => b"\r",
    };
    stream.extend_from_slice(ending);
    ending == b"\r"
}

fn expect(effects: &[Effect]) -> Expect {
    let mut out = Expect::default();
    let mut anthropic: [u64; 4] = [0; 4];
    for effect in effects {
        match effect {
            Effect::None => {}
            Effect::Usage(usage) => out.usage = Some(*usage),
            Effect::Done => out.done = true,
            Effect::DoneWithUsage(usage) => {
                out.done = true;
                out.usage = usage.or(out.usage);
            }
            Effect::Error => {
                out.error = true;
                out.done = true;
            }
            Effect::Anthropic(counts) => {
                for (slot, count) in anthropic.iter_mut().zip(counts) {
                    if let Some(count) = count {
                        *slot = *count;
                    }
                }
                let [input, read, created, output] = anthropic;
                out.usage = Some(Usage {
                    input_tokens: input.saturating_add(read).saturating_add(created),
                    output_tokens: output,
                    cached_input_tokens: read,
                    reasoning_tokens: 0,
                });
            }
        }
    }
    out
}
