//! Where a request goes and with which credential.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::support;

use serde_json::json;
use support::Stack;

fn with_provider(upstream: &str, credential: &str) -> String {
    format!(
        r#"
apiVersion: aiflags.dev/v1alpha1
kind: AIFeatureFlag
metadata: {{name: keyed}}
spec:
  podSelector: {{matchLabels: {{app: assistant}}}}
  match: {{models: ["gpt-4.1", "claude-*"]}}
  defaultVariant: hosted
  variants:
    - {{name: hosted, model: served-model, provider: {{baseUrl: "{upstream}/v1", credentialKey: {credential}}}}}
  rollout:
    weights: {{hosted: 100}}
"#
    )
}

/// The stack, the provider it sends to, and the mounted Secret; all live
/// as long as the test holds them.
type Keyed = (
    Stack,
    aiflags_devtools::mock_upstream::MockUpstream,
    tempfile::TempDir,
);

async fn keyed_stack(labels: &str) -> Keyed {
    // The variant's provider is a second mock, so the default upstream is
    // provably not used.
    let provider =
        aiflags_devtools::mock_upstream::MockUpstream::start("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
    let secrets = tempfile::tempdir().unwrap();
    std::fs::write(secrets.path().join("openai"), "sk-from-secret\n").unwrap();
    let labels_file = secrets.path().join("labels");
    std::fs::write(&labels_file, labels).unwrap();
    let stack = Stack::flags(&with_provider(&provider.url(), "openai"))
        .arg(&format!("--credentials-dir={}", secrets.path().display()))
        .arg(&format!("--pod-labels={}", labels_file.display()))
        .start()
        .await;
    (stack, provider, secrets)
}

#[tokio::test]
async fn a_variant_provider_gets_its_credential_and_the_app_key_stays_home() {
    let (stack, _provider, _secrets) = keyed_stack("app=\"assistant\"\n").await;
    let reply = stack
        .chat("gpt-4.1")
        .header("authorization", "Bearer app-key")
        .send()
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.header("x-mock-received-model"), "served-model");
    assert_eq!(
        reply.header("x-mock-authorization"),
        "Bearer sk-from-secret"
    );
    assert_eq!(reply.header("x-mock-received-path"), "/v1/chat/completions");
    assert_eq!(
        stack.upstream_requests("served-model").await,
        0,
        "went to the default upstream"
    );
}

#[tokio::test]
async fn anthropic_requests_carry_the_credential_as_x_api_key() {
    let (stack, _provider, _secrets) = keyed_stack("app=\"assistant\"\n").await;
    let reply = stack
        .post("/v1/messages")
        .json(json!({"model": "claude-3-5-haiku", "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]}))
        .header("x-api-key", "app-key")
        .send()
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.header("x-mock-api-key"), "sk-from-secret");
    assert_eq!(reply.json()["type"], "message");
}

#[tokio::test]
async fn flags_for_other_pods_do_not_apply_and_the_app_auth_passes_through() {
    let (stack, _provider, _secrets) = keyed_stack("app=\"other\"\n").await;
    let reply = stack
        .chat("gpt-4.1")
        .header("authorization", "Bearer app-key")
        .send()
        .await;
    assert_eq!(reply.header("x-aiflags-flag"), "");
    assert_eq!(reply.header("x-mock-received-model"), "gpt-4.1");
    assert_eq!(reply.header("x-mock-authorization"), "Bearer app-key");
    assert!(reply.header("x-mock-host").starts_with("127.0.0.1:"));
}
