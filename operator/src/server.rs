//! The operator's HTTP endpoint: `/metrics`, `/healthz`, `/readyz`.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use http::{Method, Response, StatusCode, header};
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use crate::metrics::Metrics;

/// What the endpoints report.
pub struct Probe {
    pub metrics: Arc<Metrics>,
    /// Set once the controller's initial list of flags succeeded.
    pub ready: AtomicBool,
}

impl Probe {
    pub fn new(metrics: Arc<Metrics>) -> Self {
        Probe {
            metrics,
            ready: AtomicBool::new(false),
        }
    }

    pub fn set_ready(&self) {
        self.ready.store(true, Ordering::Release);
    }

    fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }
}

/// Answers one request; no socket involved, so tests call it directly.
pub fn respond(method: &Method, path: &str, probe: &Probe) -> Response<Full<Bytes>> {
    if method != Method::GET && method != Method::HEAD {
        return text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
    }
    match path {
        "/metrics" => {
            let mut response = text(StatusCode::OK, probe.metrics.encode());
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                header::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            response
        }
        "/healthz" => text(StatusCode::OK, "ok\n"),
        "/readyz" if probe.is_ready() => text(StatusCode::OK, "ready\n"),
        "/readyz" => text(
            StatusCode::SERVICE_UNAVAILABLE,
            "waiting for the initial list of AIFeatureFlags\n",
        ),
        _ => text(StatusCode::NOT_FOUND, "not found\n"),
    }
}

fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    response
}

/// Serves until `shutdown` resolves; connections in flight finish on their own.
pub async fn serve(listener: TcpListener, probe: Arc<Probe>, shutdown: impl Future<Output = ()>) {
    tokio::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            () = &mut shutdown => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(error) => {
                    // Usually out of file descriptors: keep serving the others.
                    tracing::warn!(%error, "accepting a metrics connection failed");
                    continue;
                }
            },
        };
        let probe = probe.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request: http::Request<hyper::body::Incoming>| {
                let response = respond(request.method(), request.uri().path(), &probe);
                async move { Ok::<_, Infallible>(response) }
            });
            if let Err(error) = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                tracing::debug!(%error, "metrics connection ended with an error");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn probe() -> Probe {
        Probe::new(Arc::new(Metrics::new().expect("metrics")))
    }

    async fn body(response: Response<Full<Bytes>>) -> String {
        let bytes = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        String::from_utf8(bytes.to_vec()).expect("utf-8")
    }

    #[tokio::test]
    async fn healthz_is_always_ok() {
        let response = respond(&Method::GET, "/healthz", &probe());
        assert_eq!(response.status(), StatusCode::OK);
    }

    #[tokio::test]
    async fn readyz_waits_for_the_initial_list() {
        let probe = probe();
        assert_eq!(
            respond(&Method::GET, "/readyz", &probe).status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
        probe.set_ready();
        assert_eq!(
            respond(&Method::GET, "/readyz", &probe).status(),
            StatusCode::OK
        );
    }

    #[tokio::test]
    async fn metrics_are_served_in_text_format() {
        let probe = probe();
        probe
            .metrics
            .reconcile_finished(probe.metrics.reconcile_started(), None);
        let response = respond(&Method::GET, "/metrics", &probe);
        assert_eq!(response.status(), StatusCode::OK);
        assert!(
            body(response)
                .await
                .contains("aiflags_operator_reconciles_total")
        );
    }

    #[tokio::test]
    async fn unknown_paths_and_methods_are_refused() {
        let probe = probe();
        assert_eq!(
            respond(&Method::GET, "/", &probe).status(),
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            respond(&Method::POST, "/healthz", &probe).status(),
            StatusCode::METHOD_NOT_ALLOWED
        );
    }

    #[tokio::test]
    async fn serves_over_tcp_until_shutdown() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve(listener, Arc::new(probe()), async {
            let _ = stopped.await;
        }));

        let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
        stream
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
            .await
            .expect("write");
        let mut reply = String::new();
        stream.read_to_string(&mut reply).await.expect("read");
        assert!(reply.starts_with("HTTP/1.1 200 OK"), "{reply}");

        stop.send(()).expect("server still running");
        tokio::time::timeout(std::time::Duration::from_secs(5), server)
            .await
            .expect("server stops on shutdown")
            .expect("server task");
    }
}
