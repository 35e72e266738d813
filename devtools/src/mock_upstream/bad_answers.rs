//! Answers that are `200 OK` and still bad, in every protocol's shape, plain
//! and streamed — what a proxy that judges answers must catch:
//!
//! - `mock-empty`: no content. Chat: `content: ""`; completions: `text: ""`;
//!   responses: no output; messages: no content block; embeddings: no
//!   vectors. Streamed: the opening (role chunk, `response.created`,
//!   `message_start`), then the normal end with nothing in between.
//! - `mock-content-filter`: stopped by the provider's filter before any
//!   content. Chat and completions: `finish_reason: content_filter`;
//!   responses: `status: incomplete`, `incomplete_details.reason:
//!   content_filter`; messages: `stop_reason: refusal`. (Embeddings have no
//!   such answer: they answer normally.)
//! - `mock-content-then-filter`: the normal answer's content, then the
//!   filter's stop (plain: a partial answer with the filter's reason).
//! - `mock-slow-role-stream`: a normal answer whose stream sends its opening
//!   chunk, and every chunk after, [`SLOW_PACE`] apart: first token late,
//!   and a stream that is still going long after its first content.
//! - `mock-silent-megabytes` (chat streams): 2 MiB of role-only chunks, then
//!   `[DONE]`: an empty answer too long to hold back.

use std::sync::Arc;
use std::sync::atomic::AtomicI64;
use std::time::Duration;

use aiflags_api::Operation;
use bytes::Bytes;
use http::{Response, StatusCode};
use serde_json::{Value, json};

use super::replies::Reply;
use super::{PACE, json_response, sse};
use crate::serve::{Body as ProxyBody, BoxError};

/// Time before each chunk of `mock-slow-role-stream`.
pub(super) const SLOW_PACE: Duration = Duration::from_millis(250);

/// A bad (or slow) answer a model name asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum BadAnswer {
    Empty,
    ContentFilter,
    ContentThenFilter,
    SlowRoleStream,
    SilentMegabytes,
}

impl BadAnswer {
    pub(super) fn for_model(model: &str) -> Option<BadAnswer> {
        match model {
            "mock-empty" => Some(BadAnswer::Empty),
            "mock-content-filter" => Some(BadAnswer::ContentFilter),
            "mock-content-then-filter" => Some(BadAnswer::ContentThenFilter),
            "mock-slow-role-stream" => Some(BadAnswer::SlowRoleStream),
            "mock-silent-megabytes" => Some(BadAnswer::SilentMegabytes),
            _ => None,
        }
    }

    fn keeps_content(self) -> bool {
        matches!(
            self,
            BadAnswer::ContentThenFilter | BadAnswer::SlowRoleStream
        )
    }

    fn filtered(self) -> bool {
        matches!(
            self,
            BadAnswer::ContentFilter | BadAnswer::ContentThenFilter
        )
    }
}

/// The response for `bad`, shaped as `reply` would be.
pub(super) fn answer(
    bad: BadAnswer,
    active: &Arc<AtomicI64>,
    stream: bool,
    reply: &Reply,
    op: Operation,
) -> Response<ProxyBody> {
    if !stream {
        return json_response(StatusCode::OK, &whole(bad, op, reply.whole()));
    }
    if bad == BadAnswer::SilentMegabytes {
        return sse(active, PACE, silent_megabytes());
    }
    let chunks = reply
        .stream()
        .iter()
        .filter_map(|event| streamed(bad, op, event))
        .map(Ok)
        .collect();
    let pace = match bad {
        BadAnswer::SlowRoleStream => SLOW_PACE,
        _ => PACE,
    };
    sse(active, pace, chunks)
}

/// 2 MiB of role-only chat chunks in 16 KiB frames, then `[DONE]`.
fn silent_megabytes() -> Vec<Result<Bytes, BoxError>> {
    let role = "data: {\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\
                \"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"finish_reason\":null}]}\n\n";
    let frame = Bytes::from(role.repeat((16 << 10) / role.len()));
    let mut chunks: Vec<Result<Bytes, BoxError>> =
        std::iter::repeat_n(frame.clone(), (2 << 20) / frame.len())
            .map(Ok)
            .collect();
    chunks.push(Ok(Bytes::from_static(b"data: [DONE]\n\n")));
    chunks
}

/// A whole answer made bad.
fn whole(bad: BadAnswer, op: Operation, mut body: Value) -> Value {
    if matches!(bad, BadAnswer::SlowRoleStream | BadAnswer::SilentMegabytes) {
        return body;
    }
    let keep = bad.keeps_content();
    match op {
        Operation::Chat => {
            if !keep {
                body["choices"][0]["message"]["content"] = if bad.filtered() {
                    Value::Null
                } else {
                    json!("")
                };
            }
            if bad.filtered() {
                body["choices"][0]["finish_reason"] = json!("content_filter");
            }
        }
        Operation::Completions => {
            if !keep {
                body["choices"][0]["text"] = json!("");
            }
            if bad.filtered() {
                body["choices"][0]["finish_reason"] = json!("content_filter");
            }
        }
        Operation::Responses => {
            if !keep {
                body["output"] = json!([]);
            }
            if bad.filtered() {
                body["status"] = json!("incomplete");
                body["incomplete_details"] = json!({"reason": "content_filter"});
            }
        }
        Operation::Messages => {
            if !keep {
                body["content"] = json!([]);
            }
            if bad.filtered() {
                body["stop_reason"] = json!("refusal");
            }
        }
        Operation::Embeddings if bad == BadAnswer::Empty => body["data"] = json!([]),
        Operation::Embeddings => {}
    }
    body
}

/// One event of a normal stream, made bad: `None` drops it.
fn streamed(bad: BadAnswer, op: Operation, event: &Bytes) -> Option<Bytes> {
    if bad == BadAnswer::SlowRoleStream {
        return Some(event.clone());
    }
    let text = std::str::from_utf8(event).ok()?;
    let (name, data) = match text.strip_prefix("event: ") {
        Some(rest) => {
            let (name, rest) = rest.split_once('\n')?;
            (Some(name), rest)
        }
        None => (None, text),
    };
    let data = data.strip_prefix("data: ")?.trim_end();
    let Ok(mut value) = serde_json::from_str::<Value>(data) else {
        // `[DONE]`.
        return Some(event.clone());
    };
    let keep = bad.keeps_content();
    let mut name = name.map(str::to_string);
    match op {
        Operation::Chat | Operation::Completions | Operation::Embeddings => {
            // The usage chunk has no choice.
            let Some(choice) = value.pointer_mut("/choices/0") else {
                return Some(event.clone());
            };
            let finishing = choice.get("finish_reason").is_some_and(|f| !f.is_null());
            let content = ["/delta/content", "/text"].iter().any(|p| {
                choice
                    .pointer(p)
                    .and_then(Value::as_str)
                    .is_some_and(|s| !s.is_empty())
            });
            if content && !keep {
                return None;
            }
            if finishing && bad.filtered() {
                choice["finish_reason"] = json!("content_filter");
            }
        }
        Operation::Responses => match name.as_deref() {
            Some("response.output_text.delta" | "response.output_text.done") if !keep => {
                return None;
            }
            Some("response.completed") => {
                if !keep {
                    value["response"]["output"] = json!([]);
                }
                if bad.filtered() {
                    name = Some("response.incomplete".into());
                    value["type"] = json!("response.incomplete");
                    value["response"]["status"] = json!("incomplete");
                    value["response"]["incomplete_details"] = json!({"reason": "content_filter"});
                }
            }
            _ => {}
        },
        Operation::Messages => match name.as_deref() {
            Some("content_block_start" | "content_block_delta" | "content_block_stop") if !keep => {
                return None;
            }
            Some("message_delta") if bad.filtered() => {
                value["delta"]["stop_reason"] = json!("refusal");
            }
            _ => {}
        },
    }
    let out = match name {
        Some(name) => format!("event: {name}\ndata: {value}\n\n"),
        None => format!("data: {value}\n\n"),
    };
    Some(Bytes::from(out))
}
