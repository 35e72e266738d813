//! `run`: the controller, its HTTP endpoint, and graceful shutdown, wired together.

use std::net::SocketAddr;
use std::sync::Arc;

use aiflags_api::{AIFeatureFlag, CONFIG_MAP_NAME};
use anyhow::Context as _;
use futures::{FutureExt, Stream, StreamExt, stream};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::Client;
use kube::api::{Api, ListParams};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::{Controller, WatchStreamExt, watcher};
use tokio::net::TcpListener;

use crate::controller::config_map::managed_selector;
use crate::controller::triggers::flags_to_refresh;
use crate::controller::{Context, error_policy, reconcile};
use crate::injection::{self, InjectionOptions};
use crate::leader::{self, Elector, Leadership, LeaseSettings, Role};
use crate::metrics::Metrics;
use crate::propagation::metrics::PropagationMetrics;
use crate::propagation::{self, Propagation, proxy_pods};
use crate::rollout::analysis::prometheus::Prometheus;
use crate::server::{self, Probe};

pub struct RunOptions {
    pub metrics_listen: SocketAddr,
    pub injection: InjectionOptions,
    /// Where the rollout analysis asks; `None`: checks are inconclusive.
    pub prometheus: Option<Prometheus>,
    /// Elect a leader among replicas on this Lease; `None`: act alone.
    pub leader_election: Option<LeaseSettings>,
}

/// Runs until SIGTERM or ctrl-c, then lets reconciles in flight finish.
pub async fn run(options: RunOptions) -> anyhow::Result<()> {
    let client = Client::try_default()
        .await
        .context("connecting to the Kubernetes API (in-cluster config or kubeconfig)")?;
    let metrics = Arc::new(Metrics::new().context("registering metrics")?);
    let probe = Arc::new(Probe::new(metrics.clone()));
    let listener = TcpListener::bind(options.metrics_listen)
        .await
        .with_context(|| format!("listening on {}", options.metrics_listen))?;
    let shutdown = shutdown_signal().shared();
    let server = tokio::spawn(server::serve(listener, probe.clone(), shutdown.clone()));
    tracing::info!(listen = %options.metrics_listen, "serving /metrics, /healthz, /readyz");

    let flags = Api::<AIFeatureFlag>::all(client.clone());
    // Fail fast, with a hint, rather than retrying forever against a missing CRD.
    flags
        .list(&ListParams::default().limit(1))
        .await
        .context("listing AIFeatureFlags; is the CRD installed? (kubectl apply -f crds/)")?;

    // Every replica serves the webhook; only the leader reconciles, steps
    // rollouts, writes ConfigMaps and statuses, and offers restarts.
    let (done, controller_done) = tokio::sync::oneshot::channel::<()>();
    let (leadership, election) = match options.leader_election {
        Some(settings) => {
            tracing::info!(identity = %settings.identity, lease = %format!("{}/{}", settings.namespace, settings.name), "electing a leader");
            let elector = Elector::new(client.clone(), settings);
            let (leadership, task) = leader::spawn(elector, async move {
                let _ = controller_done.await;
            });
            (leadership, Some(task))
        }
        None => (Leadership::sole(), None),
    };
    let stop = {
        let (shutdown, leadership) = (shutdown.clone(), leadership.clone());
        async move {
            tokio::select! {
                () = shutdown => {},
                () = leadership.lost() => {},
            }
        }
        .shared()
    };

    let injection = injection::start(
        client.clone(),
        options.injection,
        &metrics,
        shutdown.clone(),
        (leadership.clone(), stop.clone()),
    )
    .await
    .context("starting sidecar injection")?;

    let controller = Controller::new(flags, watcher::Config::default().any_semantic());
    let store = controller.store();
    tokio::spawn(mark_ready(
        store.clone(),
        injection.namespaces.clone(),
        probe,
        leadership.clone(),
    ));
    // A changed or deleted ConfigMap re-reconciles the flags of its
    // namespace that need it: statuses learn the new revision and manual
    // edits are undone.
    let refresh = config_map_triggers(client.clone(), store.clone());
    let mut ctx = Context::new(client.clone(), metrics.clone(), store.clone());
    match &options.prometheus {
        Some(prometheus) => tracing::info!(
            url = prometheus.url(),
            "rollout analysis queries Prometheus"
        ),
        None => tracing::info!(
            "no Prometheus configured: rollouts with analysis hold at their first step"
        ),
    }
    ctx.prometheus = options.prometheus.map(Arc::new);
    let ctx = Arc::new(ctx);
    let propagation = Propagation::new(
        client.clone(),
        propagation::Settings::default(),
        ctx.written.clone(),
        PropagationMetrics::new(metrics.registry()).context("registering metrics")?,
    );
    let leading = tokio::select! {
        leading = leadership.acquired() => leading,
        () = shutdown.clone() => false,
    };
    if leading {
        tracing::info!("leading: reconciling flags");
        // Which revision the sidecars serve: status.proxies and Propagated.
        // The pod watch starts with the leadership: a candidate holds no cache.
        let (pods, watch_pods) = proxy_pods(client);
        tokio::spawn(watch_pods);
        tokio::spawn(propagation::run(propagation, store, pods, stop.clone()));
        controller
            .reconcile_on(refresh)
            .graceful_shutdown_on(stop.clone())
            .run(reconcile, error_policy, ctx)
            .for_each(|result| async move {
                match result {
                    Ok((flag, _)) => tracing::debug!(%flag, "reconcile finished"),
                    Err(error) => tracing::warn!(%error, "controller error"),
                }
            })
            .await;
        tracing::info!("controller stopped");
    }
    // Only now may another replica take over: release the lease.
    let _ = done.send(());
    if let Some(election) = election {
        election.await.context("leader election task")?;
    }
    if leadership.role() == Role::Lost {
        anyhow::bail!(
            "lost the leader election; exiting, to start again as a candidate \
             (the webhook of the other replicas keeps serving)"
        );
    }
    for task in injection.tasks {
        task.await.context("injection task")?;
    }
    server.await.context("metrics server task")?;
    Ok(())
}

/// The flags to re-reconcile after each event on the managed ConfigMaps.
fn config_map_triggers(
    client: Client,
    flags: Store<AIFeatureFlag>,
) -> impl Stream<Item = ObjectRef<AIFeatureFlag>> + Send + 'static {
    let config_maps = watcher::Config::default()
        .labels(&managed_selector())
        .fields(&format!("metadata.name={CONFIG_MAP_NAME}"));
    watcher(Api::<ConfigMap>::all(client), config_maps)
        .default_backoff()
        .filter_map(|event| async move {
            // The backoff retries the watch; an error only needs a trace.
            event
                .inspect_err(|error| tracing::warn!(%error, "watching {CONFIG_MAP_NAME} failed"))
                .ok()
        })
        .flat_map(move |event| stream::iter(flags_to_refresh(&flags.state(), &event)))
}

/// Ready once, when injection runs, the namespaces are listed (the
/// webhook decides by their labels) and, on the leader, the flags too. A
/// replica that does not lead is ready to serve the webhook.
async fn mark_ready(
    store: Store<AIFeatureFlag>,
    namespaces: Store<Namespace>,
    probe: Arc<Probe>,
    leadership: Leadership,
) {
    // With injection off nothing writes the namespace store, whose writer
    // is gone at once: that error means "nothing to wait for".
    let _ = namespaces.wait_until_ready().await;
    if leadership.role() == Role::Leading && store.wait_until_ready().await.is_err() {
        return;
    }
    tracing::info!("initial lists done; ready");
    probe.set_ready();
}

/// Resolves on ctrl-c or SIGTERM (what the kubelet sends before killing the pod).
async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::warn!(%error, "cannot listen for ctrl-c");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut sigterm) => {
                sigterm.recv().await;
            }
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutdown requested; finishing reconciles in flight");
}
