use aiflags_api::Operation;
use serde_json::{Value, json};

use super::*;
use crate::usage::usage_from_bytes;

mod answers;
mod differential;

fn judge(op: Operation, body: &Value) -> Option<Verdict> {
    read_answer(op, body.to_string().as_bytes()).verdict
}

use Verdict::{Content, ContentFilter, Empty};

#[test]
fn chat_answers() {
    let chat = |message: Value, finish: &str| {
        json!({"id": "c", "object": "chat.completion",
               "choices": [{"index": 0, "message": message, "finish_reason": finish}]})
    };
    let cases = [
        (
            chat(json!({"role": "assistant", "content": "Hi"}), "stop"),
            Content,
        ),
        (
            chat(json!({"role": "assistant", "content": ""}), "stop"),
            Empty,
        ),
        (
            chat(json!({"role": "assistant", "content": null}), "stop"),
            Empty,
        ),
        (chat(json!({"role": "assistant"}), "length"), Empty),
        (
            chat(
                json!({"content": null, "tool_calls": [{"id": "t", "type": "function",
                      "function": {"name": "f", "arguments": "{}"}}]}),
                "tool_calls",
            ),
            Content,
        ),
        (
            chat(json!({"content": null, "tool_calls": []}), "stop"),
            Empty,
        ),
        (
            chat(
                json!({"content": null, "refusal": "I can't help with that."}),
                "stop",
            ),
            Content,
        ),
        (chat(json!({"content": "", "refusal": ""}), "stop"), Empty),
        (chat(json!({"content": " "}), "stop"), Content),
        (chat(json!({"content": [ ]}), "stop"), Empty),
        (
            chat(json!({"content": "", "reasoning_content": "hmm"}), "stop"),
            Empty,
        ),
        // Azure's filter: no content, or a part the filter then cut.
        (
            chat(json!({"content": null}), "content_filter"),
            ContentFilter,
        ),
        (
            chat(json!({"content": "The first half"}), "content_filter"),
            ContentFilter,
        ),
        (json!({"choices": []}), Empty),
        (json!({}), Empty),
        (json!({"error": {"message": "overloaded"}}), Empty),
    ];
    for (body, verdict) in cases {
        assert_eq!(judge(Operation::Chat, &body), Some(verdict), "{body}");
    }
    let two = json!({"choices": [
        {"message": {"content": ""}, "finish_reason": "stop"},
        {"message": {"content": "B"}, "finish_reason": "stop"}]});
    assert_eq!(judge(Operation::Chat, &two), Some(Content));
}

#[test]
fn other_protocols_answers() {
    let completion = |text: &str, finish: &str| json!({"choices": [{"text": text, "index": 0, "finish_reason": finish}]});
    assert_eq!(
        judge(Operation::Completions, &completion("x", "stop")),
        Some(Content)
    );
    assert_eq!(
        judge(Operation::Completions, &completion("", "length")),
        Some(Empty)
    );
    assert_eq!(
        judge(Operation::Completions, &completion("", "content_filter")),
        Some(ContentFilter)
    );

    let response = |output: Value, incomplete: Value| {
        json!({"object": "response", "status": "completed", "output": output,
               "incomplete_details": incomplete})
    };
    let message = |part: Value| json!({"type": "message", "role": "assistant", "content": [part]});
    let cases = [
        (response(json!([]), Value::Null), Empty),
        (
            response(
                json!([{"type": "reasoning", "summary": [{"type": "summary_text", "text": "x"}]}]),
                Value::Null,
            ),
            Empty,
        ),
        (
            response(
                json!([message(json!({"type": "output_text", "text": ""}))]),
                Value::Null,
            ),
            Empty,
        ),
        (
            response(
                json!([message(
                    json!({"type": "output_text", "text": "Hi", "annotations": []})
                )]),
                Value::Null,
            ),
            Content,
        ),
        (
            response(
                json!([message(json!({"type": "refusal", "refusal": "No."}))]),
                Value::Null,
            ),
            Content,
        ),
        (
            response(
                json!([{"type": "function_call", "name": "f", "arguments": "{}"}]),
                Value::Null,
            ),
            Content,
        ),
        (
            response(
                json!([{"type": "web_search_call", "status": "completed"}]),
                Value::Null,
            ),
            Content,
        ),
        (
            response(json!([]), json!({"reason": "content_filter"})),
            ContentFilter,
        ),
        (
            response(
                json!([message(json!({"type": "output_text", "text": "Hi"}))]),
                json!({"reason": "max_output_tokens"}),
            ),
            Content,
        ),
    ];
    for (body, verdict) in cases {
        assert_eq!(judge(Operation::Responses, &body), Some(verdict), "{body}");
    }

    let vectors = |data: Value| json!({"object": "list", "data": data});
    let cases = [
        (vectors(json!([])), Empty),
        (json!({"object": "list"}), Empty),
        (vectors(json!([{"embedding": []}])), Empty),
        (vectors(json!([{"embedding": ""}])), Empty),
        (vectors(json!([{"embedding": [0.25, -0.5]}])), Content),
        (
            vectors(json!([{"embedding": []}, {"embedding": "AACAPg=="}])),
            Content,
        ),
    ];
    for (body, verdict) in cases {
        assert_eq!(judge(Operation::Embeddings, &body), Some(verdict), "{body}");
    }

    let message = |content: Value, stop: &str| json!({"type": "message", "role": "assistant", "content": content, "stop_reason": stop});
    let cases = [
        (message(json!([]), "end_turn"), Empty),
        (
            message(json!([{"type": "text", "text": ""}]), "end_turn"),
            Empty,
        ),
        (
            message(
                json!([{"type": "thinking", "thinking": "hmm", "signature": "s"}]),
                "end_turn",
            ),
            Empty,
        ),
        (
            message(json!([{"type": "text", "text": "Hi"}]), "end_turn"),
            Content,
        ),
        (
            message(
                json!([{"type": "tool_use", "id": "t", "name": "f", "input": {}}]),
                "tool_use",
            ),
            Content,
        ),
        (message(json!([]), "refusal"), ContentFilter),
        (
            message(json!([{"type": "text", "text": "Hi"}]), "refusal"),
            ContentFilter,
        ),
    ];
    for (body, verdict) in cases {
        assert_eq!(judge(Operation::Messages, &body), Some(verdict), "{body}");
    }
}

#[test]
fn what_is_not_an_answer_is_not_judged_but_its_usage_is_read() {
    for op in Operation::ALL {
        for body in [
            &b"not json"[..],
            b"[1, 2]",
            b"\"text\"",
            b"",
            b"{\"choices\": ",
        ] {
            assert_eq!(read_answer(op, body).verdict, None, "{op:?} {body:?}");
        }
    }
    // Fields of unexpected types: no verdict, but the usage is still there.
    let odd = json!({"choices": "none", "output": 3, "data": {"x": 1}, "content": "text",
                     "usage": {"prompt_tokens": 3, "completion_tokens": 1,
                               "input_tokens": 3, "output_tokens": 1}});
    for op in Operation::ALL {
        let answer = read_answer(op, odd.to_string().as_bytes());
        assert_eq!(answer.verdict, None, "{op:?}");
        assert!(answer.usage.is_some(), "{op:?}");
    }
}

#[test]
fn the_usage_read_with_the_verdict_is_the_usage() {
    let bodies = [
        (
            Operation::Chat,
            json!({"choices": [{"message": {"content": "x"}}],
            "usage": {"prompt_tokens": 7, "completion_tokens": 3, "prompt_tokens_details": {"cached_tokens": 2}}}),
        ),
        (
            Operation::Responses,
            json!({"output": [], "usage": {"input_tokens": 5, "output_tokens": 9}}),
        ),
        (
            Operation::Messages,
            json!({"content": [], "usage": {"input_tokens": 5, "cache_read_input_tokens": 4, "output_tokens": 1}}),
        ),
        (
            Operation::Embeddings,
            json!({"data": [], "usage": {"prompt_tokens": 8, "total_tokens": 8}}),
        ),
        (Operation::Chat, json!({"choices": [], "usage": null})),
    ];
    for (op, body) in bodies {
        let bytes = body.to_string();
        let answer = read_answer(op, bytes.as_bytes());
        assert_eq!(
            answer.usage,
            usage_from_bytes(op, bytes.as_bytes()),
            "{body}"
        );
    }
}

#[test]
fn blank_json_is_recognised_raw_and_parsed() {
    for raw in [
        "null", "\"\"", "[]", "[ ]", "{}", "{ \n }", " null ", "false",
    ] {
        assert!(blank_raw(raw.as_bytes()), "{raw:?}");
        let value: Value = serde_json::from_str(raw).unwrap();
        assert!(blank(Some(&value)), "{raw:?}");
    }
    for raw in ["\" \"", "[0]", "{\"a\":1}", "0", "true", "\"\\u0000\""] {
        assert!(!blank_raw(raw.as_bytes()), "{raw:?}");
        let value: Value = serde_json::from_str(raw).unwrap();
        assert!(!blank(Some(&value)), "{raw:?}");
    }
}

#[test]
fn a_stream_has_a_verdict_once_it_ends_or_says_something() {
    let mut judge = StreamJudge::default();
    let role = json!({"choices": [{"delta": {"role": "assistant", "content": ""}}]});
    judge.observe(Operation::Chat, None, &role);
    assert!(!judge.opened());
    assert_eq!(
        judge.verdict(false),
        None,
        "cut before anything: no verdict"
    );
    assert_eq!(judge.verdict(true), Some(Empty));
    judge.observe(
        Operation::Chat,
        None,
        &json!({"choices": [{"delta": {"reasoning_content": "Let me think"}}]}),
    );
    assert!(judge.opened(), "reasoning is shown to the client");
    assert_eq!(judge.verdict(true), Some(Empty), "but it is not an answer");
    judge.observe(
        Operation::Chat,
        None,
        &json!({"choices": [{"delta": {"content": "Hi"}}]}),
    );
    assert_eq!(judge.verdict(false), Some(Content));
    judge.observe(
        Operation::Chat,
        None,
        &json!({"choices": [{"delta": {}, "finish_reason": "content_filter"}]}),
    );
    assert_eq!(judge.verdict(false), Some(ContentFilter));
}
