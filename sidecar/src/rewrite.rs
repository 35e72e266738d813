//! Recognising an LLM request by its path and rewriting its JSON body for the
//! chosen variant.

use aiflags_api::{CompiledVariant, Operation};
use serde_json::{Map, Value};

/// The operation an API path names, or `None` for any other path (passed
/// through untouched).
///
/// Paths are matched exactly, with the `/v1` prefix both SDKs send (the
/// injected `OPENAI_BASE_URL` ends in `/v1`, and the Anthropic SDK appends
/// `/v1/messages` to `ANTHROPIC_BASE_URL`). A query string, a fragment and one
/// trailing slash are ignored; prefixes such as Azure's `/openai/deployments/…`
/// are not recognised.
pub fn operation_for_path(path: &str) -> Option<Operation> {
    let path = path.split(['?', '#']).next().unwrap_or_default();
    let path = path.strip_suffix('/').unwrap_or(path);
    match path {
        "/v1/chat/completions" => Some(Operation::Chat),
        "/v1/responses" => Some(Operation::Responses),
        "/v1/completions" => Some(Operation::Completions),
        "/v1/embeddings" => Some(Operation::Embeddings),
        "/v1/messages" => Some(Operation::Messages),
        _ => None,
    }
}

/// JSON Merge Patch (RFC 7386): objects merge key by key, `null` deletes a
/// key, anything else replaces the target.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(patch) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    if let Value::Object(target) = target {
        for (key, value) in patch {
            if value.is_null() {
                target.remove(key);
            } else {
                merge_patch(target.entry(key.as_str()).or_insert(Value::Null), value);
            }
        }
    }
}

/// Points the request at the variant: sets `model`, then merge-patches the
/// variant's `params`. A body that is not a JSON object is left alone, since
/// the proxy passes what it does not understand through untouched.
pub fn apply_variant(body: &mut Value, variant: &CompiledVariant) {
    let Value::Object(fields) = body else {
        return;
    };
    fields.insert("model".into(), Value::String(variant.model.clone()));
    if let Some(params) = &variant.params {
        merge_patch(body, params);
    }
}

/// Whether the request asks for a streamed (SSE) response.
pub fn is_streaming(body: &Value) -> bool {
    body.get("stream").and_then(Value::as_bool) == Some(true)
}

/// Whether the client itself asked for the OpenAI usage chunk: a streamed chat
/// or completions request with `stream_options.include_usage: true`. Other
/// operations always stream their usage, so nothing needs asking for.
pub fn request_wants_usage_stream(op: Operation, body: &Value) -> bool {
    asks_usage_chunk(op)
        && is_streaming(body)
        && body.pointer("/stream_options/include_usage") == Some(&Value::Bool(true))
}

/// Asks the upstream for the usage chunk of a streamed chat or completions
/// request. Returns `true` when the proxy added the request, so the proxy must
/// strip that chunk from what the client sees. A malformed `stream_options`
/// (not an object) is left for the upstream to reject.
pub fn ensure_stream_usage(op: Operation, body: &mut Value) -> bool {
    if !asks_usage_chunk(op) || !is_streaming(body) || request_wants_usage_stream(op, body) {
        return false;
    }
    let Value::Object(fields) = body else {
        return false;
    };
    let options = fields
        .entry("stream_options")
        .or_insert_with(|| Value::Object(Map::new()));
    if options.is_null() {
        *options = Value::Object(Map::new());
    }
    match options {
        Value::Object(options) => {
            options.insert("include_usage".into(), Value::Bool(true));
            true
        }
        _ => false,
    }
}

/// Responses and Anthropic messages streams always carry usage.
fn asks_usage_chunk(op: Operation) -> bool {
    matches!(op, Operation::Chat | Operation::Completions)
}

#[cfg(test)]
#[path = "rewrite_tests.rs"]
mod tests;
