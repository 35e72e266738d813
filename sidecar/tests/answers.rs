//! Bad answers: `200`s that are empty or stopped by a content filter, in
//! every protocol's shape, fall back when the flag's `fallback.on` names
//! them, and are counted either way.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::support;

use aiflags_api::Operation;
use http_body_util::BodyExt;
use serde_json::{Value, json};
use support::{Reply, RequestBuilder, Stack, metric};

/// `primary` answers with `model`; `stable` (gpt-4o-mini) is the chain.
fn flag(model: &str, on: &str, extra: &str) -> String {
    format!(
        r#"
apiVersion: aiflags.dev/v1alpha1
kind: AIFeatureFlag
metadata: {{name: judged}}
spec:
  match: {{models: ["gpt-4.1"]}}
  defaultVariant: primary
  variants:
    - {{name: primary, model: "{model}"}}
    - {{name: stable, model: gpt-4o-mini}}
  rollout:
    weights: {{primary: 100, stable: 0}}
  fallback:
    on: [{on}]
    chain: [stable]
    {extra}
"#
    )
}

/// A request for `gpt-4.1` in `op`'s shape.
fn request(stack: &Stack, op: Operation) -> RequestBuilder {
    let messages = json!([{"role": "user", "content": "Hi"}]);
    let (path, body) = match op {
        Operation::Chat => ("/v1/chat/completions", json!({"messages": messages})),
        Operation::Completions => ("/v1/completions", json!({"prompt": "Hi"})),
        Operation::Responses => ("/v1/responses", json!({"input": "Hi"})),
        Operation::Embeddings => ("/v1/embeddings", json!({"input": "Hi"})),
        Operation::Messages => (
            "/v1/messages",
            json!({"messages": messages, "max_tokens": 16}),
        ),
    };
    let mut body = body;
    body["model"] = json!("gpt-4.1");
    stack.post(path).json(body)
}

/// What the stable model's answer says, whole or streamed.
const STABLE_TEXT: &str = "Hello from gpt-4o-mini";

fn assert_served_by_stable(reply: &Reply, op: Operation, streamed: bool) {
    assert_eq!(reply.status, 200, "{op:?}: {}", reply.text());
    assert_eq!(reply.variant(), "primary");
    assert_eq!(reply.header("x-aiflags-model"), "gpt-4o-mini", "{op:?}");
    assert_eq!(reply.header("x-aiflags-attempts"), "2", "{op:?}");
    if op == Operation::Embeddings {
        assert_eq!(
            reply.json()["data"][0]["embedding"]
                .as_array()
                .unwrap()
                .len(),
            4
        );
    } else if streamed {
        // The bad stream was held back whole: nothing of it reached the client.
        let text = reply.text();
        assert!(
            text.contains("Hello ") && text.contains("gpt-4o-mini"),
            "{op:?}: {text}"
        );
        assert!(
            !text.contains("mock-"),
            "{op:?}: the bad stream leaked: {text}"
        );
    } else {
        assert!(
            reply.text().contains(STABLE_TEXT),
            "{op:?}: {}",
            reply.text()
        );
    }
}

/// `/metrics` once no request is in flight (a request is counted when its
/// body ends, which can be just after the client read its last byte).
async fn metrics(stack: &Stack) -> String {
    support::eventually("no request in flight", || async {
        stack.metric("aiflags_active_requests", &[]).await == 0.0
    })
    .await;
    stack.admin("/metrics").await.text()
}

#[tokio::test]
async fn an_empty_answer_falls_back_in_every_protocol_plain_and_streamed() {
    let stack = Stack::flags(&flag("mock-empty", "5xx, empty", ""))
        .start()
        .await;
    for op in Operation::ALL {
        let reply = request(&stack, op).send().await;
        assert_served_by_stable(&reply, op, false);
        if op != Operation::Embeddings {
            let reply = request(&stack, op).streaming().send().await;
            assert_served_by_stable(&reply, op, true);
        }
    }
    // Each request tried the empty model once: no retries were asked for.
    assert_eq!(stack.upstream_requests("mock-empty").await, 9);
    let text = metrics(&stack).await;
    let answers = |variant, verdict| {
        let labels = [
            ("flag", "judged"),
            ("variant", variant),
            ("verdict", verdict),
        ];
        metric(&text, "aiflags_answers_total", &labels)
    };
    assert_eq!(answers("primary", "empty"), 9.0, "{text}");
    assert_eq!(answers("stable", "content"), 9.0);
    let reason = [("from_model", "mock-empty"), ("reason", "empty")];
    assert_eq!(metric(&text, "aiflags_fallbacks_total", &reason), 9.0);
    let outcome = [("model", "mock-empty"), ("outcome", "empty")];
    assert_eq!(
        metric(&text, "aiflags_upstream_attempts_total", &outcome),
        9.0
    );
}

#[tokio::test]
async fn a_filtered_answer_falls_back_without_a_retry() {
    let stack = Stack::flags(&flag("mock-content-filter", "contentFilter", "retries: 2"))
        .start()
        .await;
    for op in [
        Operation::Chat,
        Operation::Completions,
        Operation::Responses,
        Operation::Messages,
    ] {
        assert_served_by_stable(&request(&stack, op).send().await, op, false);
        assert_served_by_stable(&request(&stack, op).streaming().send().await, op, true);
    }
    assert_eq!(stack.upstream_requests("mock-content-filter").await, 8);
    let text = metrics(&stack).await;
    let filtered = [("variant", "primary"), ("verdict", "content_filter")];
    assert_eq!(metric(&text, "aiflags_answers_total", &filtered), 8.0);
    let reason = [("reason", "content_filter")];
    assert_eq!(metric(&text, "aiflags_fallbacks_total", &reason), 8.0);
}

#[tokio::test]
async fn an_empty_answer_is_retried_before_moving_down_the_chain() {
    let stack = Stack::flags(&flag("mock-empty", "empty", "retries: 1"))
        .start()
        .await;
    let reply = request(&stack, Operation::Chat).send().await;
    assert_eq!(reply.header("x-aiflags-attempts"), "3");
    assert_eq!(reply.header("x-aiflags-model"), "gpt-4o-mini");
    assert_eq!(stack.upstream_requests("mock-empty").await, 2);
}

#[tokio::test]
async fn without_the_classes_a_bad_answer_is_served_and_counted() {
    let stack = Stack::flags(&flag("mock-empty", "5xx", "")).start().await;
    let reply = request(&stack, Operation::Chat).send().await;
    assert_eq!(reply.header("x-aiflags-model"), "mock-empty");
    assert_eq!(reply.json()["choices"][0]["message"]["content"], "");
    let reply = request(&stack, Operation::Chat).streaming().send().await;
    assert_eq!(reply.header("x-aiflags-model"), "mock-empty");
    assert!(
        reply.text().ends_with("data: [DONE]\n\n"),
        "{}",
        reply.text()
    );
    let text = metrics(&stack).await;
    let empty = [
        ("variant", "primary"),
        ("model", "mock-empty"),
        ("verdict", "empty"),
    ];
    assert_eq!(
        metric(&text, "aiflags_answers_total", &empty),
        2.0,
        "{text}"
    );
    // The plain answer was judged before it was sent; the stream was sent
    // at its first byte, as always, and judged as it ended.
    let attempts = |outcome| {
        let labels = [("model", "mock-empty"), ("outcome", outcome)];
        metric(&text, "aiflags_upstream_attempts_total", &labels)
    };
    assert_eq!((attempts("empty"), attempts("ok")), (1.0, 1.0));
    assert_eq!(metric(&text, "aiflags_fallbacks_total", &[]), 0.0);
}

#[tokio::test]
async fn when_nothing_better_comes_the_last_bad_answer_is_handed_back_as_it_came() {
    let yaml = flag("mock-empty", "empty, contentFilter", "")
        .replace("model: gpt-4o-mini}", "model: mock-content-filter}");
    let stack = Stack::flags(&yaml).start().await;
    let reply = request(&stack, Operation::Chat).send().await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("x-aiflags-attempts"), "2");
    assert_eq!(reply.header("x-aiflags-model"), "mock-content-filter");
    assert_eq!(
        reply.json()["choices"][0]["finish_reason"],
        "content_filter"
    );
    let reply = request(&stack, Operation::Messages)
        .streaming()
        .send()
        .await;
    assert_eq!(reply.header("x-aiflags-model"), "mock-content-filter");
    let text = reply.text();
    assert!(
        text.contains("\"stop_reason\":\"refusal\"")
            && text.ends_with("{\"type\":\"message_stop\"}\n\n"),
        "{text}"
    );
    let text = metrics(&stack).await;
    let answered = [
        ("model", "mock-content-filter"),
        ("verdict", "content_filter"),
    ];
    assert_eq!(metric(&text, "aiflags_answers_total", &answered), 2.0);
    assert_eq!(
        metric(&text, "aiflags_requests_total", &[("code", "200")]),
        2.0
    );
}

#[tokio::test]
async fn a_stream_filtered_after_its_content_is_reported_not_retried() {
    let stack = Stack::flags(&flag(
        "mock-content-then-filter",
        "empty, contentFilter",
        "retries: 2",
    ))
    .start()
    .await;
    for op in [Operation::Chat, Operation::Responses, Operation::Messages] {
        let reply = request(&stack, op).streaming().send().await;
        assert_eq!(reply.header("x-aiflags-model"), "mock-content-then-filter");
        let text = reply.text();
        assert!(text.contains("Hello "), "{op:?}: {text}");
        // The upstream ended the stream itself: no error event of ours.
        assert!(
            !text.contains("aiflags_error") && !text.contains("event: error"),
            "{text}"
        );
    }
    assert_eq!(stack.upstream_requests("mock-content-then-filter").await, 3);
    assert_eq!(stack.upstream_requests("gpt-4o-mini").await, 0);
    let text = metrics(&stack).await;
    let late = [("variant", "primary"), ("verdict", "content_filter")];
    assert_eq!(metric(&text, "aiflags_answers_total", &late), 3.0);
    let ok = [("model", "mock-content-then-filter"), ("outcome", "ok")];
    assert_eq!(metric(&text, "aiflags_upstream_attempts_total", &ok), 3.0);
    // The same answer whole is judged before it is sent: it falls back.
    let reply = request(&stack, Operation::Chat).send().await;
    assert_eq!(reply.header("x-aiflags-model"), "gpt-4o-mini");
}

#[tokio::test]
async fn bad_answers_do_not_open_the_circuit() {
    let stack = Stack::flags(&flag("mock-empty", "empty", ""))
        .arg("--breaker-threshold=1")
        .arg("--breaker-cooldown=1h")
        .start()
        .await;
    for n in 1..=3 {
        let reply = request(&stack, Operation::Chat).send().await;
        assert_eq!(reply.header("x-aiflags-attempts"), "2");
        assert_eq!(
            stack.upstream_requests("mock-empty").await,
            n,
            "primary tried every time"
        );
    }
    let text = metrics(&stack).await;
    assert_eq!(metric(&text, "aiflags_circuit_open", &[]), 0.0);
}

#[tokio::test]
async fn a_slow_opening_keeps_its_first_token_time_and_the_rest_is_not_held() {
    let stack = Stack::flags(&flag("mock-slow-role-stream", "empty", ""))
        .start()
        .await;
    let response = request(&stack, Operation::Chat).streaming().open().await;
    assert_eq!(
        response.headers()["x-aiflags-model"],
        "mock-slow-role-stream"
    );
    let mut body = response.into_body();
    let first = support::within("first chunk", body.frame())
        .await
        .unwrap()
        .unwrap();
    let first = first.into_data().unwrap();
    let first = String::from_utf8_lossy(&first);
    // The held role chunk comes with the first content, in one piece.
    assert!(
        first.contains("\"role\":\"assistant\"") && first.contains("Hello "),
        "{first}"
    );
    let active: Value = stack
        .client
        .send(
            http::Request::get(format!("{}/mock/active-streams", stack.mock.url()))
                .body(http_body_util::Full::new(bytes::Bytes::new()))
                .unwrap(),
        )
        .await
        .json();
    assert_eq!(
        active["active"], 1,
        "the first content came while the upstream still streamed"
    );
    let rest = support::within("the rest", body.collect())
        .await
        .unwrap()
        .to_bytes();
    assert!(rest.ends_with(b"data: [DONE]\n\n"));
    let text = metrics(&stack).await;
    let ttft = metric(
        &text,
        "aiflags_time_to_first_token_seconds_sum",
        &[("variant", "primary")],
    );
    // Role after one pace, first content after two: the token, not the role.
    assert!(
        ttft >= 0.5,
        "time to first token {ttft}s counts the role chunk"
    );
}

#[tokio::test]
async fn a_long_silence_is_let_go_rather_than_held() {
    let stack = Stack::flags(&flag("mock-silent-megabytes", "empty", ""))
        .start()
        .await;
    let reply = request(&stack, Operation::Chat).streaming().send().await;
    // Past what may be held the stream was committed unjudged, so the empty
    // answer could not fall back; the client got all of it.
    assert_eq!(reply.header("x-aiflags-model"), "mock-silent-megabytes");
    assert_eq!(reply.header("x-aiflags-attempts"), "1");
    assert!(reply.body.len() > 2_000_000 && reply.text().ends_with("data: [DONE]\n\n"));
    let text = metrics(&stack).await;
    let empty = [("model", "mock-silent-megabytes"), ("verdict", "empty")];
    assert_eq!(metric(&text, "aiflags_answers_total", &empty), 1.0);
}

#[tokio::test]
async fn a_held_stream_that_ends_with_a_verdict_fallback_does_not_name_is_served() {
    // Held (contentFilter is named), judged empty (which is not): served.
    let stack = Stack::flags(&flag("mock-empty", "contentFilter", ""))
        .start()
        .await;
    let reply = request(&stack, Operation::Chat).streaming().send().await;
    assert_eq!(reply.header("x-aiflags-model"), "mock-empty");
    assert!(
        reply.text().ends_with("data: [DONE]\n\n"),
        "{}",
        reply.text()
    );
    let text = metrics(&stack).await;
    let empty = [("model", "mock-empty"), ("verdict", "empty")];
    assert_eq!(
        metric(&text, "aiflags_answers_total", &empty),
        1.0,
        "counted once"
    );
    let outcome = [("model", "mock-empty"), ("outcome", "empty")];
    assert_eq!(
        metric(&text, "aiflags_upstream_attempts_total", &outcome),
        1.0
    );
}
