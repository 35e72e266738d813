//! The answers of the property tests, written in each protocol's shape:
//! whole (a non-streamed body) and streamed (SSE events).

use aiflags_api::Operation;
use serde_json::{Map, Value, json};

use super::{Answer, Piece};

pub(super) fn with_noise(mut body: Value, noise: &Map<String, Value>) -> Value {
    if let Some(object) = body.as_object_mut() {
        for (key, value) in noise {
            object.insert(key.clone(), value.clone());
        }
    }
    body
}

fn joined(pieces: &[Piece], pick: fn(&Piece) -> Option<&String>) -> Option<String> {
    let found: Vec<&String> = pieces.iter().filter_map(pick).collect();
    (!found.is_empty()).then(|| found.into_iter().cloned().collect())
}

/// The answer as a non-streamed body.
pub(super) fn whole(a: &Answer) -> Value {
    let stop = if a.filtered { "content_filter" } else { "stop" };
    let body = match a.op {
        Operation::Chat => {
            let choices: Vec<Value> = a.choices.iter().enumerate().map(|(i, pieces)| {
                let mut message = json!({"role": "assistant",
                    "content": joined(pieces, |p| match p { Piece::Text(t) => Some(t), _ => None }),
                    "refusal": joined(pieces, |p| match p { Piece::Refusal(t) => Some(t), _ => None })});
                if let Some(r) = joined(pieces, |p| match p { Piece::Reasoning(t) => Some(t), _ => None }) {
                    message["reasoning_content"] = json!(r);
                }
                let calls: Vec<Value> = pieces.iter().filter_map(|p| match p {
                    Piece::ToolCall { name, arguments } => Some(json!({"id": "call", "type": "function",
                        "function": {"name": name, "arguments": arguments}})),
                    _ => None,
                }).collect();
                if !calls.is_empty() {
                    message["tool_calls"] = json!(calls);
                }
                json!({"index": i, "message": message, "finish_reason": stop, "logprobs": null})
            }).collect();
            json!({"object": "chat.completion", "choices": choices})
        }
        Operation::Completions => {
            let choices: Vec<Value> = a
                .choices
                .iter()
                .enumerate()
                .map(|(i, pieces)| {
                    let text = joined(pieces, |p| match p {
                        Piece::Text(t) => Some(t),
                        _ => None,
                    });
                    json!({"index": i, "text": text.unwrap_or_default(), "finish_reason": stop})
                })
                .collect();
            json!({"object": "text_completion", "choices": choices})
        }
        Operation::Responses => {
            let output: Vec<Value> = a.choices.iter().flatten().map(response_item).collect();
            let (status, details) = if a.filtered {
                ("incomplete", json!({"reason": "content_filter"}))
            } else {
                ("completed", Value::Null)
            };
            json!({"object": "response", "status": status, "output": output, "incomplete_details": details})
        }
        Operation::Messages => {
            let content: Vec<Value> = a.choices.iter().flatten().map(message_block).collect();
            let stop = if a.filtered { "refusal" } else { "end_turn" };
            json!({"type": "message", "role": "assistant", "content": content, "stop_reason": stop})
        }
        Operation::Embeddings => Value::Null,
    };
    with_noise(body, &a.noise)
}

fn response_item(piece: &Piece) -> Value {
    match piece {
        Piece::Text(t) => {
            json!({"type": "message", "id": "m", "role": "assistant", "status": "completed",
            "content": [{"type": "output_text", "text": t, "annotations": []}]})
        }
        Piece::Refusal(t) => {
            json!({"type": "message", "id": "m", "role": "assistant", "status": "completed",
            "content": [{"type": "refusal", "refusal": t}]})
        }
        Piece::ToolCall { name, arguments } => json!({"type": "function_call", "id": "fc",
            "call_id": "call", "name": name, "arguments": arguments, "status": "completed"}),
        Piece::Reasoning(t) => json!({"type": "reasoning", "id": "rs",
            "summary": [{"type": "summary_text", "text": t}]}),
    }
}

fn message_block(piece: &Piece) -> Value {
    match piece {
        Piece::Text(t) | Piece::Refusal(t) => json!({"type": "text", "text": t}),
        Piece::ToolCall { name, .. } => {
            json!({"type": "tool_use", "id": "tu", "name": name, "input": {}})
        }
        Piece::Reasoning(t) => json!({"type": "thinking", "thinking": t, "signature": "sig"}),
    }
}

/// The answer as SSE events, each with whether it is the first to carry
/// something the client would see.
pub(super) fn streamed(a: &Answer) -> Vec<(String, bool)> {
    let mut events: Vec<(String, bool)> = Vec::new();
    let mut opened = false;
    let mut push = |event: String, opens: bool| {
        events.push((event, opens && !opened));
        opened |= opens;
    };
    let data = |v: Value| format!("data: {v}\n\n");
    let named = |kind: &str, mut v: Value| {
        v["type"] = json!(kind);
        format!("event: {kind}\ndata: {v}\n\n")
    };
    match a.op {
        Operation::Chat | Operation::Completions => {
            let chunk = |choice: Value| {
                data(json!({"object": "chat.completion.chunk", "choices": [choice]}))
            };
            for (i, pieces) in a.choices.iter().enumerate() {
                if a.op == Operation::Chat {
                    push(
                        chunk(
                            json!({"index": i, "delta": {"role": "assistant", "content": ""}, "finish_reason": null}),
                        ),
                        false,
                    );
                }
                for p in pieces {
                    let choice = match (a.op, p) {
                        (Operation::Completions, Piece::Text(t)) => {
                            json!({"index": i, "text": t, "finish_reason": null})
                        }
                        (_, Piece::Text(t)) => json!({"index": i, "delta": {"content": t}}),
                        (_, Piece::Refusal(t)) => json!({"index": i, "delta": {"refusal": t}}),
                        (_, Piece::Reasoning(t)) => {
                            json!({"index": i, "delta": {"reasoning_content": t}})
                        }
                        (_, Piece::ToolCall { name, arguments }) => {
                            let call = |f: Value| json!({"index": i, "delta": {"tool_calls": [{"index": 0, "function": f}]}});
                            push(chunk(call(json!({"name": name, "arguments": ""}))), true);
                            call(json!({"arguments": arguments}))
                        }
                    };
                    push(chunk(choice), p.opens());
                }
            }
            for i in 0..a.choices.len() {
                let stop = if a.filtered { "content_filter" } else { "stop" };
                let end = match a.op {
                    Operation::Completions => {
                        json!({"index": i, "text": "", "finish_reason": stop})
                    }
                    _ => json!({"index": i, "delta": {}, "finish_reason": stop}),
                };
                push(chunk(end), false);
            }
            push(
                data(json!({"choices": [], "usage": {"prompt_tokens": 1, "completion_tokens": 1}})),
                false,
            );
            push("data: [DONE]\n\n".into(), false);
        }
        Operation::Responses => {
            push(
                named(
                    "response.created",
                    json!({"response": {"status": "in_progress", "output": []}}),
                ),
                false,
            );
            let mut output = Vec::new();
            for (i, p) in a.choices.iter().flatten().enumerate() {
                let item = response_item(p);
                let (started, delta_kind, delta) = match p {
                    Piece::Text(t) => (
                        json!({"type": "message", "role": "assistant", "content": []}),
                        "response.output_text.delta",
                        t,
                    ),
                    Piece::Refusal(t) => (
                        json!({"type": "message", "role": "assistant", "content": []}),
                        "response.refusal.delta",
                        t,
                    ),
                    Piece::Reasoning(t) => (
                        json!({"type": "reasoning", "summary": []}),
                        "response.reasoning_summary_text.delta",
                        t,
                    ),
                    Piece::ToolCall { name, arguments } => (
                        json!({"type": "function_call", "name": name, "arguments": ""}),
                        "response.function_call_arguments.delta",
                        arguments,
                    ),
                };
                let tool = matches!(p, Piece::ToolCall { .. });
                push(
                    named(
                        "response.output_item.added",
                        json!({"output_index": i, "item": started}),
                    ),
                    tool,
                );
                push(
                    named(delta_kind, json!({"output_index": i, "delta": delta})),
                    p.opens(),
                );
                push(
                    named(
                        "response.output_item.done",
                        json!({"output_index": i, "item": item}),
                    ),
                    p.opens(),
                );
                output.push(item);
            }
            let end = if a.filtered {
                named(
                    "response.incomplete",
                    json!({"response": {"status": "incomplete", "output": output,
                    "incomplete_details": {"reason": "content_filter"}}}),
                )
            } else {
                named(
                    "response.completed",
                    json!({"response": {"status": "completed", "output": output}}),
                )
            };
            push(end, false);
        }
        Operation::Messages => {
            push(
                named(
                    "message_start",
                    json!({"message": {"role": "assistant", "content": []}}),
                ),
                false,
            );
            push(named("ping", json!({})), false);
            for (i, p) in a.choices.iter().flatten().enumerate() {
                let (start, delta) = match p {
                    Piece::Text(t) | Piece::Refusal(t) => (
                        json!({"type": "text", "text": ""}),
                        json!({"type": "text_delta", "text": t}),
                    ),
                    Piece::Reasoning(t) => (
                        json!({"type": "thinking", "thinking": ""}),
                        json!({"type": "thinking_delta", "thinking": t}),
                    ),
                    Piece::ToolCall { name, arguments } => (
                        json!({"type": "tool_use", "id": "tu", "name": name, "input": {}}),
                        json!({"type": "input_json_delta", "partial_json": arguments}),
                    ),
                };
                let tool = matches!(p, Piece::ToolCall { .. });
                push(
                    named(
                        "content_block_start",
                        json!({"index": i, "content_block": start}),
                    ),
                    tool,
                );
                push(
                    named("content_block_delta", json!({"index": i, "delta": delta})),
                    p.opens(),
                );
                if matches!(p, Piece::Reasoning(_)) {
                    push(
                        named(
                            "content_block_delta",
                            json!({"index": i, "delta": {"type": "signature_delta", "signature": "sig"}}),
                        ),
                        false,
                    );
                }
                push(named("content_block_stop", json!({"index": i})), false);
            }
            let stop = if a.filtered { "refusal" } else { "end_turn" };
            push(
                named(
                    "message_delta",
                    json!({"delta": {"stop_reason": stop}, "usage": {"output_tokens": 1}}),
                ),
                false,
            );
            push(named("message_stop", json!({})), false);
        }
        Operation::Embeddings => {}
    }
    events
}
