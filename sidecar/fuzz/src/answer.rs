//! What a whole (non-streamed) answer says, read from a parsed
//! `serde_json::Value` by the providers' documented shapes — chat and
//! legacy completions' `choices`, the Responses API's `output` items and
//! `incomplete_details`, embeddings' `data`, Anthropic's `content` blocks and
//! `stop_reason` — and the usage each reports. Written from the APIs'
//! reference, not from the sidecar's reader.

use serde_json::{Map, Value};

/// The operation an answer belongs to (`aiflags_api::Operation`'s five).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Chat,
    Completions,
    Responses,
    Embeddings,
    Messages,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Judged {
    Content,
    Empty,
    ContentFilter,
}

/// Token counts: input including cached, output including reasoning.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tokens {
    pub input: u64,
    pub output: u64,
    pub cached: u64,
    pub reasoning: u64,
}

/// A value that carries nothing: absent, `null`, `false`, `""`, `[]`, `{}`.
fn blank(value: Option<&Value>) -> bool {
    match value {
        None | Some(Value::Null | Value::Bool(false)) => true,
        Some(Value::String(s)) => s.is_empty(),
        Some(Value::Array(a)) => a.is_empty(),
        Some(Value::Object(o)) => o.is_empty(),
        Some(Value::Bool(true) | Value::Number(_)) => false,
    }
}

/// A list field: absent or `null` is empty; it must otherwise be an array
/// of objects, or the answer is not of the documented shape (`None`).
fn list(value: Option<&Value>) -> Option<Vec<&Map<String, Value>>> {
    match value {
        None | Some(Value::Null) => Some(Vec::new()),
        Some(Value::Array(items)) => items.iter().map(Value::as_object).collect(),
        Some(_) => None,
    }
}

fn is(value: Option<&Value>, text: &str) -> bool {
    value.and_then(Value::as_str) == Some(text)
}

/// The verdict on an answer; `None` when it is not of the documented shape.
pub fn verdict(op: Op, answer: &Value) -> Option<Judged> {
    let answer = answer.as_object()?;
    let (mut content, mut filtered) = (false, false);
    match op {
        Op::Chat | Op::Completions => {
            for choice in list(answer.get("choices"))? {
                // A message is an object or null, even in a completion.
                let message = match choice.get("message") {
                    None | Some(Value::Null) => None,
                    Some(Value::Object(m)) => Some(m),
                    Some(_) => return None,
                };
                content |= if op == Op::Completions {
                    !blank(choice.get("text"))
                } else {
                    message.is_some_and(|m| {
                        // Text, a tool or function call, a refusal, audio.
                        ["content", "tool_calls", "function_call", "refusal", "audio"]
                            .iter()
                            .any(|field| !blank(m.get(*field)))
                    })
                };
                filtered |= is(choice.get("finish_reason"), "content_filter");
            }
        }
        Op::Responses => {
            for item in list(answer.get("output"))? {
                match item.get("type").and_then(Value::as_str) {
                    Some("message") => {
                        for part in list(item.get("content"))? {
                            content |= !blank(part.get("text")) || !blank(part.get("refusal"));
                        }
                    }
                    // Reasoning is not an answer.
                    Some("reasoning") => {}
                    // A tool call of any kind.
                    _ => content = true,
                }
            }
            filtered = match answer.get("incomplete_details") {
                None | Some(Value::Null) => false,
                Some(Value::Object(details)) => is(details.get("reason"), "content_filter"),
                Some(_) => return None,
            };
        }
        Op::Embeddings => {
            for item in list(answer.get("data"))? {
                content |= !blank(item.get("embedding"));
            }
        }
        Op::Messages => {
            for block in list(answer.get("content"))? {
                match block.get("type").and_then(Value::as_str) {
                    Some("text") => content |= !blank(block.get("text")),
                    Some("thinking" | "redacted_thinking") => {}
                    _ => content = true,
                }
            }
            filtered = is(answer.get("stop_reason"), "refusal");
        }
    }
    Some(if filtered {
        Judged::ContentFilter
    } else if content {
        Judged::Content
    } else {
        Judged::Empty
    })
}

/// A count: a whole number that fits a `u64`, else zero.
fn count(object: &Value, path: &[&str]) -> u64 {
    let mut value = object;
    for key in path {
        match value.get(key) {
            Some(inner) => value = inner,
            None => return 0,
        }
    }
    value.as_u64().unwrap_or(0)
}

/// The usage an answer reports, `None` when its `usage` is not an object.
pub fn usage(op: Op, answer: &Value) -> Option<Tokens> {
    let usage = answer.get("usage").filter(|u| u.is_object())?;
    Some(match op {
        Op::Chat | Op::Completions | Op::Embeddings => Tokens {
            input: count(usage, &["prompt_tokens"]),
            output: count(usage, &["completion_tokens"]),
            cached: count(usage, &["prompt_tokens_details", "cached_tokens"]),
            reasoning: count(usage, &["completion_tokens_details", "reasoning_tokens"]),
        },
        Op::Responses => Tokens {
            input: count(usage, &["input_tokens"]),
            output: count(usage, &["output_tokens"]),
            cached: count(usage, &["input_tokens_details", "cached_tokens"]),
            reasoning: count(usage, &["output_tokens_details", "reasoning_tokens"]),
        },
        // Anthropic's input excludes cache reads and writes.
        Op::Messages => {
            let read = count(usage, &["cache_read_input_tokens"]);
            Tokens {
                input: count(usage, &["input_tokens"])
                    .saturating_add(read)
                    .saturating_add(count(usage, &["cache_creation_input_tokens"])),
                output: count(usage, &["output_tokens"]),
                cached: read,
                reasoning: 0,
            }
        }
    })
}

/// The oracle against fixed answers.
pub fn self_check() {
    use serde_json::json;
    let chat = |message: Value, finish: &str| {
        json!({"choices": [{"message": message, "finish_reason": finish}],
               "usage": {"prompt_tokens": 5, "completion_tokens": 2,
                         "prompt_tokens_details": {"cached_tokens": 1}}})
    };
    let cases = [
        (
            Op::Chat,
            chat(json!({"content": "hi"}), "stop"),
            Some(Judged::Content),
        ),
        (
            Op::Chat,
            chat(json!({"content": ""}), "stop"),
            Some(Judged::Empty),
        ),
        (
            Op::Chat,
            chat(json!({"content": "x"}), "content_filter"),
            Some(Judged::ContentFilter),
        ),
        (Op::Chat, json!({"choices": [1]}), None),
        (Op::Chat, json!([]), None),
        (
            Op::Responses,
            json!({"output": [{"type": "reasoning"}]}),
            Some(Judged::Empty),
        ),
        (
            Op::Responses,
            json!({"output": [{"type": "function_call"}]}),
            Some(Judged::Content),
        ),
        (
            Op::Embeddings,
            json!({"data": [{"embedding": [0.1]}]}),
            Some(Judged::Content),
        ),
        (
            Op::Messages,
            json!({"content": [{"type": "text", "text": ""}], "stop_reason": "refusal"}),
            Some(Judged::ContentFilter),
        ),
    ];
    for (op, answer, expected) in cases {
        assert_eq!(verdict(op, &answer), expected, "answer oracle: {answer}");
    }
    let tokens = usage(Op::Chat, &chat(json!({}), "stop"));
    assert_eq!(
        tokens,
        Some(Tokens {
            input: 5,
            output: 2,
            cached: 1,
            reasoning: 0
        })
    );
    let anthropic =
        json!({"usage": {"input_tokens": 3, "cache_read_input_tokens": 4, "output_tokens": 1}});
    assert_eq!(
        usage(Op::Messages, &anthropic),
        Some(Tokens {
            input: 7,
            output: 1,
            cached: 4,
            reasoning: 0
        })
    );
}
