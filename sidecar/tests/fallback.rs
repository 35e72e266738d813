//! Retries, the fallback chain and the circuit breaker, against upstreams
//! that fail in every way the mock knows.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::support;

use std::time::{Duration, Instant};

use http_body_util::BodyExt;
use serde_json::json;
use support::{Reply, Stack};

/// A flag whose chosen variant is `primary` (model `model`, optional provider),
/// falling back to the `stable` variant on gpt-4o-mini.
fn flag(model: &str, provider: Option<&str>, fallback: &str) -> String {
    let provider = provider
        .map(|p| format!(", provider: {{baseUrl: \"{p}\"}}"))
        .unwrap_or_default();
    format!(
        r#"
apiVersion: aiflags.dev/v1alpha1
kind: AIFeatureFlag
metadata: {{name: assistant}}
spec:
  match: {{models: ["gpt-4.1"]}}
  defaultVariant: primary
  variants:
    - {{name: primary, model: "{model}"{provider}}}
    - {{name: stable, model: gpt-4o-mini}}
  rollout:
    weights: {{primary: 100, stable: 0}}
  fallback:
    on: [timeout, connect, "429", "5xx"]
    chain: [stable]
    {fallback}
"#
    )
}

fn assert_fell_back(reply: &Reply, attempts: &str) {
    assert_eq!(reply.status, 200, "{}", reply.text());
    // The variant is the assignment; the model says who served it.
    assert_eq!(reply.variant(), "primary");
    assert_eq!(reply.header("x-aiflags-model"), "gpt-4o-mini");
    assert_eq!(reply.header("x-aiflags-attempts"), attempts);
    assert_eq!(reply.header("x-mock-received-model"), "gpt-4o-mini");
}

#[tokio::test]
async fn an_upstream_500_moves_down_the_chain() {
    let stack = Stack::flags(&flag("mock-error-500", None, ""))
        .start()
        .await;
    let reply = stack.chat("gpt-4.1").send().await;
    assert_fell_back(&reply, "2");
}

#[tokio::test]
async fn a_429_is_retried_after_its_retry_after_then_falls_back() {
    let stack = Stack::flags(&flag("mock-429", None, "retries: 1"))
        .start()
        .await;
    let started = Instant::now();
    let reply = stack.chat("gpt-4.1").send().await;
    assert_fell_back(&reply, "3");
    assert!(
        started.elapsed() >= Duration::from_millis(950),
        "Retry-After: 1 not honoured"
    );
    assert_eq!(stack.upstream_requests("mock-429").await, 2);
}

#[tokio::test]
async fn a_refused_connection_moves_down_the_chain() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let stack = Stack::flags(&flag("gpt-4.1", Some(&url), "")).start().await;
    let reply = stack.chat("gpt-4.1").send().await;
    assert_fell_back(&reply, "2");
}

#[tokio::test]
async fn a_stream_without_a_first_token_in_time_moves_down_the_chain() {
    let stack = Stack::flags(&flag(
        "mock-slow-first-token",
        None,
        "firstTokenTimeout: 300ms",
    ))
    .start()
    .await;
    let reply = stack.chat("gpt-4.1").streaming().send().await;
    assert_fell_back(&reply, "2");
    assert!(reply.text().contains("[DONE]"), "{}", reply.text());
    // The slow model's attempt ended on the first-token timeout, not on the
    // response it would have sent after 3 s.
    let timed_out = stack
        .metric(
            "aiflags_upstream_attempts_total",
            &[("model", "mock-slow-first-token"), ("outcome", "timeout")],
        )
        .await;
    assert_eq!(timed_out, 1.0);
}

#[tokio::test]
async fn an_upstream_that_never_answers_times_out_and_moves_down_the_chain() {
    let stack = Stack::flags(&flag("mock-timeout", None, "perAttemptTimeout: 300ms"))
        .start()
        .await;
    let reply = stack.chat("gpt-4.1").send().await;
    assert_fell_back(&reply, "2");
}

#[tokio::test]
async fn when_every_attempt_fails_the_last_upstream_error_is_returned_with_the_headers() {
    let yaml = flag("mock-error-500", None, "").replace("gpt-4o-mini}", "mock-429}");
    let stack = Stack::flags(&yaml).start().await;
    let reply = stack.chat("gpt-4.1").send().await;
    assert_eq!(reply.status, 429);
    assert_eq!(reply.header("x-aiflags-attempts"), "2");
    assert_eq!(reply.header("x-aiflags-variant"), "primary");
    assert_eq!(reply.header("x-aiflags-model"), "mock-429");
    assert_eq!(reply.json()["error"]["type"], "mock_error");
}

#[tokio::test]
async fn when_nothing_answers_the_proxy_says_what_happened() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let yaml = flag("gpt-4.1", Some(&url), "retries: 1").replace(
        "{name: stable, model: gpt-4o-mini}",
        &format!("{{name: stable, model: gpt-4o-mini, provider: {{baseUrl: \"{url}\"}}}}"),
    );
    let stack = Stack::flags(&yaml).start().await;
    let reply = stack.chat("gpt-4.1").send().await;
    assert_eq!(reply.status, 502);
    let error = &reply.json()["error"];
    assert_eq!(error["type"], "aiflags_error");
    let message = error["message"].as_str().unwrap();
    assert!(
        message.starts_with("all 4 attempts failed: connect error to http://127.0.0.1:"),
        "{message}"
    );
    // The proxy's own error still says which flag and variant it is about.
    assert_eq!(reply.header("x-aiflags-flag"), "assistant");
    assert_eq!(reply.header("x-aiflags-variant"), "primary");
    assert_eq!(reply.header("x-aiflags-attempts"), "4");
}

#[tokio::test]
async fn a_stream_cut_mid_way_ends_with_an_error_event_and_is_not_retried() {
    let stack = Stack::flags(&flag("mock-cut-stream", None, "retries: 2"))
        .start()
        .await;
    let reply = stack.chat("gpt-4.1").streaming().send().await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.variant(), "primary");
    let text = reply.text();
    assert!(text.contains("Hello "), "{text}");
    assert!(text.contains("\"error\""), "no error event in {text}");
    assert!(!text.contains("[DONE]"), "{text}");
    assert_eq!(stack.upstream_requests("mock-cut-stream").await, 1);
    assert_eq!(stack.upstream_requests("gpt-4o-mini").await, 0);
}

#[tokio::test]
async fn the_circuit_opens_after_repeated_failures_and_closes_after_the_cooldown() {
    let stack = Stack::flags(&flag("mock-flaky-2", None, ""))
        .arg("--breaker-threshold=2")
        .arg("--breaker-cooldown=500ms")
        .start()
        .await;
    for _ in 0..2 {
        assert_fell_back(&stack.chat("gpt-4.1").send().await, "2");
    }
    // Open: the primary is skipped without a request.
    let skipped = stack.chat("gpt-4.1").send().await;
    assert_fell_back(&skipped, "1");
    assert_eq!(stack.upstream_requests("mock-flaky-2").await, 2);
    // Until the cooldown is over every request skips the primary; the first
    // after it is the probe, which succeeds (the flaky model has recovered)
    // and closes the circuit.
    let probe = support::within("the probe after the cooldown", async {
        loop {
            let reply = stack.chat("gpt-4.1").send().await;
            if reply.header("x-aiflags-model") == "mock-flaky-2" {
                return reply;
            }
            assert_fell_back(&reply, "1");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert_eq!(probe.header("x-aiflags-attempts"), "1");
    assert_eq!(stack.upstream_requests("mock-flaky-2").await, 3);
    // Closed again: the primary serves without a detour.
    let after = stack.chat("gpt-4.1").send().await;
    assert_eq!(after.header("x-aiflags-model"), "mock-flaky-2");
    assert_eq!(stack.upstream_requests("mock-flaky-2").await, 4);
}

#[tokio::test]
async fn responses_and_messages_streams_that_stop_short_end_with_an_error_event() {
    let stack = Stack::flags(&flag("mock-truncated-stream", None, ""))
        .start()
        .await;
    let responses = stack
        .post("/v1/responses")
        .json(json!({"model": "gpt-4.1", "input": "hi", "stream": true}))
        .send()
        .await;
    let text = responses.text();
    assert!(
        text.contains("\"type\":\"aiflags_error\""),
        "no error event in {text}"
    );
    assert!(!text.contains("response.completed"), "{text}");

    let messages = stack
        .post("/v1/messages")
        .json(json!({"model": "gpt-4.1", "max_tokens": 16, "stream": true,
                     "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await;
    let text = messages.text();
    assert!(text.contains("event: error"), "no error event in {text}");
    assert!(!text.contains("message_stop"), "{text}");
    // Once the first byte has gone out there is no retry.
    assert_eq!(stack.upstream_requests("mock-truncated-stream").await, 2);
}

#[tokio::test]
async fn a_client_gets_the_first_chunk_before_the_stream_ends() {
    let stack = Stack::flags(&flag("gpt-4.1", None, "")).start().await;
    let response = stack.chat("gpt-4.1").streaming().open().await;
    assert_eq!(response.headers()["x-aiflags-variant"], "primary");
    let mut body = response.into_body();
    let first = support::within("first chunk", body.frame())
        .await
        .unwrap()
        .unwrap();
    let first = first.into_data().unwrap();
    assert!(first.starts_with(b"data: "), "{first:?}");
    assert!(
        !first.windows(6).any(|w| w == b"[DONE]"),
        "the whole stream arrived at once"
    );
}
