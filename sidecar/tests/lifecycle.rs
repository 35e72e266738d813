//! Serving over h2c, and shutting down without dropping in-flight requests.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::support;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use support::{Stack, within};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

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

/// A connection with no request in flight is closed once it has been idle
/// for `--idle-timeout`, over HTTP/1 and over h2c; one whose stream outlasts
/// that timeout is not cut.
#[tokio::test]
async fn idle_connections_close_after_the_idle_timeout_and_busy_ones_do_not() {
    let stack = Stack::flags(SLOW).arg("--idle-timeout=300ms").start().await;
    // A stream of the slow mock lasts longer than the idle timeout.
    let streamed = stack.client.chat("gpt-4o-mini").streaming().open().await;
    let request = || {
        http::Request::get(format!("http://{}/v1/models", stack.sidecar.addr))
            .body(Full::new(Bytes::new()))
            .unwrap()
    };
    let connect = || tokio::net::TcpStream::connect(stack.sidecar.addr);
    // One request on a connection of its own, then nothing; the sidecar
    // ends the connection, and the client's side of it finishes cleanly.
    let (mut http1, connection) = hyper::client::conn::http1::handshake::<_, Full<Bytes>>(
        TokioIo::new(connect().await.unwrap()),
    )
    .await
    .unwrap();
    let http1_connection = tokio::spawn(connection);
    let response = within("the HTTP/1 request", http1.send_request(request()))
        .await
        .unwrap();
    within("its body", response.into_body().collect())
        .await
        .unwrap();
    let (mut h2, connection) = hyper::client::conn::http2::handshake::<_, _, Full<Bytes>>(
        TokioExecutor::new(),
        TokioIo::new(connect().await.unwrap()),
    )
    .await
    .unwrap();
    let h2_connection = tokio::spawn(connection);
    let response = within("the h2c request", h2.send_request(request()))
        .await
        .unwrap();
    within("its body", response.into_body().collect())
        .await
        .unwrap();
    within("the idle HTTP/1 connection to be closed", http1_connection)
        .await
        .unwrap()
        .unwrap();
    within("the idle h2c connection to be closed", h2_connection)
        .await
        .unwrap()
        .unwrap();
    let body = within("the stream", streamed.into_body().collect())
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&body.to_bytes()).into_owned();
    assert!(text.contains("[DONE]"), "{text}");
}

/// A client that stops reading its response is cut off once the sidecar's
/// writes to it have made no progress for `--body-idle-timeout`, and the
/// upstream request behind it ends with it.
#[tokio::test]
async fn a_client_that_stops_reading_is_cut_off_and_so_is_its_upstream() {
    // An upstream sending a body far larger than the sockets' buffers, as
    // fast as it is taken; it reports how its sending ended.
    let upstream = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream_addr = upstream.local_addr().unwrap();
    let (ended, sending_ended) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let (mut socket, _) = upstream.accept().await.unwrap();
        read_head(&mut socket).await;
        let head = "HTTP/1.1 200 OK\r\ncontent-type: application/octet-stream\r\ntransfer-encoding: chunked\r\n\r\n";
        let chunk = [b'x'; 64 * 1024];
        let mut sent = 0usize;
        let mut result = socket.write_all(head.as_bytes()).await;
        while result.is_ok() && sent < 1 << 30 {
            result = async {
                socket.write_all(b"10000\r\n").await?;
                socket.write_all(&chunk).await?;
                socket.write_all(b"\r\n").await
            }
            .await;
            sent += chunk.len();
        }
        let _ = ended.send(result.is_err().then_some(sent));
    });
    let stack = Stack::bare()
        .upstream(&format!("http://{upstream_addr}"))
        .arg("--body-idle-timeout=500ms")
        .start()
        .await;
    let mut client = tokio::net::TcpStream::connect(stack.sidecar.addr)
        .await
        .unwrap();
    client
        .write_all(b"GET /v1/files/big/content HTTP/1.1\r\nhost: sidecar\r\n\r\n")
        .await
        .unwrap();
    // The head arrives; then the client reads no more (and stays connected).
    let mut first = [0u8; 1024];
    let n = within("the response head", client.read(&mut first))
        .await
        .unwrap();
    assert!(first[..n].starts_with(b"HTTP/1.1 200"), "{:?}", &first[..n]);
    let cut = within("the upstream's sending to end", sending_ended)
        .await
        .unwrap();
    assert!(
        cut.is_some(),
        "the upstream sent its whole body to a client that does not read"
    );
    drop(client);
}

/// Reads a request head (up to its blank line).
async fn read_head(socket: &mut tokio::net::TcpStream) {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if socket.read(&mut byte).await.unwrap() == 0 {
            return;
        }
        head.push(byte[0]);
    }
}
