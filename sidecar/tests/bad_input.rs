//! Input the proxy does not understand, and peers that misbehave: each gets a
//! clear error or a clean pass-through, never a panic or a hung connection.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::support;

use http_body_util::BodyExt;
use sha2::{Digest, Sha256};
use support::{Stack, within};

const FLAG: &str = r#"
apiVersion: aiflags.dev/v1alpha1
kind: AIFeatureFlag
metadata: {name: assistant}
spec:
  match: {models: ["gpt-4.1", "mock-*"]}
  defaultVariant: primary
  variants:
    - {name: primary, model: gpt-4.1}
  rollout:
    weights: {primary: 100}
"#;

fn sha256(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

#[tokio::test]
async fn a_non_json_body_passes_through_byte_for_byte() {
    let stack = Stack::flags(FLAG).start().await;
    let body = b"\x00\x01 not json {\"model\": \"gpt-4.1\"".to_vec();
    let reply = stack
        .post("/v1/chat/completions")
        .body(body.clone())
        .send()
        .await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("x-mock-body-sha256"), sha256(&body));
    assert_eq!(reply.header("x-aiflags-flag"), "");
}

#[tokio::test]
async fn a_body_without_a_model_passes_through_byte_for_byte() {
    let stack = Stack::flags(FLAG).start().await;
    let body = "{\"messages\": [],   \"user\": \"ünïcode\"}";
    let reply = stack.post("/v1/chat/completions").body(body).send().await;
    assert_eq!(reply.header("x-mock-body-sha256"), sha256(body.as_bytes()));
    assert_eq!(reply.header("x-aiflags-flag"), "");
}

#[tokio::test]
async fn other_paths_and_methods_pass_through() {
    let stack = Stack::flags(FLAG).start().await;
    let reply = stack
        .post("/v1/files?purpose=batch")
        .body("abc")
        .send()
        .await;
    assert_eq!(reply.header("x-mock-received-path"), "/v1/files");
    assert_eq!(reply.header("x-mock-body-sha256"), sha256(b"abc"));
}

#[tokio::test]
async fn a_fifty_megabyte_body_is_refused_with_413() {
    let stack = Stack::flags(FLAG).start().await;
    let reply = stack
        .post("/v1/chat/completions")
        .body(vec![b'x'; 50 << 20])
        .send()
        .await;
    assert_eq!(reply.status, 413);
    let error = &reply.json()["error"];
    assert_eq!(error["type"], "aiflags_error");
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("--max-body-bytes")
    );
}

#[tokio::test]
async fn an_unknown_flag_header_is_a_clear_400() {
    let stack = Stack::flags(FLAG).start().await;
    let reply = stack
        .chat("gpt-4.1")
        .header("x-aiflags-flag", "nope")
        .send()
        .await;
    assert_eq!(reply.status, 400);
    assert!(
        reply.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("\"nope\"")
    );
}

#[tokio::test]
async fn malformed_sse_from_the_upstream_passes_through_cleanly() {
    let stack = Stack::flags(&FLAG.replace("model: gpt-4.1}", "model: mock-malformed-sse}"))
        .start()
        .await;
    let reply = stack.chat("gpt-4.1").streaming().send().await;
    assert_eq!(reply.status, 200);
    assert!(reply.text().contains("not json at all"), "{}", reply.text());
    assert!(reply.text().contains("[DONE]"));
}

#[tokio::test]
async fn an_upstream_closing_a_response_early_is_a_clear_502() {
    let stack = Stack::flags(&FLAG.replace("model: gpt-4.1}", "model: mock-cut-stream}"))
        .start()
        .await;
    let reply = stack.chat("gpt-4.1").send().await;
    assert_eq!(reply.status, 502, "{}", reply.text());
    let message = reply.json()["error"]["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(message.contains("broke off the response"), "{message}");
}

#[tokio::test]
async fn a_client_leaving_mid_stream_cancels_the_upstream_request() {
    let stack = Stack::flags(&FLAG.replace("model: gpt-4.1}", "model: mock-slow-stream}"))
        .start()
        .await;
    let response = stack.chat("gpt-4.1").streaming().open().await;
    let mut body = response.into_body();
    within("first chunk", body.frame()).await.unwrap().unwrap();
    assert_eq!(active_streams(&stack).await, 1);
    drop(body);
    support::eventually("the upstream stream to be cancelled", || async {
        active_streams(&stack).await == 0
    })
    .await;
    // And the sidecar still serves.
    assert_eq!(stack.chat("gpt-4.1").send().await.status, 200);
}

async fn active_streams(stack: &Stack) -> i64 {
    let url = format!("{}/mock/active-streams", stack.mock.url());
    let request = http::Request::get(url)
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .unwrap();
    stack.client.send(request).await.json()["active"]
        .as_i64()
        .unwrap()
}
