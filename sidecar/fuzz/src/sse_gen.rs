//! Upstream streams built from structured events, so the target knows what
//! each block is — content, the usage-only chunk, the end, an error — and
//! what a reader of the stream must find in it, from each provider's
//! documentation: OpenAI chat and completions chunks (`usage` on the last
//! chunk, `[DONE]`), OpenAI responses events (usage on the terminal
//! `response.*` event), Anthropic messages events (usage in `message_start`,
//! cumulative counts in `message_delta`). The framing varies as the standard
//! allows: line endings, a byte order mark, comments, `id`/`retry` lines,
//! JSON split over several `data:` lines, and a stream cut mid-event.

use std::ops::Range;

use aiflags_sidecar::usage::Usage;

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
    /// The last event was cut before its end.
    pub cut: bool,
}

/// What an event does to a reader.
enum Effect {
    None,
    Usage(Usage),
    Done,
    DoneWithUsage(Option<Usage>),
    Error,
    /// Anthropic counts: input, cache read, cache creation, output; `None`
    /// where the event leaves one out.
    Anthropic([Option<u64>; 4]),
}

/// An event before framing.
struct Spec {
    kind: Option<&'static str>,
    /// JSON pieces that may each go on a `data:` line of its own; empty for a
    /// block without data.
    data: Vec<String>,
    verdict: Verdict,
    effect: Effect,
}

const TEXTS: [&str; 8] = [
    "Hello",
    "",
    "\"usage\": {\"prompt_tokens\": 1}, \"choices\": []",
    "data: [DONE]\n\n",
    "Grüße, 世界 🎉",
    "line\r\nbreak\rand\u{2028}more",
    "\u{feff}event: error",
    "\\u0075sage",
];

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
            let mut line = if src.flag() { b"data: ".to_vec() } else { b"data:".to_vec() };
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
        cut,
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

fn text(src: &mut Source<'_>) -> String {
    let text = match src.below(TEXTS.len() + 1) {
        i if i < TEXTS.len() => TEXTS[i].to_string(),
        _ => String::from_utf8_lossy(src.bytes(24)).into_owned(),
    };
    serde_json::Value::from(text).to_string()
}

fn spec(kind: Option<&'static str>, data: &[&str], verdict: Verdict, effect: Effect) -> Spec {
    Spec {
        kind,
        data: data.iter().map(|s| s.to_string()).collect(),
        verdict,
        effect,
    }
}

fn event(family: Family, src: &mut Source<'_>) -> Spec {
    let choice = src.below(10);
    // Framing-only blocks, the same in every family.
    match choice {
        8 => return spec(None, &[], Verdict::Forward, Effect::None),
        9 => return spec(None, &["not json"], Verdict::Forward, Effect::None),
        _ => {}
    }
    match family {
        Family::OpenAi => openai(choice, src),
        Family::Responses => responses(choice, src),
        Family::Anthropic => anthropic(choice, src),
    }
}

fn openai_usage(src: &mut Source<'_>) -> (String, Usage) {
    let (input, output) = (src.count(), src.count());
    let cached = src.flag().then(|| src.count());
    let reasoning = src.flag().then(|| src.count());
    let mut json = format!(
        r#"{{"prompt_tokens":{input},"completion_tokens":{output},"total_tokens":{}"#,
        input.saturating_add(output)
    );
    if let Some(cached) = cached {
        json += &format!(r#","prompt_tokens_details":{{"cached_tokens":{cached}}}"#);
    }
    if let Some(reasoning) = reasoning {
        json += &format!(r#","completion_tokens_details":{{"reasoning_tokens":{reasoning}}}"#);
    }
    json.push('}');
    let usage = Usage {
        input_tokens: input,
        output_tokens: output,
        cached_input_tokens: cached.unwrap_or(0),
        reasoning_tokens: reasoning.unwrap_or(0),
    };
    (json, usage)
}

fn openai(choice: usize, src: &mut Source<'_>) -> Spec {
    let head = r#"{"id":"chatcmpl-1","object":"chat.completion.chunk","created":1"#;
    match choice {
        0 | 1 => {
            let content = format!(
                r#","choices":[{{"index":0,"delta":{{"content":{}}},"finish_reason":null}}]"#,
                text(src)
            );
            let usage = if src.flag() { r#","usage":null"# } else { "" };
            spec(None, &[head, &content, usage, "}"], Verdict::Forward, Effect::None)
        }
        2 | 3 => {
            let (usage, counts) = openai_usage(src);
            let usage = format!(r#","usage":{usage}"#);
            let pieces = if src.flag() {
                [head, r#","choices":[]"#, &usage, "}"]
            } else {
                [head, &usage, r#","choices":[ ]"#, "}"]
            };
            spec(None, &pieces, Verdict::Hide, Effect::Usage(counts))
        }
        4 => {
            // Escaped member names: no upstream writes them, and the
            // definition does not say whether such a chunk is hidden.
            let (usage, counts) = openai_usage(src);
            let usage = format!(r#","\u0075sage":{usage}"#);
            spec(None, &[head, r#","choices":[]"#, &usage, "}"], Verdict::Either, Effect::Usage(counts))
        }
        5 => {
            // Usage on a chunk that carries choices too: read, not hidden.
            let (usage, counts) = openai_usage(src);
            let content = format!(r#","choices":[{{"index":0,"delta":{{"content":{}}}}}]"#, text(src));
            let usage = format!(r#","usage":{usage}"#);
            spec(None, &[head, &content, &usage, "}"], Verdict::Forward, Effect::Usage(counts))
        }
        6 => {
            // No choices and no usage: not the usage chunk.
            let usage = if src.flag() { r#","usage":null"# } else { "" };
            spec(None, &[head, r#","choices":[]"#, usage, "}"], Verdict::Forward, Effect::None)
        }
        _ if src.flag() => spec(None, &["[DONE]"], Verdict::Forward, Effect::Done),
        _ => spec(
            None,
            &[r#"{"error":{"message":"The server is overloaded","type":"server_error"}"#, "}"],
            Verdict::Forward,
            Effect::Error,
        ),
    }
}

fn responses(choice: usize, src: &mut Source<'_>) -> Spec {
    match choice {
        0 => spec(
            Some("response.created"),
            &[r#"{"type":"response.created""#, r#","response":{"id":"resp_1","status":"in_progress","usage":null}"#, "}"],
            Verdict::Forward,
            Effect::None,
        ),
        1..=3 => {
            let delta = format!(r#","delta":{}"#, text(src));
            spec(
                Some("response.output_text.delta"),
                &[r#"{"type":"response.output_text.delta""#, &delta, "}"],
                Verdict::Forward,
                Effect::None,
            )
        }
        4..=6 => {
            let kind = ["response.completed", "response.incomplete", "response.failed"][choice - 4];
            let (input, output) = (src.count(), src.count());
            let cached = src.flag().then(|| src.count());
            let reasoning = src.flag().then(|| src.count());
            let mut usage = format!(r#"{{"input_tokens":{input},"output_tokens":{output}"#);
            if let Some(cached) = cached {
                usage += &format!(r#","input_tokens_details":{{"cached_tokens":{cached}}}"#);
            }
            if let Some(reasoning) = reasoning {
                usage += &format!(r#","output_tokens_details":{{"reasoning_tokens":{reasoning}}}"#);
            }
            usage.push('}');
            let with_usage = src.below(4) != 0;
            let response = if with_usage {
                format!(r#","response":{{"id":"resp_1","status":"done","usage":{usage}}}"#)
            } else {
                r#","response":{"id":"resp_1","usage":null}"#.to_string()
            };
            let counts = with_usage.then_some(Usage {
                input_tokens: input,
                output_tokens: output,
                cached_input_tokens: cached.unwrap_or(0),
                reasoning_tokens: reasoning.unwrap_or(0),
            });
            let head = format!(r#"{{"type":"{kind}""#);
            Spec {
                kind: Some(kind),
                data: vec![head, response, "}".into()],
                verdict: Verdict::Forward,
                effect: Effect::DoneWithUsage(counts),
            }
        }
        _ => spec(
            Some("error"),
            &[r#"{"type":"error","code":"server_error""#, r#","message":"The server had an error"}"#],
            Verdict::Forward,
            Effect::Error,
        ),
    }
}

fn anthropic(choice: usize, src: &mut Source<'_>) -> Spec {
    match choice {
        0 | 1 => {
            let input = src.count();
            let read = src.flag().then(|| src.count());
            let created = src.flag().then(|| src.count());
            let output = src.count();
            let mut usage = format!(r#"{{"input_tokens":{input}"#);
            if let Some(read) = read {
                usage += &format!(r#","cache_read_input_tokens":{read}"#);
            }
            if let Some(created) = created {
                usage += &format!(r#","cache_creation_input_tokens":{created}"#);
            }
            usage += &format!(r#","output_tokens":{output}}}"#);
            let message = format!(r#","message":{{"id":"msg_1","type":"message","role":"assistant","content":[],"usage":{usage}}}"#);
            Spec {
                kind: Some("message_start"),
                data: vec![r#"{"type":"message_start""#.into(), message, "}".into()],
                verdict: Verdict::Forward,
                effect: Effect::Anthropic([Some(input), read, created, Some(output)]),
            }
        }
        2 | 3 => {
            let delta = format!(r#","delta":{{"type":"text_delta","text":{}}}"#, text(src));
            spec(
                Some("content_block_delta"),
                &[r#"{"type":"content_block_delta","index":0"#, &delta, "}"],
                Verdict::Forward,
                Effect::None,
            )
        }
        4 => {
            let output = src.count();
            let input = src.flag().then(|| src.count());
            let mut usage = format!(r#","usage":{{"output_tokens":{output}"#);
            if let Some(input) = input {
                usage += &format!(r#","input_tokens":{input}"#);
            }
            usage.push('}');
            Spec {
                kind: Some("message_delta"),
                data: vec![
                    r#"{"type":"message_delta","delta":{"stop_reason":"end_turn"}"#.into(),
                    usage,
                    "}".into(),
                ],
                verdict: Verdict::Forward,
                effect: Effect::Anthropic([input, None, None, Some(output)]),
            }
        }
        5 => spec(Some("message_stop"), &[r#"{"type":"message_stop"}"#], Verdict::Forward, Effect::Done),
        6 => spec(Some("ping"), &[r#"{"type": "ping"}"#], Verdict::Forward, Effect::None),
        _ => spec(
            Some("error"),
            &[r#"{"type":"error""#, r#","error":{"type":"overloaded_error","message":"Overloaded"}}"#],
            Verdict::Forward,
            Effect::Error,
        ),
    }
}
