//! The events of each family, before framing: their JSON (in pieces that may
//! each go on a `data:` line of their own), what a usage-hiding filter must
//! do with them, and what they tell a reader.

use aiflags_sidecar::Usage;

use super::Family;
use crate::Source;
use crate::sse::Verdict;

/// What an event does to a reader.
pub(super) enum Effect {
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
pub(super) struct Spec {
    pub(super) kind: Option<&'static str>,
    /// JSON pieces that may each go on a `data:` line of its own; empty for a
    /// block without data.
    pub(super) data: Vec<String>,
    pub(super) verdict: Verdict,
    pub(super) effect: Effect,
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

pub(super) fn event(family: Family, src: &mut Source<'_>) -> Spec {
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
            spec(
                None,
                &[head, &content, usage, "}"],
                Verdict::Forward,
                Effect::None,
            )
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
            spec(
                None,
                &[head, r#","choices":[]"#, &usage, "}"],
                Verdict::Either,
                Effect::Usage(counts),
            )
        }
        5 => {
            // Usage on a chunk that carries choices too: read, not hidden.
            let (usage, counts) = openai_usage(src);
            let content = format!(
                r#","choices":[{{"index":0,"delta":{{"content":{}}}}}]"#,
                text(src)
            );
            let usage = format!(r#","usage":{usage}"#);
            spec(
                None,
                &[head, &content, &usage, "}"],
                Verdict::Forward,
                Effect::Usage(counts),
            )
        }
        6 => {
            // No choices and no usage: not the usage chunk.
            let usage = if src.flag() { r#","usage":null"# } else { "" };
            spec(
                None,
                &[head, r#","choices":[]"#, usage, "}"],
                Verdict::Forward,
                Effect::None,
            )
        }
        _ if src.flag() => spec(None, &["[DONE]"], Verdict::Forward, Effect::Done),
        _ => spec(
            None,
            &[
                r#"{"error":{"message":"The server is overloaded","type":"server_error"}"#,
                "}",
            ],
            Verdict::Forward,
            Effect::Error,
        ),
    }
}

fn responses(choice: usize, src: &mut Source<'_>) -> Spec {
    match choice {
        0 => spec(
            Some("response.created"),
            &[
                r#"{"type":"response.created""#,
                r#","response":{"id":"resp_1","status":"in_progress","usage":null}"#,
                "}",
            ],
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
            let kind = [
                "response.completed",
                "response.incomplete",
                "response.failed",
            ][choice - 4];
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
            &[
                r#"{"type":"error","code":"server_error""#,
                r#","message":"The server had an error"}"#,
            ],
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
            let message = format!(
                r#","message":{{"id":"msg_1","type":"message","role":"assistant","content":[],"usage":{usage}}}"#
            );
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
        5 => spec(
            Some("message_stop"),
            &[r#"{"type":"message_stop"}"#],
            Verdict::Forward,
            Effect::Done,
        ),
        6 => spec(
            Some("ping"),
            &[r#"{"type": "ping"}"#],
            Verdict::Forward,
            Effect::None,
        ),
        _ => spec(
            Some("error"),
            &[
                r#"{"type":"error""#,
                r#","error":{"type":"overloaded_error","message":"Overloaded"}}"#,
            ],
            Verdict::Forward,
            Effect::Error,
        ),
    }
}
