//! Property tests: arbitrary answers, written whole and streamed in every
//! protocol's shape, get the verdict an independent oracle gives the answer
//! itself — and a stream is "opened" exactly from its first event that
//! carries something the client would see.

use aiflags_api::Operation;
use bytes::Bytes;
use proptest::prelude::*;
use serde_json::{Map, Value, json};

use super::super::{Verdict, read_answer};
use crate::sse::StreamFilter;

/// One part of an answer.
#[derive(Clone, Debug)]
enum Piece {
    /// Possibly empty: an empty text is no content.
    Text(String),
    ToolCall {
        name: String,
        arguments: String,
    },
    Refusal(String),
    Reasoning(String),
}

impl Piece {
    fn is_content(&self) -> bool {
        match self {
            Piece::Text(t) | Piece::Refusal(t) => !t.is_empty(),
            Piece::ToolCall { .. } => true,
            Piece::Reasoning(_) => false,
        }
    }

    fn opens(&self) -> bool {
        match self {
            Piece::Reasoning(t) => !t.is_empty(),
            other => other.is_content(),
        }
    }
}

#[derive(Clone, Debug)]
struct Answer {
    op: Operation,
    /// Chat and completions may have several choices; others have one.
    choices: Vec<Vec<Piece>>,
    filtered: bool,
    /// Fields the judge must ignore, at the top level.
    noise: Map<String, Value>,
}

impl Answer {
    /// What the answer is, by definition.
    fn oracle(&self) -> Verdict {
        if self.filtered {
            Verdict::ContentFilter
        } else if self.choices.iter().flatten().any(Piece::is_content) {
            Verdict::Content
        } else {
            Verdict::Empty
        }
    }
}

fn text() -> impl Strategy<Value = String> {
    prop_oneof![Just(String::new()), "[a-zé 🎉\"\\\\\n]{1,12}"]
}

fn piece(op: Operation) -> BoxedStrategy<Piece> {
    let text_piece = text().prop_map(Piece::Text);
    let tool = ("[a-z_]{1,8}", "\\{(\"[a-z]{1,3}\": [0-9]{1,3})?\\}")
        .prop_map(|(name, arguments)| Piece::ToolCall { name, arguments });
    let refusal = text().prop_map(Piece::Refusal);
    let reasoning = text().prop_map(Piece::Reasoning);
    match op {
        Operation::Completions => text_piece.boxed(),
        Operation::Messages => prop_oneof![3 => text_piece, 1 => tool, 1 => reasoning].boxed(),
        _ => prop_oneof![3 => text_piece, 1 => tool, 1 => refusal, 1 => reasoning].boxed(),
    }
}

fn noise() -> impl Strategy<Value = Map<String, Value>> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i32>().prop_map(Value::from),
        "[a-z ]{0,8}".prop_map(Value::from),
    ];
    let value = leaf.prop_recursive(2, 8, 3, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..3).prop_map(Value::from),
            prop::collection::btree_map("content|text|choices|delta|x", inner, 0..3)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    });
    let keys = "id|object|model|created|metadata|system_fingerprint|service_tier|x_extra";
    prop::collection::btree_map(keys, value, 0..4).prop_map(|m| m.into_iter().collect())
}

fn answer(op: Operation) -> impl Strategy<Value = Answer> {
    let choices = if matches!(op, Operation::Chat | Operation::Completions) {
        1..3usize
    } else {
        1..2usize
    };
    (
        prop::collection::vec(prop::collection::vec(piece(op), 0..4), choices),
        any::<bool>(),
        noise(),
    )
        .prop_map(move |(choices, filtered, noise)| Answer {
            op,
            choices,
            filtered,
            noise,
        })
}

fn any_answer() -> impl Strategy<Value = Answer> {
    prop_oneof![
        answer(Operation::Chat),
        answer(Operation::Completions),
        answer(Operation::Responses),
        answer(Operation::Messages),
    ]
}

fn with_noise(mut body: Value, noise: &Map<String, Value>) -> Value {
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
fn whole(a: &Answer) -> Value {
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
fn streamed(a: &Answer) -> Vec<(String, bool)> {
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

/// Bytes cut at the given fractions of their length.
fn split(bytes: &[u8], cuts: &[f64]) -> Vec<Bytes> {
    let mut at: Vec<usize> = cuts
        .iter()
        .map(|f| (f * bytes.len() as f64) as usize)
        .collect();
    at.sort_unstable();
    let mut out = Vec::new();
    let mut start = 0;
    for end in at.into_iter().chain([bytes.len()]) {
        let end = end.clamp(start, bytes.len());
        out.push(Bytes::copy_from_slice(&bytes[start..end]));
        start = end;
    }
    out
}

proptest! {
    #[test]
    fn whole_answers_get_the_oracles_verdict(a in any_answer()) {
        let body = whole(&a).to_string();
        prop_assert_eq!(read_answer(a.op, body.as_bytes()).verdict, Some(a.oracle()), "{}", body);
    }

    #[test]
    fn embeddings_are_empty_without_a_vector(
        vectors in prop::collection::vec(prop_oneof![
            prop::collection::vec(-1.0f32..1.0, 0..4).prop_map(Value::from),
            "([A-Za-z0-9+/]{4}){0,3}".prop_map(Value::from),
        ], 0..4),
        noise in noise(),
    ) {
        let has_vector = vectors.iter().any(|v| match v {
            Value::Array(a) => !a.is_empty(),
            Value::String(s) => !s.is_empty(),
            _ => false,
        });
        let data: Vec<Value> = vectors.into_iter().enumerate()
            .map(|(i, e)| json!({"object": "embedding", "index": i, "embedding": e})).collect();
        let body = with_noise(json!({"object": "list", "data": data}), &noise).to_string();
        let expected = if has_vector { Verdict::Content } else { Verdict::Empty };
        prop_assert_eq!(read_answer(Operation::Embeddings, body.as_bytes()).verdict, Some(expected));
    }

    #[test]
    fn streamed_answers_get_the_same_verdict_wherever_the_chunks_break(
        a in any_answer(),
        cuts in prop::collection::vec(0.0f64..1.0, 0..6),
        strip in any::<bool>(),
    ) {
        let events = streamed(&a);
        let bytes: String = events.iter().map(|(e, _)| e.as_str()).collect();
        let mut filter = StreamFilter::new(a.op, strip);
        for chunk in split(bytes.as_bytes(), &cuts) {
            filter.push(chunk);
        }
        filter.finish();
        prop_assert!(filter.saw_done());
        prop_assert_eq!(filter.judge().verdict(true), Some(a.oracle()));
        let opens = a.choices.iter().flatten().any(Piece::opens);
        prop_assert_eq!(filter.judge().opened(), opens);
    }

    #[test]
    fn a_stream_opens_at_its_first_event_that_shows_something(a in any_answer()) {
        let mut filter = StreamFilter::new(a.op, false);
        for (event, first_to_show) in streamed(&a) {
            let before = filter.judge().opened();
            filter.push(Bytes::from(event));
            if first_to_show {
                prop_assert!(!before && filter.judge().opened());
            } else {
                prop_assert_eq!(before, filter.judge().opened());
            }
        }
    }

    #[test]
    fn any_bytes_are_read_without_panicking(
        body in prop::collection::vec(any::<u8>(), 0..256),
        op in prop::sample::select(Operation::ALL.to_vec()),
    ) {
        let _ = read_answer(op, &body);
    }
}
