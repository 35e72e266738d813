//! `run`: the controller, its HTTP endpoint, and graceful shutdown, wired together.

use std::net::SocketAddr;
use std::sync::Arc;

use aiflags_api::{AIFeatureFlag, CONFIG_MAP_NAME};
use anyhow::Context as _;
use futures::{FutureExt, StreamExt};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ListParams};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::{Controller, watcher};
use kube::{Client, ResourceExt};
use tokio::net::TcpListener;

use crate::controller::config_map::managed_selector;
use crate::controller::{Context, error_policy, reconcile};
use crate::metrics::Metrics;
use crate::server::{self, Probe};

pub struct RunOptions {
    pub metrics_listen: SocketAddr,
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

    let controller = Controller::new(flags, watcher::Config::default().any_semantic());
    let store = controller.store();
    tokio::spawn(mark_ready(store.clone(), probe));
    // A changed or deleted ConfigMap re-reconciles its namespace's flags:
    // statuses learn the new revision and manual edits are undone.
    let config_maps = watcher::Config::default()
        .labels(&managed_selector())
        .fields(&format!("metadata.name={CONFIG_MAP_NAME}"));
    let ctx = Arc::new(Context::new(client.clone(), metrics));
    controller
        .watches(Api::<ConfigMap>::all(client), config_maps, move |cm| {
            flags_in_namespace(&store, cm.namespace().as_deref())
        })
        .graceful_shutdown_on(shutdown.clone())
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            match result {
                Ok((flag, _)) => tracing::debug!(%flag, "reconcile finished"),
                Err(error) => tracing::warn!(%error, "controller error"),
            }
        })
        .await;
    tracing::info!("controller stopped");
    server.await.context("metrics server task")?;
    Ok(())
}

fn flags_in_namespace(
    store: &Store<AIFeatureFlag>,
    namespace: Option<&str>,
) -> Vec<ObjectRef<AIFeatureFlag>> {
    store
        .state()
        .iter()
        .filter(|f| f.namespace().as_deref() == namespace)
        .map(|f| ObjectRef::from_obj(f.as_ref()))
        .collect()
}

async fn mark_ready(store: Store<AIFeatureFlag>, probe: Arc<Probe>) {
    if store.wait_until_ready().await.is_ok() {
        tracing::info!("initial list of AIFeatureFlags done; ready");
        probe.set_ready();
    }
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
