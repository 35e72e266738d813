//! The admin endpoints the kubelet, Prometheus and the operator use.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::UNIX_EPOCH;

use http::{Method, Request, Response, StatusCode, header};
use hyper::body::Incoming;

use crate::body::{ProxyBody, full};
use crate::config::snapshot::SnapshotCell;
use crate::telemetry::SharedTelemetry;

pub(crate) struct Admin {
    pub config: Arc<SnapshotCell>,
    pub telemetry: SharedTelemetry,
}

impl Admin {
    pub(crate) async fn serve(
        self: Arc<Self>,
        request: Request<Incoming>,
    ) -> Result<Response<ProxyBody>, Infallible> {
        let snapshot = self.config.current();
        let (status, content_type, body) = match (request.method(), request.uri().path()) {
            (&Method::GET, "/healthz") => (StatusCode::OK, "text/plain", "ok\n".to_string()),
            (&Method::GET, "/readyz") if snapshot.is_some() => {
                (StatusCode::OK, "text/plain", "ready\n".to_string())
            }
            (&Method::GET, "/readyz") => (
                StatusCode::SERVICE_UNAVAILABLE,
                "text/plain",
                "no config loaded yet\n".to_string(),
            ),
            (&Method::GET, "/config") => {
                let json = match &snapshot {
                    Some(s) => serde_json::json!({
                        "revision": s.revision,
                        "source": s.source,
                        "loadedAt": s.loaded_at.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0),
                        "flags": s.flags.iter().map(|f| &*f.compiled).collect::<Vec<_>>(),
                    }),
                    None => serde_json::json!({"revision": null, "flags": []}),
                };
                (StatusCode::OK, "application/json", json.to_string())
            }
            (&Method::GET, "/metrics") => (
                StatusCode::OK,
                "text/plain; version=0.0.4",
                self.telemetry.render(),
            ),
            _ => (
                StatusCode::NOT_FOUND,
                "text/plain",
                "not found\n".to_string(),
            ),
        };
        let mut response = Response::new(full(body));
        *response.status_mut() = status;
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            http::HeaderValue::from_static(content_type),
        );
        Ok(response)
    }
}
