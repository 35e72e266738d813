//! A stand-in for the Kubernetes API server's ConfigMap endpoints, enough for
//! kube-runtime's watcher: list (`GET .../configmaps?fieldSelector=...`) and
//! watch (`...&watch=true`, a stream of JSON events). The test changes the
//! ConfigMap, makes the next watch answer `410 Gone` or an error, or takes
//! the whole server down and brings it back, and counts requests.
#![allow(
    dead_code,
    unreachable_pub,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, StreamBody, combinators::UnsyncBoxBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::broadcast;
use tokio::task::JoinHandle;

type Body = UnsyncBoxBody<Bytes, Infallible>;

/// What the next watch request gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NextWatch {
    Stream,
    /// An `ERROR` event with a 410 `Status`: the resource version is too old.
    Gone,
    /// A 500 answer.
    Fail,
}

struct State {
    namespace: String,
    name: String,
    /// The ConfigMap's `data["config.json"]`, or none.
    config: Mutex<Option<String>>,
    version: AtomicU32,
    /// Every event, with its resource version: a watch from version N gets
    /// the ones after N first, as an API server replays them.
    history: Mutex<Vec<(u32, String)>>,
    events: broadcast::Sender<(u32, String)>,
    next_watch: Mutex<NextWatch>,
    pub lists: AtomicU32,
    pub watches: AtomicU32,
    /// Open connections, so that going down closes them too.
    connections: Mutex<Vec<tokio::task::AbortHandle>>,
}

pub struct FakeApi {
    pub addr: SocketAddr,
    state: Arc<State>,
    server: Option<JoinHandle<()>>,
}

impl FakeApi {
    pub async fn start(namespace: &str, name: &str, config: Option<String>) -> FakeApi {
        let (events, _) = broadcast::channel(64);
        let state = Arc::new(State {
            namespace: namespace.into(),
            name: name.into(),
            config: Mutex::new(config),
            version: AtomicU32::new(100),
            history: Mutex::new(Vec::new()),
            events,
            next_watch: Mutex::new(NextWatch::Stream),
            lists: AtomicU32::new(0),
            watches: AtomicU32::new(0),
            connections: Mutex::new(Vec::new()),
        });
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = Some(tokio::spawn(serve(listener, state.clone())));
        FakeApi {
            addr,
            state,
            server,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Replaces the ConfigMap's config (or deletes the ConfigMap) and tells
    /// every open watch.
    pub fn set(&self, config: Option<String>) {
        let previous = std::mem::replace(&mut *self.state.config.lock().unwrap(), config.clone());
        let version = self.state.version.fetch_add(1, Ordering::SeqCst) + 1;
        let (kind, object) = match (&previous, &config) {
            (_, Some(text)) => (
                if previous.is_some() {
                    "MODIFIED"
                } else {
                    "ADDED"
                },
                config_map(&self.state, Some(text), version),
            ),
            (Some(text), None) => ("DELETED", config_map(&self.state, Some(text), version)),
            (None, None) => return,
        };
        let event = json!({"type": kind, "object": object}).to_string();
        self.state
            .history
            .lock()
            .unwrap()
            .push((version, event.clone()));
        let _ = self.state.events.send((version, event));
    }

    pub fn next_watch(&self, next: NextWatch) {
        *self.state.next_watch.lock().unwrap() = next;
    }

    /// Ends every open watch stream (as an API server restart does).
    pub fn end_watches(&self) {
        let _ = self.state.events.send((0, String::new()));
    }

    pub fn lists(&self) -> u32 {
        self.state.lists.load(Ordering::SeqCst)
    }

    pub fn watches(&self) -> u32 {
        self.state.watches.load(Ordering::SeqCst)
    }

    /// Takes the server down: connections refused until `restart`.
    pub fn stop(&mut self) {
        if let Some(server) = self.server.take() {
            server.abort();
        }
        for connection in self.state.connections.lock().unwrap().drain(..) {
            connection.abort();
        }
        self.end_watches();
    }

    /// Brings it back on the same address.
    pub async fn restart(&mut self) {
        let listener = TcpListener::bind(self.addr).await.unwrap();
        self.server = Some(tokio::spawn(serve(listener, self.state.clone())));
    }
}

impl Drop for FakeApi {
    fn drop(&mut self) {
        self.stop();
    }
}

fn config_map(state: &State, config: Option<&String>, version: u32) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": state.name,
            "namespace": state.namespace,
            "resourceVersion": version.to_string(),
            "uid": "1f0e7d2a-0000-4000-8000-000000000001",
        },
        "data": config.map(|c| json!({"config.json": c})).unwrap_or(json!({})),
    })
}

async fn serve(listener: TcpListener, state: Arc<State>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let for_service = state.clone();
        let connection = tokio::spawn(async move {
            let service = service_fn(move |request| handle(for_service.clone(), request));
            let _ = auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
        state
            .connections
            .lock()
            .unwrap()
            .push(connection.abort_handle());
    }
}

async fn handle(
    state: Arc<State>,
    request: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    let path = request.uri().path().to_string();
    let query = request.uri().query().unwrap_or("").to_string();
    let expected = format!("/api/v1/namespaces/{}/configmaps", state.namespace);
    let selector = format!("fieldSelector=metadata.name%3D{}", state.name);
    if path != expected || !query.contains(&selector) {
        return Ok(answer(
            StatusCode::NOT_FOUND,
            json!({"kind": "Status", "code": 404, "message": format!("unexpected {path}?{query}")}),
        ));
    }
    if !query.contains("watch=true") {
        state.lists.fetch_add(1, Ordering::SeqCst);
        let version = state.version.load(Ordering::SeqCst);
        let config = state.config.lock().unwrap().clone();
        let items: Vec<Value> = config
            .iter()
            .map(|c| config_map(&state, Some(c), version))
            .collect();
        return Ok(answer(
            StatusCode::OK,
            json!({"apiVersion": "v1", "kind": "ConfigMapList", "metadata": {"resourceVersion": version.to_string()}, "items": items}),
        ));
    }
    state.watches.fetch_add(1, Ordering::SeqCst);
    let next = std::mem::replace(&mut *state.next_watch.lock().unwrap(), NextWatch::Stream);
    match next {
        NextWatch::Fail => {
            return Ok(answer(
                StatusCode::INTERNAL_SERVER_ERROR,
                json!({"kind": "Status", "code": 500, "message": "etcd is having a bad day"}),
            ));
        }
        NextWatch::Gone => {
            let gone = json!({"type": "ERROR", "object": {"kind": "Status", "apiVersion": "v1", "status": "Failure",
                "message": "too old resource version", "reason": "Expired", "code": 410}});
            let body = http_body_util::Full::new(Bytes::from(format!("{gone}\n"))).boxed_unsync();
            return Ok(Response::new(body));
        }
        NextWatch::Stream => {}
    }
    let since: u32 = query
        .split('&')
        .find_map(|pair| pair.strip_prefix("resourceVersion="))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut events = state.events.subscribe();
    let missed: Vec<(u32, String)> = state
        .history
        .lock()
        .unwrap()
        .iter()
        .filter(|(version, _)| *version > since)
        .cloned()
        .collect();
    let frames = async_stream(move |tx| async move {
        let mut last = since;
        for (version, event) in missed {
            last = version;
            if tx
                .send(Frame::data(Bytes::from(format!("{event}\n"))))
                .await
                .is_err()
            {
                return;
            }
        }
        while let Ok((version, event)) = events.recv().await {
            if event.is_empty() {
                return;
            }
            if version <= last {
                continue;
            }
            last = version;
            if tx
                .send(Frame::data(Bytes::from(format!("{event}\n"))))
                .await
                .is_err()
            {
                return;
            }
        }
    });
    let mut response = Response::new(StreamBody::new(frames).boxed_unsync());
    response
        .headers_mut()
        .insert("content-type", "application/json".parse().unwrap());
    Ok(response)
}

/// A stream of frames fed by a task.
fn async_stream<F, Fut>(feed: F) -> impl futures::Stream<Item = Result<Frame<Bytes>, Infallible>>
where
    F: FnOnce(tokio::sync::mpsc::Sender<Frame<Bytes>>) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    tokio::spawn(feed(tx));
    futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|frame| (Ok(frame), rx))
    })
}

fn answer(status: StatusCode, body: Value) -> Response<Body> {
    let mut response =
        Response::new(http_body_util::Full::new(Bytes::from(body.to_string())).boxed_unsync());
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert("content-type", "application/json".parse().unwrap());
    response
}
