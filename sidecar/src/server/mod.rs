//! Listeners: the data plane the app's SDKs talk to, and the admin endpoints
//! the kubelet and Prometheus use. Both drain gracefully on shutdown.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use http::{Method, Request, Response, StatusCode, header};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::body::{ProxyBody, full};
use crate::circuit::BreakerSettings;
use crate::config_source::{ConfigLoader, spawn_reloader};
use crate::proxy::Proxy;
use crate::settings::Settings;
use crate::snapshot::SnapshotCell;
use crate::telemetry::SharedTelemetry;
use crate::upstream::Upstream;

/// A running sidecar.
pub struct Sidecar {
    pub addr: SocketAddr,
    pub admin_addr: SocketAddr,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Sidecar {
    /// Binds both listeners, loads the config once, and starts serving.
    pub async fn start(settings: Settings, telemetry: SharedTelemetry) -> std::io::Result<Sidecar> {
        let data = TcpListener::bind(settings.listen).await?;
        let admin = TcpListener::bind(settings.admin_listen).await?;
        let (addr, admin_addr) = (data.local_addr()?, admin.local_addr()?);
        let (stop, stopped) = watch::channel(false);
        let config = Arc::new(SnapshotCell::default());
        let loader = ConfigLoader::new(settings.source.clone(), settings.pod_labels.clone());
        let reloader = spawn_reloader(
            loader,
            config.clone(),
            telemetry.clone(),
            settings.reload_interval,
            stopped.clone(),
        );
        let upstream = Upstream::new(settings.upstreams.clone(), settings.credentials_dir.clone());
        let breaker = BreakerSettings {
            failure_threshold: settings.breaker_threshold,
            cooldown: settings.breaker_cooldown,
        };
        let proxy = Arc::new(Proxy::new(
            upstream,
            config.clone(),
            breaker,
            telemetry.clone(),
            settings.max_body_bytes,
        ));
        let drain = settings.drain_timeout;
        let serve_proxy = move |request| proxy.clone().serve(request);
        let admin_state = Arc::new(Admin { config, telemetry });
        let serve_admin = move |request| admin_state.clone().serve(request);
        tracing::info!(%addr, %admin_addr, "aiflags sidecar listening");
        Ok(Sidecar {
            addr,
            admin_addr,
            stop,
            tasks: vec![
                reloader,
                tokio::spawn(serve(data, serve_proxy, stopped.clone(), drain)),
                tokio::spawn(serve(admin, serve_admin, stopped, drain)),
            ],
        })
    }

    /// Stops accepting, lets in-flight requests finish within the drain
    /// timeout, then returns.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        for task in self.tasks {
            let _ = task.await;
        }
    }
}

/// Accepts connections until `stop`, then drains them for at most `drain`.
pub async fn serve<S, F>(
    listener: TcpListener,
    service: S,
    mut stop: watch::Receiver<bool>,
    drain: Duration,
) where
    S: Fn(Request<Incoming>) -> F + Clone + Send + 'static,
    F: Future<Output = Result<Response<ProxyBody>, Infallible>> + Send + 'static,
{
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // Bounded headers and a header read timeout: a slow or hostile client
    // cannot pin a connection (the body limit is enforced per request).
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(30))
        .max_headers(200);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(256 * 1024);
    let graceful = GracefulShutdown::new();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = stop.changed() => break,
        };
        let (stream, _) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of file descriptors and the like: back off, keep serving.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let service = service_fn(service.clone());
        let connection = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
        let connection = graceful.watch(connection.into_owned());
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(drain, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            timeout_ms = drain.as_millis(),
            "drain timeout passed with requests still in flight"
        );
    }
}

/// The admin endpoints.
struct Admin {
    config: Arc<SnapshotCell>,
    telemetry: SharedTelemetry,
}

impl Admin {
    async fn serve(
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
                        "revision": s.config.revision,
                        "source": s.source,
                        "loadedAt": s.loaded_at.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0),
                        "flags": s.config.flags,
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
        if let Ok(value) = content_type.parse() {
            response.headers_mut().insert(header::CONTENT_TYPE, value);
        }
        Ok(response)
    }
}

/// Resolves on SIGTERM (what the kubelet sends) or ctrl-c.
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}
