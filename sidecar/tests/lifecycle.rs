//! Serving over h2c, and shutting down without dropping in-flight requests.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::support;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use support::{Stack, within};

const SLOW: &str = r#"
apiVersion: aiflags.dev/v1alpha1
kind: AIFeatureFlag
metadata: {name: slow}
spec:
  match: {models: ["gpt-4o-mini"]}
  defaultVariant: s
  variants:
    - {name: s, model: mock-slow-stream}
  rollout:
    weights: {s: 100}
"#;

#[tokio::test]
async fn shutdown_drains_an_in_flight_stream_and_stops_accepting() {
    let Stack {
        sidecar,
        client,
        mock,
        dir: _dir,
    } = Stack::flags(SLOW).start().await;
    let addr = sidecar.addr;
    let response = client.chat("gpt-4o-mini").streaming().open().await;
    let shutdown = tokio::spawn(sidecar.shutdown());
    // Draining: the listener is closed while the stream goes on.
    support::eventually("the listener to close", || async {
        tokio::net::TcpStream::connect(addr).await.is_err()
    })
    .await;
    let body = within("the drained stream", response.into_body().collect())
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&body.to_bytes()).into_owned();
    assert!(text.contains("[DONE]"), "{text}");
    within("shutdown", shutdown).await.unwrap();
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "still accepting"
    );
    drop(mock);
}

#[tokio::test]
async fn h2c_clients_are_served() {
    let stack = Stack::flags(SLOW.replace("mock-slow-stream", "gpt-4.1").as_str())
        .start()
        .await;
    let h2: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http();
    let request = http::Request::post(format!("http://{}/v1/chat/completions", stack.sidecar.addr))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(
            r#"{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}"#,
        )))
        .unwrap();
    let response = within("h2c request", h2.request(request)).await.unwrap();
    assert_eq!(response.version(), http::Version::HTTP_2);
    assert_eq!(response.headers()["x-aiflags-model"], "gpt-4.1");
}
