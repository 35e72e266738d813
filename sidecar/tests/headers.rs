//! What crosses the proxy in headers: the app's key only goes where it was
//! meant to, our own headers stay ours, and flagged responses come back
//! uncompressed so their usage can be read.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::support;

use aiflags_devtools::mock_upstream::MockUpstream;
use support::Stack;

fn flag_with_provider(base_url: &str) -> String {
    format!(
        r#"
apiVersion: aiflags.dev/v1alpha1
kind: AIFeatureFlag
metadata: {{name: routed}}
spec:
  match: {{models: ["gpt-4.1"]}}
  defaultVariant: elsewhere
  variants:
    - {{name: elsewhere, model: gpt-4.1-mini, provider: {{baseUrl: "{base_url}"}}}}
"#
    )
}

#[tokio::test]
async fn the_app_key_does_not_follow_a_flag_to_another_host() {
    let mock = MockUpstream::start("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let mock_port = mock.addr.port();
    // `localhost` is the same mock as the default upstream, but another origin.
    let stack = Stack::flags(&flag_with_provider(&format!(
        "http://localhost:{mock_port}"
    )))
    .upstream(&format!("http://127.0.0.1:{mock_port}"))
    .start()
    .await;
    let reply = stack
        .chat("gpt-4.1")
        .header("authorization", "Bearer sk-app-key")
        .header("api-key", "azure-app-key")
        .send()
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.header("x-mock-saw-authorization"), "no");
    assert_eq!(reply.header("x-mock-received-model"), "gpt-4.1-mini");

    // A provider at the default origin is the app's own provider: its key goes.
    let home = Stack::flags(&flag_with_provider(&format!(
        "http://127.0.0.1:{mock_port}"
    )))
    .upstream(&format!("http://127.0.0.1:{mock_port}"))
    .start()
    .await;
    let reply = home
        .chat("gpt-4.1")
        .header("authorization", "Bearer sk-app-key")
        .send()
        .await;
    assert_eq!(reply.header("x-mock-authorization"), "Bearer sk-app-key");
}

#[tokio::test]
async fn flagged_requests_ask_for_identity_encoding_and_pass_through_keeps_the_apps() {
    let stack = Stack::flags(
        &flag_with_provider("http://127.0.0.1:9")
            .replace(", provider: {baseUrl: \"http://127.0.0.1:9\"}", ""),
    )
    .start()
    .await;
    let flagged = stack
        .chat("gpt-4.1")
        .header("accept-encoding", "gzip, br")
        .header("x-aiflags-flag", "routed")
        .send()
        .await;
    assert_eq!(flagged.header("x-aiflags-flag"), "routed");
    assert_eq!(flagged.header("x-mock-accept-encoding"), "identity");
    assert_eq!(
        flagged.header("x-mock-aiflags-flag"),
        "",
        "our header went upstream"
    );
    let passed = stack
        .chat("some-other-model")
        .header("accept-encoding", "gzip, br")
        .send()
        .await;
    assert_eq!(passed.header("x-mock-accept-encoding"), "gzip, br");
}
