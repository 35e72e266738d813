//! The running sidecar: the data listener the app's SDKs talk to, the admin
//! listener the kubelet and Prometheus use, and the config reloader. All
//! three stop together and drain gracefully.

pub(crate) mod admin;
pub(crate) mod conn;

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use self::admin::Admin;
use self::conn::{ListenerLimits, Shutdown, fit_caps, serve};
use crate::budget::Budget;
use crate::circuit::BreakerSettings;
use crate::config::snapshot::SnapshotCell;
use crate::config::source::{ConfigLoader, spawn_reloader};
use crate::config::watch::{WatchTarget, own_namespace, spawn_watch};
use crate::record::Reporter;
use crate::respond::StreamContext;
use crate::route::{Limits, Route};
use crate::settings::Settings;
use crate::telemetry::SharedTelemetry;
use crate::telemetry::access_log::AccessLog;
use crate::telemetry::metrics::Metrics;
use crate::upstream::Upstream;
use crate::upstream::headers::HeaderPolicy;

/// A running sidecar.
pub struct Sidecar {
    pub addr: SocketAddr,
    pub admin_addr: SocketAddr,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Sidecar {
    /// Binds both listeners, loads the config once, and starts serving.
    pub async fn start(settings: Settings, metrics: Arc<Metrics>) -> std::io::Result<Sidecar> {
        let access_log = match &settings.access_log {
            Some(sink) => Some(AccessLog::start(
                sink.clone(),
                settings.log_format,
                metrics.access_log_dropped.clone(),
            )?),
            None => None,
        };
        let telemetry: SharedTelemetry = metrics;
        let data = conn::bind(settings.listen)?;
        let admin = conn::bind(settings.admin_listen)?;
        let (addr, admin_addr) = (data.local_addr()?, admin.local_addr()?);
        let (stop, stopped) = watch::channel(false);
        let config = Arc::new(SnapshotCell::default());
        let loader = ConfigLoader::new(
            settings.source.clone(),
            settings.pod_labels.clone(),
            settings.upstreams.clone(),
        );
        let mut tasks = Vec::new();
        let watch_updates = match &settings.watch {
            Some(watch) => match watch.namespace.clone().or_else(own_namespace) {
                Some(namespace) => {
                    let (updates, received) = mpsc::channel(16);
                    let label = format!("watch:{namespace}/{}", watch.config_map);
                    let target = WatchTarget {
                        name: watch.config_map.clone(),
                        namespace,
                        api_url: watch.api_url.clone(),
                    };
                    tasks.push(spawn_watch(target, updates, stopped.clone()));
                    Some((label, received))
                }
                None => {
                    tracing::warn!(
                        "--watch-config-map is set but no namespace is known (give --namespace): the mounted file alone serves"
                    );
                    None
                }
            },
            None => None,
        };
        let reloader = spawn_reloader(
            loader,
            config.clone(),
            telemetry.clone(),
            settings.reload_interval,
            watch_updates,
            stopped.clone(),
        );
        let upstream = Upstream::new(
            &settings.upstreams,
            HeaderPolicy::new(&settings.credential_headers),
            settings.credentials_dir.clone(),
        );
        let breaker = BreakerSettings {
            failure_threshold: settings.breaker_threshold,
            cooldown: settings.breaker_cooldown,
        };
        let cut_streams = CancellationToken::new();
        let reporter = Arc::new(Reporter {
            telemetry: telemetry.clone(),
            access_log,
        });
        let route = Arc::new(Route::new(
            upstream,
            config.clone(),
            breaker,
            reporter,
            Budget::new(settings.buffer_budget_bytes),
            Limits {
                max_body_bytes: settings.max_body_bytes,
                max_response_bytes: settings.max_response_bytes,
                body_idle: settings.body_idle_timeout,
            },
            StreamContext {
                drain: cut_streams.clone(),
            },
        ));
        let (data_cap, admin_cap) =
            fit_caps(settings.max_connections, settings.admin_max_connections);
        let limits = |name, max_connections| ListenerLimits {
            name,
            max_connections,
            first_byte: settings.first_byte_timeout,
            idle: settings.idle_timeout,
            stall: settings.body_idle_timeout,
        };
        let shutdown = || Shutdown {
            stop: stopped.clone(),
            drain: settings.drain_timeout,
            cut_streams: cut_streams.clone(),
        };
        // Boxed: hyper's HTTP/1 server keeps one slot the size of the
        // service's future for each connection's whole life, and a request's
        // future is 5.3 KB (the route's attempt and pass-through states).
        // A box is freed when the response head goes out, so a connection
        // streaming its answer holds a pointer instead: 1,000 open streams
        // 58.7 -> 47.8 MB (docs/benchmark.md, "Memory per open stream").
        // Written into the box where it is built: `Box::pin` built it on the
        // stack and copied all 5.3 KB (~1,200 instructions a request in
        // all that way, ~800 this way).
        let serve_data = move |request| {
            Box::into_pin(Box::write(Box::new_uninit(), route.clone().serve(request)))
        };
        let admin_state = Arc::new(Admin {
            config,
            telemetry: telemetry.clone(),
        });
        let serve_admin = move |request| admin_state.clone().serve(request);
        tracing::info!(%addr, %admin_addr, data_cap, admin_cap, "aiflags sidecar listening");
        Ok(Sidecar {
            addr,
            admin_addr,
            stop,
            tasks: tasks
                .into_iter()
                .chain([
                    reloader,
                    tokio::spawn(serve(
                        data,
                        serve_data,
                        limits("data", data_cap),
                        telemetry.clone(),
                        shutdown(),
                    )),
                    tokio::spawn(serve(
                        admin,
                        serve_admin,
                        limits("admin", admin_cap),
                        telemetry,
                        shutdown(),
                    )),
                ])
                .collect(),
        })
    }

    /// Stops accepting, lets in-flight requests finish within the drain
    /// timeout, ends streams still open with an error event, then returns.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        for task in self.tasks {
            let _ = task.await;
        }
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
