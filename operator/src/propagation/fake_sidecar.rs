//! A real HTTP server on loopback standing in for a sidecar's admin
//! endpoint: it answers `/metrics` with whatever the test sets, and counts
//! the requests.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures::stream;
use http::{Response, StatusCode};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

type Body = http_body_util::combinators::BoxBody<Bytes, Infallible>;

/// What the fake answers.
#[derive(Clone, Debug)]
pub(crate) enum Metrics {
    /// 200 with this body, sent in chunks of at most this many bytes.
    Text(String, usize),
    /// 200 with this body, then the body never ends.
    TextThenHang(String),
    /// This status, empty body.
    Status(u16),
    /// Never answers.
    Hang,
}

pub(crate) struct FakeSidecar {
    pub(crate) addr: SocketAddr,
    answer: Arc<Mutex<Metrics>>,
    requests: Arc<AtomicUsize>,
}

/// The metrics text of a sidecar serving `revision`, the families in name
/// order as the prometheus crate writes them.
pub(crate) fn serving(revision: &str) -> String {
    format!(
        "# HELP aiflags_active_requests Requests in flight\n\
         # TYPE aiflags_active_requests gauge\n\
         aiflags_active_requests 0\n\
         # HELP aiflags_config_reloads_total Config loads\n\
         # TYPE aiflags_config_reloads_total counter\n\
         aiflags_config_reloads_total{{result=\"ok\"}} 1\n\
         # HELP aiflags_config_revision_info The config revision this sidecar serves (value 1)\n\
         # TYPE aiflags_config_revision_info gauge\n\
         aiflags_config_revision_info{{revision=\"{revision}\"}} 1\n\
         # HELP aiflags_requests_total Requests\n\
         # TYPE aiflags_requests_total counter\n\
         aiflags_requests_total{{code=\"200\",flag=\"summarizer\",model=\"gpt-4o-mini\",operation=\"chat\",provider=\"openai\",variant=\"stable\"}} 12\n"
    )
}

/// The metrics text of a sidecar with no config loaded.
pub(crate) fn without_config() -> String {
    "# HELP aiflags_active_requests Requests in flight\n\
     # TYPE aiflags_active_requests gauge\n\
     aiflags_active_requests 0\n"
        .to_string()
}

impl FakeSidecar {
    pub(crate) async fn start(answer: Metrics) -> FakeSidecar {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let answer = Arc::new(Mutex::new(answer));
        let requests = Arc::new(AtomicUsize::new(0));
        let (shared, count) = (answer.clone(), requests.clone());
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let (shared, count) = (shared.clone(), count.clone());
                tokio::spawn(async move {
                    let service =
                        service_fn(move |request: http::Request<hyper::body::Incoming>| {
                            assert_eq!(request.uri().path(), "/metrics");
                            count.fetch_add(1, Ordering::SeqCst);
                            let answer = shared.lock().expect("not poisoned").clone();
                            async move { Ok::<_, Infallible>(respond(answer).await) }
                        });
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        FakeSidecar {
            addr,
            answer,
            requests,
        }
    }

    pub(crate) fn answer(&self, answer: Metrics) {
        *self.answer.lock().expect("not poisoned") = answer;
    }

    pub(crate) fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

async fn respond(answer: Metrics) -> Response<Body> {
    let chunks: Vec<Bytes> = match &answer {
        Metrics::Text(text, size) => text
            .as_bytes()
            .chunks((*size).max(1))
            .map(Bytes::copy_from_slice)
            .collect(),
        Metrics::TextThenHang(text) => vec![Bytes::from(text.clone())],
        Metrics::Status(_) => Vec::new(),
        Metrics::Hang => {
            std::future::pending::<()>().await;
            Vec::new()
        }
    };
    let frames = stream::iter(chunks.into_iter().map(|c| Ok(Frame::data(c))));
    let body: Body = match answer {
        Metrics::TextThenHang(_) => {
            let endless = futures::StreamExt::chain(frames, stream::pending());
            StreamBody::new(endless).boxed()
        }
        _ => StreamBody::new(frames).boxed(),
    };
    let status = match answer {
        Metrics::Status(code) => StatusCode::from_u16(code).expect("status"),
        _ => StatusCode::OK,
    };
    let mut response = Response::new(body);
    *response.status_mut() = status;
    response
}
