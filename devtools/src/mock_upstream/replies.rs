//! The mock's response bodies, whole and streamed, per operation.

use aiflags_api::Operation;
use bytes::Bytes;
use serde_json::{Value, json};

/// One deterministic answer: the text names the model, usage follows from
/// the request size.
pub struct Reply {
    operation: Operation,
    model: String,
    words: Vec<String>,
    input_tokens: u64,
    include_usage: bool,
    /// Embeddings as base64 little-endian f32, as OpenAI sends for
    /// `encoding_format: base64` (the SDKs' default).
    pub base64: bool,
}

impl Reply {
    pub fn new(operation: Operation, model: &str, body_len: usize, include_usage: bool) -> Reply {
        let text = format!("Hello from {model}! This is a mock reply.");
        Reply {
            operation,
            model: model.to_string(),
            words: text.split_inclusive(' ').map(str::to_string).collect(),
            input_tokens: body_len as u64 / 4 + 1,
            include_usage,
            base64: false,
        }
    }

    fn text(&self) -> String {
        self.words.concat()
    }

    fn output_tokens(&self) -> u64 {
        self.words.len() as u64
    }

    pub fn whole(&self) -> Value {
        let (model, text) = (&self.model, self.text());
        let (input, output) = (self.input_tokens, self.output_tokens());
        match self.operation {
            Operation::Chat => json!({
                "id": "chatcmpl-mock", "object": "chat.completion", "created": 0, "model": model,
                "choices": [{"index": 0, "finish_reason": "stop", "logprobs": null,
                             "message": {"role": "assistant", "content": text, "refusal": null}}],
                "usage": chat_usage(input, output),
            }),
            Operation::Completions => json!({
                "id": "cmpl-mock", "object": "text_completion", "created": 0, "model": model,
                "choices": [{"index": 0, "text": text, "finish_reason": "stop", "logprobs": null}],
                "usage": chat_usage(input, output),
            }),
            Operation::Responses => self.response_object("completed", &text),
            Operation::Embeddings => {
                let vector = [0.25f32, -0.5, 0.125, 1.0];
                let embedding = if self.base64 {
                    let bytes: Vec<u8> = vector.iter().flat_map(|f| f.to_le_bytes()).collect();
                    json!(base64(&bytes))
                } else {
                    json!(vector)
                };
                json!({
                    "object": "list", "model": model,
                    "data": [{"object": "embedding", "index": 0, "embedding": embedding}],
                    "usage": {"prompt_tokens": input, "total_tokens": input},
                })
            }
            Operation::Messages => json!({
                "id": "msg_mock", "type": "message", "role": "assistant", "model": model,
                "content": [{"type": "text", "text": text}],
                "stop_reason": "end_turn", "stop_sequence": null,
                "usage": {"input_tokens": input, "output_tokens": output},
            }),
        }
    }

    /// SSE events, one chunk each.
    pub fn stream(&self) -> Vec<Bytes> {
        match self.operation {
            Operation::Chat | Operation::Embeddings => self.chat_stream(),
            Operation::Completions => self.completions_stream(),
            Operation::Responses => self.responses_stream(),
            Operation::Messages => self.messages_stream(),
        }
    }

    fn chat_stream(&self) -> Vec<Bytes> {
        let chunk = |delta: Value, finish: Value| {
            data(
                &json!({"id": "chatcmpl-mock", "object": "chat.completion.chunk", "created": 0,
                         "model": self.model,
                         "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}),
            )
        };
        let mut out = vec![chunk(
            json!({"role": "assistant", "content": ""}),
            Value::Null,
        )];
        out.extend(
            self.words
                .iter()
                .map(|w| chunk(json!({"content": w}), Value::Null)),
        );
        out.push(chunk(json!({}), json!("stop")));
        if self.include_usage {
            out.push(data(
                &json!({"id": "chatcmpl-mock", "object": "chat.completion.chunk",
                                  "created": 0, "model": self.model, "choices": [],
                                  "usage": chat_usage(self.input_tokens, self.output_tokens())}),
            ));
        }
        out.push(Bytes::from_static(b"data: [DONE]\n\n"));
        out
    }

    fn completions_stream(&self) -> Vec<Bytes> {
        let chunk = |text: &str, finish: Value| {
            data(
                &json!({"id": "cmpl-mock", "object": "text_completion", "created": 0,
                         "model": self.model,
                         "choices": [{"index": 0, "text": text, "finish_reason": finish, "logprobs": null}]}),
            )
        };
        let mut out: Vec<Bytes> = self.words.iter().map(|w| chunk(w, Value::Null)).collect();
        out.push(chunk("", json!("stop")));
        if self.include_usage {
            out.push(data(
                &json!({"id": "cmpl-mock", "object": "text_completion", "created": 0,
                                  "model": self.model, "choices": [],
                                  "usage": chat_usage(self.input_tokens, self.output_tokens())}),
            ));
        }
        out.push(Bytes::from_static(b"data: [DONE]\n\n"));
        out
    }

    fn responses_stream(&self) -> Vec<Bytes> {
        let mut seq = 0;
        let mut next = |kind: &str, mut body: Value| {
            body["type"] = json!(kind);
            body["sequence_number"] = json!(seq);
            seq += 1;
            event(kind, &body)
        };
        let mut out = vec![next(
            "response.created",
            json!({"response": self.response_object("in_progress", "")}),
        )];
        for word in &self.words {
            out.push(next(
                "response.output_text.delta",
                json!({"item_id": "msg_mock", "output_index": 0, "content_index": 0, "delta": word, "logprobs": []}),
            ));
        }
        out.push(next(
            "response.output_text.done",
            json!({"item_id": "msg_mock", "output_index": 0, "content_index": 0, "text": self.text(), "logprobs": []}),
        ));
        out.push(next(
            "response.completed",
            json!({"response": self.response_object("completed", &self.text())}),
        ));
        out
    }

    fn messages_stream(&self) -> Vec<Bytes> {
        let mut out = vec![event(
            "message_start",
            &json!({"type": "message_start", "message": {
            "id": "msg_mock", "type": "message", "role": "assistant", "model": self.model,
            "content": [], "stop_reason": null, "stop_sequence": null,
            "usage": {"input_tokens": self.input_tokens, "output_tokens": 1}}}),
        )];
        out.push(event(
            "content_block_start",
            &json!({"type": "content_block_start", "index": 0,
            "content_block": {"type": "text", "text": ""}}),
        ));
        for word in &self.words {
            out.push(event(
                "content_block_delta",
                &json!({"type": "content_block_delta", "index": 0,
                "delta": {"type": "text_delta", "text": word}}),
            ));
        }
        out.push(event(
            "content_block_stop",
            &json!({"type": "content_block_stop", "index": 0}),
        ));
        out.push(event(
            "message_delta",
            &json!({"type": "message_delta",
            "delta": {"stop_reason": "end_turn", "stop_sequence": null},
            "usage": {"output_tokens": self.output_tokens()}}),
        ));
        out.push(event("message_stop", &json!({"type": "message_stop"})));
        out
    }

    fn response_object(&self, status: &str, text: &str) -> Value {
        let output = if text.is_empty() {
            json!([])
        } else {
            json!([{"type": "message", "id": "msg_mock", "status": "completed", "role": "assistant",
                    "content": [{"type": "output_text", "text": text, "annotations": []}]}])
        };
        let (input, output_tokens) = (self.input_tokens, self.output_tokens());
        json!({
            "id": "resp_mock", "object": "response", "created_at": 0, "status": status,
            "model": self.model, "output": output, "parallel_tool_calls": true, "tool_choice": "auto",
            "tools": [], "error": null, "incomplete_details": null, "instructions": null,
            "metadata": {}, "temperature": 1.0, "top_p": 1.0,
            "usage": {"input_tokens": input, "output_tokens": output_tokens,
                      "total_tokens": input + output_tokens,
                      "input_tokens_details": {"cached_tokens": 0},
                      "output_tokens_details": {"reasoning_tokens": 0}},
        })
    }
}

fn chat_usage(input: u64, output: u64) -> Value {
    json!({"prompt_tokens": input, "completion_tokens": output, "total_tokens": input + output,
           "prompt_tokens_details": {"cached_tokens": 0},
           "completion_tokens_details": {"reasoning_tokens": 0}})
}

fn data(value: &Value) -> Bytes {
    Bytes::from(format!("data: {value}\n\n"))
}

fn event(kind: &str, value: &Value) -> Bytes {
    Bytes::from(format!("event: {kind}\ndata: {value}\n\n"))
}

/// Standard base64 with padding; the mock needs nothing more.
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[(n >> (18 - 6 * i)) as usize & 63]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn base64_matches_the_standard() {
        assert_eq!(super::base64(b"hello"), "aGVsbG8=");
        assert_eq!(super::base64(b"hi!"), "aGkh");
        assert_eq!(super::base64(b"h"), "aA==");
    }
}
