//! A deterministic OpenAI- and Anthropic-compatible upstream for tests and
//! demos, in the TensorZero style: the model name picks the behaviour.
//!
//! - any other model answers normally; the reply names the model.
//! - `mock-error-500`: 500. `mock-429`: 429 with `retry-after: 1`.
//! - `mock-slow-first-token`: waits 3s before the response head.
//! - `mock-timeout`: never answers. `mock-slow-stream`: chunks 200ms apart.
//! - `mock-cut-stream`: a few chunks (or half the JSON), then the connection is cut.
//! - `mock-truncated-stream`: a few chunks, then a clean end without the end marker.
//! - `mock-malformed-sse`: a stream that is not valid SSE JSON.
//! - `mock-flaky-N`: fails the first N requests for that model, then answers.
//! - `mock-gzip-stream`: answers gzip-compressed (`content-encoding: gzip`)
//!   whatever `accept-encoding` asked for, streams chunk by chunk.
//! - `mock-gzip-cut-stream`: a gzip stream cut off after a few chunks.
//! - `mock-gzip-stall-stream`: a few gzip chunks, then silence with the
//!   stream held open until the client goes.
//!
//! [`Behaviour`] adds what a demo wants on top: model-like latency, and one
//! real model name that fails every Nth request so fallbacks show.
//!
//! Every response echoes what arrived (`x-mock-received-model`,
//! `x-mock-saw-headers` (every header name), `x-mock-saw-authorization`,
//! `x-mock-body-sha256`, …) so tests can assert on what the proxy sent. A
//! body is read as tolerantly as providers read it (a byte order mark, bytes
//! after the JSON, lone surrogate escapes); `x-mock-body-json` says how. `GET /mock/requests/{model}` counts requests per model,
//! `GET /mock/active-streams` the streams still sending.

mod echo;
mod gzip;
mod replies;

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Frame, Incoming};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};

use aiflags_api::Operation;
use http_body_util::Full;

use crate::serve::{Body as ProxyBody, BoxError};

pub use replies::Reply;

/// A running mock upstream.
pub struct MockUpstream {
    pub addr: SocketAddr,
    stop: watch::Sender<bool>,
}

/// Extra behaviour for demos; the default adds none.
#[derive(Clone, Debug, Default)]
pub struct Behaviour {
    /// Added before each answer, stretched deterministically by up to 2.5x so
    /// latency percentiles have a spread.
    pub latency: Duration,
    /// `(model, n)`: every `n`th request for that model gets a 503.
    pub failing_model: Option<(String, u32)>,
}

impl MockUpstream {
    pub async fn start(listen: SocketAddr) -> std::io::Result<MockUpstream> {
        Self::start_with(listen, Behaviour::default()).await
    }

    pub async fn start_with(
        listen: SocketAddr,
        behaviour: Behaviour,
    ) -> std::io::Result<MockUpstream> {
        let listener = TcpListener::bind(listen).await?;
        let addr = listener.local_addr()?;
        let (stop, stopped) = watch::channel(false);
        let state = Arc::new(MockState {
            behaviour,
            ..MockState::default()
        });
        let service = move |request| state.clone().handle(request);
        tokio::spawn(crate::serve::serve(
            listener,
            service,
            stopped,
            Duration::from_millis(100),
        ));
        Ok(MockUpstream { addr, stop })
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn stop(&self) {
        let _ = self.stop.send(true);
    }
}

impl Drop for MockUpstream {
    fn drop(&mut self) {
        self.stop();
    }
}

#[derive(Default)]
struct MockState {
    requests: Mutex<HashMap<String, u32>>,
    /// Streams still sending: a client that went away must bring this to 0.
    active_streams: Arc<AtomicI64>,
    behaviour: Behaviour,
}

/// What the mock learned about a request; echoed back as headers.
struct Seen {
    model: String,
    active: Arc<AtomicI64>,
    count: u32,
    headers: HeaderMap,
}

impl MockState {
    async fn handle(
        self: Arc<Self>,
        request: Request<Incoming>,
    ) -> Result<Response<ProxyBody>, Infallible> {
        let (parts, body) = request.into_parts();
        let bytes = body
            .collect()
            .await
            .map(|c| c.to_bytes())
            .unwrap_or_default();
        let path = parts.uri.path().to_string();
        if path == "/mock/active-streams" {
            let active = self.active_streams.load(Ordering::SeqCst);
            return Ok(json_response(StatusCode::OK, &json!({ "active": active })));
        }
        if let Some(model) = path.strip_prefix("/mock/requests/") {
            let count = self.count(model, false);
            return Ok(json_response(
                StatusCode::OK,
                &json!({ "model": model, "requests": count }),
            ));
        }
        let (body, read_as) = echo::read_json(&bytes);
        let model = body
            .get("model")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let seen = Seen {
            count: self.count(&model, true),
            model,
            active: self.active_streams.clone(),
            headers: echo::echo_headers(&parts.headers, &bytes, &body, read_as, &path),
        };
        let operation = (parts.method == Method::POST)
            .then(|| operation_for_path(&path))
            .flatten();
        let mut response = match operation {
            Some(operation) => match self.demo_behaviour(&seen).await {
                Some(failure) => failure,
                None => behave(operation, &body, &seen, bytes.len()).await,
            },
            None => json_response(
                StatusCode::OK,
                &json!({"object": "mock.echo", "method": parts.method.as_str(), "path": path}),
            ),
        };
        response.headers_mut().extend(seen.headers);
        Ok(response)
    }

    /// Waits the configured latency; answers 503 when this is the failing
    /// model's turn.
    async fn demo_behaviour(&self, seen: &Seen) -> Option<Response<ProxyBody>> {
        let b = &self.behaviour;
        if !b.latency.is_zero() {
            let stretch = 1.0 + f64::from(seen.count.wrapping_mul(7) % 16) / 10.0;
            tokio::time::sleep(b.latency.mul_f64(stretch)).await;
        }
        let (model, every) = b.failing_model.as_ref()?;
        (*model == seen.model && seen.count.is_multiple_of((*every).max(1))).then(|| {
            error(
                StatusCode::SERVICE_UNAVAILABLE,
                "mock overloaded (demo fault)",
            )
        })
    }

    /// Requests seen for a model; `add` counts this one.
    fn count(&self, model: &str, add: bool) -> u32 {
        let mut requests = self.requests.lock().unwrap_or_else(|e| e.into_inner());
        let count = requests.entry(model.to_string()).or_insert(0);
        if add {
            *count += 1;
        }
        *count
    }
}

/// The behaviour the model name asks for.
async fn behave(
    operation: Operation,
    body: &Value,
    seen: &Seen,
    body_len: usize,
) -> Response<ProxyBody> {
    let model = seen.model.as_str();
    let stream = body.get("stream").and_then(Value::as_bool).unwrap_or(false);
    let include_usage = body
        .pointer("/stream_options/include_usage")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let mut reply = Reply::new(operation, model, body_len, include_usage);
    reply.base64 = body.get("encoding_format").and_then(Value::as_str) == Some("base64");
    let flaky_failures = model
        .strip_prefix("mock-flaky-")
        .and_then(|n| n.parse::<u32>().ok());
    match model {
        "mock-error-500" => error(StatusCode::INTERNAL_SERVER_ERROR, "mock upstream error"),
        "mock-429" => {
            let mut response = error(StatusCode::TOO_MANY_REQUESTS, "mock rate limit");
            response
                .headers_mut()
                .insert("retry-after", HeaderValue::from_static("1"));
            response
                .headers_mut()
                .insert("retry-after-ms", HeaderValue::from_static("1000"));
            response
        }
        "mock-timeout" => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            error(StatusCode::GATEWAY_TIMEOUT, "mock gave up")
        }
        _ if flaky_failures.is_some_and(|n| seen.count <= n) => {
            error(StatusCode::SERVICE_UNAVAILABLE, "mock flaky failure")
        }
        _ => {
            if model == "mock-slow-first-token" {
                tokio::time::sleep(Duration::from_secs(3)).await;
            }
            if model == "mock-malformed-sse" && stream {
                return sse(
                    &seen.active,
                    PACE,
                    vec![
                        Ok(Bytes::from_static(
                            b"data: {\"choices\": [{\"delta\": {\"content\": \"ok\"}}]}\n\n",
                        )),
                        Ok(Bytes::from_static(b"data: {not json at all\n\n")),
                        Ok(Bytes::from_static(
                            b"event without a blank line\ndata: \xff\xfe\n\n",
                        )),
                        Ok(Bytes::from_static(b"data: [DONE]\n\n")),
                    ],
                );
            }
            if !stream && model == "mock-cut-stream" {
                let whole = reply.whole().to_string();
                let half = Bytes::from(whole[..whole.len() / 2].to_string());
                let mut response = sse(
                    &seen.active,
                    PACE,
                    vec![Ok(half), Err("mock cut the response".into())],
                );
                response.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                );
                return response;
            }
            if let Some(end) = gzip::GzipEnd::for_model(model) {
                return gzip::gzipped(&seen.active, stream, &reply, end);
            }
            if !stream {
                return json_response(StatusCode::OK, &reply.whole());
            }
            let mut chunks: Vec<Result<Bytes, BoxError>> =
                reply.stream().into_iter().map(Ok).collect();
            if model == "mock-cut-stream" {
                chunks.truncate(2);
                chunks.push(Err("mock cut the stream".into()));
            }
            if model == "mock-truncated-stream" {
                chunks.truncate(2);
            }
            let pace = if model == "mock-slow-stream" {
                Duration::from_millis(200)
            } else {
                PACE
            };
            sse(&seen.active, pace, chunks)
        }
    }
}

fn full(bytes: impl Into<Bytes>) -> ProxyBody {
    Full::new(bytes.into())
        .map_err(|e| match e {})
        .boxed_unsync()
}

/// The operations the mock answers, by path; anything else is echoed.
fn operation_for_path(path: &str) -> Option<Operation> {
    match path.strip_suffix('/').unwrap_or(path) {
        "/v1/chat/completions" => Some(Operation::Chat),
        "/v1/responses" => Some(Operation::Responses),
        "/v1/completions" => Some(Operation::Completions),
        "/v1/embeddings" => Some(Operation::Embeddings),
        "/v1/messages" => Some(Operation::Messages),
        _ => None,
    }
}

pub(super) fn error(status: StatusCode, message: &str) -> Response<ProxyBody> {
    let body =
        json!({"error": {"message": message, "type": "mock_error", "param": null, "code": null}});
    json_response(status, &body)
}

fn json_response(status: StatusCode, body: &Value) -> Response<ProxyBody> {
    let mut response = Response::new(full(body.to_string()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// Sends the chunks a few milliseconds apart, as a real model would, so the
/// proxy sees them arrive separately. An `Err` cuts the connection.
fn sse(
    active: &Arc<AtomicI64>,
    pace: Duration,
    chunks: Vec<Result<Bytes, BoxError>>,
) -> Response<ProxyBody> {
    sse_then(active, pace, chunks, false)
}

/// [`sse`], then, if `stall`, the stream stays open without a byte more
/// until the client goes.
pub(super) fn sse_then(
    active: &Arc<AtomicI64>,
    pace: Duration,
    chunks: Vec<Result<Bytes, BoxError>>,
    stall: bool,
) -> Response<ProxyBody> {
    let (tx, rx) = mpsc::channel::<Result<Frame<Bytes>, BoxError>>(1);
    let active = ActiveStream::new(active.clone());
    tokio::spawn(async move {
        let _active = active;
        for chunk in chunks {
            tokio::time::sleep(pace).await;
            if tx.send(chunk.map(Frame::data)).await.is_err() {
                return;
            }
        }
        if stall {
            tx.closed().await;
        }
    });
    let frames = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    let mut response = Response::new(StreamBody::new(frames).boxed_unsync());
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    response
}

/// Time between streamed chunks.
pub(super) const PACE: Duration = Duration::from_millis(5);

/// Counts a stream while its sender lives.
struct ActiveStream(Arc<AtomicI64>);

impl ActiveStream {
    fn new(counter: Arc<AtomicI64>) -> ActiveStream {
        counter.fetch_add(1, Ordering::SeqCst);
        ActiveStream(counter)
    }
}

impl Drop for ActiveStream {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The `mock-upstream` subcommand: serve until ctrl-c or SIGTERM.
pub async fn run(listen: SocketAddr) -> std::io::Result<()> {
    let mock = MockUpstream::start(listen).await?;
    tracing::info!(addr = %mock.addr, "mock upstream listening");
    crate::serve::shutdown_signal().await;
    mock.stop();
    Ok(())
}
