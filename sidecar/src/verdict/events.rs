//! One stream event's part of the answer. Events arrive parsed (the stream
//! filter reads each one for usage anyway); each says whether it carried
//! content, reasoning, or the content filter's stop.
//!
//! The rules are the whole answer's ([`super::whole`]) applied to deltas: a
//! stream and the same answer sent whole get the same verdict.

use aiflags_api::Operation;
use serde_json::Value;

use super::{Facts, blank};

/// What `data` (an event of type `kind`) says about the answer.
pub(crate) fn read_event(op: Operation, kind: Option<&str>, data: &Value) -> Facts {
    match op {
        Operation::Chat | Operation::Completions => chat_chunk(op, data),
        Operation::Responses => responses_event(kind, data),
        Operation::Messages => messages_event(kind, data),
        // Embeddings do not stream.
        Operation::Embeddings => Facts::default(),
    }
}

fn text_is(value: Option<&Value>, text: &str) -> bool {
    value.and_then(Value::as_str) == Some(text)
}

fn chat_chunk(op: Operation, data: &Value) -> Facts {
    let mut facts = Facts::default();
    let choices = data.get("choices").and_then(Value::as_array);
    for choice in choices.into_iter().flatten() {
        if op == Operation::Completions {
            facts.content |= !blank(choice.get("text"));
        } else if let Some(delta) = choice.get("delta") {
            facts.content |= ["content", "tool_calls", "function_call", "refusal", "audio"]
                .iter()
                .any(|field| !blank(delta.get(*field)));
            // DeepSeek's and OpenRouter's reasoning deltas.
            facts.reasoning |= ["reasoning_content", "reasoning"]
                .iter()
                .any(|field| !blank(delta.get(*field)));
        }
        facts.filtered |= text_is(choice.get("finish_reason"), "content_filter");
    }
    facts
}

fn responses_event(kind: Option<&str>, data: &Value) -> Facts {
    let mut facts = Facts::default();
    let Some(kind) = kind else {
        return facts;
    };
    if kind.ends_with(".delta") {
        // `response.output_text.delta`, `.refusal.delta`,
        // `.function_call_arguments.delta`, … and the reasoning ones.
        let carried = !blank(data.get("delta"));
        if kind.contains("reasoning") {
            facts.reasoning = carried;
        } else {
            facts.content = carried;
        }
        return facts;
    }
    match kind {
        "response.output_item.added" | "response.output_item.done" => {
            if let Some(item) = data.get("item") {
                facts.add(output_item(item));
            }
        }
        "response.completed" | "response.incomplete" => {
            let response = data.get("response");
            let items = response
                .and_then(|r| r.get("output"))
                .and_then(Value::as_array);
            for item in items.into_iter().flatten() {
                facts.add(output_item(item));
            }
            let reason = response.and_then(|r| r.pointer("/incomplete_details/reason"));
            facts.filtered = text_is(reason, "content_filter");
        }
        _ => {}
    }
    facts
}

/// A responses output item, as [`super::whole`] reads one.
fn output_item(item: &Value) -> Facts {
    let mut facts = Facts::default();
    match item.get("type").and_then(Value::as_str) {
        Some("message") => {
            let parts = item.get("content").and_then(Value::as_array);
            facts.content = parts
                .into_iter()
                .flatten()
                .any(|p| !blank(p.get("text")) || !blank(p.get("refusal")));
        }
        Some("reasoning") => {
            // Its summary (or, from some servers, its content) once written.
            let parts = ["summary", "content"]
                .into_iter()
                .filter_map(|field| item.get(field).and_then(Value::as_array));
            facts.reasoning = parts.flatten().any(|p| !blank(p.get("text")));
        }
        _ => facts.content = true,
    }
    facts
}

fn messages_event(kind: Option<&str>, data: &Value) -> Facts {
    let mut facts = Facts::default();
    match kind {
        Some("message_start") => {
            let blocks = data.pointer("/message/content").and_then(Value::as_array);
            for block in blocks.into_iter().flatten() {
                facts.add(content_block(block));
            }
        }
        Some("content_block_start") => {
            if let Some(block) = data.get("content_block") {
                facts.add(content_block(block));
            }
        }
        Some("content_block_delta") => {
            let delta = data.get("delta");
            match delta.and_then(|d| d.get("type")).and_then(Value::as_str) {
                Some("thinking_delta") => {
                    facts.reasoning = !blank(delta.and_then(|d| d.get("thinking")));
                }
                Some("signature_delta") => {}
                // text_delta, input_json_delta, citations_delta, and what
                // comes next: content if it carries anything.
                _ => {
                    let fields = delta.and_then(Value::as_object);
                    facts.content = fields
                        .into_iter()
                        .flatten()
                        .any(|(name, value)| name != "type" && !blank(Some(value)));
                }
            }
        }
        Some("message_delta") => {
            facts.filtered = text_is(data.pointer("/delta/stop_reason"), "refusal");
        }
        _ => {}
    }
    facts
}

/// An Anthropic content block, as [`super::whole`] reads one.
fn content_block(block: &Value) -> Facts {
    let mut facts = Facts::default();
    match block.get("type").and_then(Value::as_str) {
        Some("text") => facts.content = !blank(block.get("text")),
        Some("thinking" | "redacted_thinking") => {
            facts.reasoning = !blank(block.get("thinking")) || !blank(block.get("data"));
        }
        _ => facts.content = true,
    }
    facts
}
