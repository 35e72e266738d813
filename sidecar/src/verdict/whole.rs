//! A whole (non-streamed) answer, judged straight from its bytes.
//!
//! Each protocol's few fields are deserialized borrowed: values the verdict
//! only needs to see as present or blank stay raw JSON slices of the body
//! (`&RawValue`), everything else is skipped by the parser without being
//! built. So judging costs one pass over bytes the proxy already holds, and
//! the same pass reads the usage.

use aiflags_api::Operation;
use serde::Deserialize;
use serde_json::value::RawValue;

use super::{Facts, Verdict, blank_raw};
use crate::usage::{Usage, usage_from_bytes, usage_from_raw};

/// What a whole answer says.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Answer {
    /// `None` when the body is not an answer the proxy can read (not JSON,
    /// not an object, fields of unexpected types): it is not judged.
    pub verdict: Option<Verdict>,
    pub usage: Option<Usage>,
}

/// Judges a whole answer and reads its usage, in one pass over `body`.
pub(crate) fn read_answer(op: Operation, body: &[u8]) -> Answer {
    let read = match op {
        Operation::Chat | Operation::Completions => chat(op, body),
        Operation::Responses => responses(body),
        Operation::Embeddings => embeddings(body),
        Operation::Messages => messages(body),
    };
    match read {
        Some((facts, usage)) => Answer {
            verdict: Some(facts.verdict()),
            usage: usage.and_then(|raw| usage_from_raw(op, raw.get())),
        },
        // Not an answer's shape: its usage may still be readable.
        None => Answer {
            verdict: None,
            usage: usage_from_bytes(op, body),
        },
    }
}

type Raw<'a> = Option<&'a RawValue>;

fn carries(raw: Raw<'_>) -> bool {
    !blank_raw(raw.map(RawValue::get))
}

fn is(raw: Raw<'_>, text: &str) -> bool {
    raw.is_some_and(|r| {
        r.get()
            .trim()
            .strip_prefix('"')
            .and_then(|s| s.strip_suffix('"'))
            == Some(text)
    })
}

/// Chat completions and legacy completions: `choices`.
#[derive(Deserialize)]
struct Choices<'a> {
    #[serde(borrow, default)]
    choices: Option<Vec<Choice<'a>>>,
    #[serde(borrow, default)]
    usage: Raw<'a>,
}

#[derive(Deserialize)]
struct Choice<'a> {
    #[serde(borrow, default)]
    message: Option<Message<'a>>,
    /// Completions.
    #[serde(borrow, default)]
    text: Raw<'a>,
    #[serde(borrow, default)]
    finish_reason: Raw<'a>,
}

#[derive(Deserialize)]
struct Message<'a> {
    #[serde(borrow, default)]
    content: Raw<'a>,
    #[serde(borrow, default)]
    tool_calls: Raw<'a>,
    #[serde(borrow, default)]
    function_call: Raw<'a>,
    #[serde(borrow, default)]
    refusal: Raw<'a>,
    #[serde(borrow, default)]
    audio: Raw<'a>,
}

fn chat(op: Operation, body: &[u8]) -> Option<(Facts, Raw<'_>)> {
    let answer: Choices<'_> = serde_json::from_slice(body).ok()?;
    let mut facts = Facts::default();
    for choice in answer.choices.iter().flatten() {
        facts.content |= match (op, &choice.message) {
            (Operation::Completions, _) => carries(choice.text),
            (_, Some(m)) => [m.content, m.tool_calls, m.function_call, m.refusal, m.audio]
                .into_iter()
                .any(carries),
            (_, None) => false,
        };
        facts.filtered |= is(choice.finish_reason, "content_filter");
    }
    Some((facts, answer.usage))
}

/// Responses: `output` items and `incomplete_details`.
#[derive(Deserialize)]
struct Output<'a> {
    #[serde(borrow, default)]
    output: Option<Vec<Item<'a>>>,
    #[serde(borrow, default)]
    incomplete_details: Option<Incomplete<'a>>,
    #[serde(borrow, default)]
    usage: Raw<'a>,
}

#[derive(Deserialize)]
struct Item<'a> {
    #[serde(borrow, default, rename = "type")]
    kind: Raw<'a>,
    /// Kept raw: only a message's content is read further.
    #[serde(borrow, default)]
    content: Raw<'a>,
}

#[derive(Deserialize)]
struct Part<'a> {
    #[serde(borrow, default)]
    text: Raw<'a>,
    #[serde(borrow, default)]
    refusal: Raw<'a>,
}

#[derive(Deserialize)]
struct Incomplete<'a> {
    #[serde(borrow, default)]
    reason: Raw<'a>,
}

fn responses(body: &[u8]) -> Option<(Facts, Raw<'_>)> {
    let answer: Output<'_> = serde_json::from_slice(body).ok()?;
    let mut facts = Facts::default();
    for item in answer.output.iter().flatten() {
        if is(item.kind, "message") {
            let parts: Vec<Part<'_>> = match item.content {
                Some(raw) => serde_json::from_str(raw.get()).ok()?,
                None => Vec::new(),
            };
            facts.content |= parts.iter().any(|p| carries(p.text) || carries(p.refusal));
        } else if is(item.kind, "reasoning") {
            facts.reasoning = true;
        } else {
            // A tool call of any kind: function, custom, web search, …
            facts.content = true;
        }
    }
    facts.filtered = answer
        .incomplete_details
        .is_some_and(|d| is(d.reason, "content_filter"));
    Some((facts, answer.usage))
}

/// Embeddings: `data[].embedding`, an array of floats or a base64 string.
#[derive(Deserialize)]
struct Vectors<'a> {
    #[serde(borrow, default)]
    data: Option<Vec<Embedding<'a>>>,
    #[serde(borrow, default)]
    usage: Raw<'a>,
}

#[derive(Deserialize)]
struct Embedding<'a> {
    #[serde(borrow, default)]
    embedding: Raw<'a>,
}

fn embeddings(body: &[u8]) -> Option<(Facts, Raw<'_>)> {
    let answer: Vectors<'_> = serde_json::from_slice(body).ok()?;
    let content = answer.data.iter().flatten().any(|e| carries(e.embedding));
    let facts = Facts {
        content,
        ..Facts::default()
    };
    Some((facts, answer.usage))
}

/// Anthropic messages: `content` blocks and `stop_reason`.
#[derive(Deserialize)]
struct Blocks<'a> {
    #[serde(borrow, default)]
    content: Option<Vec<Block<'a>>>,
    #[serde(borrow, default)]
    stop_reason: Raw<'a>,
    #[serde(borrow, default)]
    usage: Raw<'a>,
}

#[derive(Deserialize)]
struct Block<'a> {
    #[serde(borrow, default, rename = "type")]
    kind: Raw<'a>,
    #[serde(borrow, default)]
    text: Raw<'a>,
}

fn messages(body: &[u8]) -> Option<(Facts, Raw<'_>)> {
    let answer: Blocks<'_> = serde_json::from_slice(body).ok()?;
    let mut facts = Facts::default();
    for block in answer.content.iter().flatten() {
        if is(block.kind, "text") {
            facts.content |= carries(block.text);
        } else if is(block.kind, "thinking") || is(block.kind, "redacted_thinking") {
            facts.reasoning = true;
        } else {
            // tool_use, server_tool_use, their results, …
            facts.content = true;
        }
    }
    facts.filtered = is(answer.stop_reason, "refusal");
    Some((facts, answer.usage))
}
