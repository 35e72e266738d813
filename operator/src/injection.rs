//! Starts what sidecar injection needs next to the flag controller: the
//! namespace cache, the webhook's HTTPS server with its certificate reloader,
//! and the restart offer's three controllers (Deployments, StatefulSets,
//! DaemonSets).

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use futures::{Stream, StreamExt, stream};
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use k8s_openapi::api::core::v1::Namespace;
use kube::api::Api;
use kube::core::PartialObjectMeta;
use kube::runtime::events::Recorder;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{Controller, WatchStreamExt, watcher};
use kube::{Client, ResourceExt};
use tokio::net::TcpListener;
use tokio::sync::broadcast;
use tokio::task::JoinHandle;

use crate::leader::Leadership;
use crate::metrics::Metrics;
use crate::restart::{self, workload::Workload};
use crate::webhook::config::InjectionConfig;
use crate::webhook::metrics::WebhookMetrics;
use crate::webhook::tls::{CertFiles, CertReloader, Reload};
use crate::webhook::{Webhook, server};

/// How often the serving certificate's files are compared with the loaded ones.
const CERT_RELOAD_INTERVAL: Duration = Duration::from_secs(10);

pub struct InjectionOptions {
    pub config: InjectionConfig,
    /// Serve the webhook here, with `tls.crt`/`tls.key` from `cert_dir`.
    pub webhook: Option<(SocketAddr, PathBuf)>,
    /// The least time between two restarts; `None` turns the restart offer off.
    pub restart_spacing: Option<Duration>,
}

/// What was started; `tasks` end after shutdown.
pub struct Injection {
    pub namespaces: Store<Namespace>,
    pub tasks: Vec<JoinHandle<()>>,
}

/// `leading`: the leadership, and what stops the restart offer (shutdown
/// or lost leadership): only the leader offers restarts.
pub async fn start<S>(
    client: Client,
    options: InjectionOptions,
    metrics: &Metrics,
    shutdown: impl Future<Output = ()> + Clone + Send + Sync + 'static,
    leading: (Leadership, S),
) -> anyhow::Result<Injection>
where
    S: Future<Output = ()> + Clone + Send + Sync + 'static,
{
    let (namespaces, writer) = reflector::store::<Namespace>();
    let (changed, _) = broadcast::channel::<String>(1024);
    let mut tasks = Vec::new();
    if options.webhook.is_none() && options.restart_spacing.is_none() {
        return Ok(Injection { namespaces, tasks });
    }
    let all = Api::<Namespace>::all(client.clone());
    let watch = watcher(all, watcher::Config::default().any_semantic())
        .default_backoff()
        .reflect(writer)
        .applied_objects();
    let announce = changed.clone();
    tasks.push(tokio::spawn(watch.take_until(shutdown.clone()).for_each(
        move |namespace| {
            match namespace {
                // No receiver (restart offer off) is fine.
                Ok(namespace) => drop(announce.send(namespace.name_any())),
                Err(error) => tracing::warn!(%error, "watching namespaces failed"),
            }
            async {}
        },
    )));

    if let Some((listen, cert_dir)) = &options.webhook {
        let files = CertFiles::in_dir(cert_dir);
        let (reloader, certificates) = CertReloader::load(files).with_context(|| {
            format!(
                "loading the webhook's certificate from {}",
                cert_dir.display()
            )
        })?;
        let webhook_metrics =
            WebhookMetrics::register(metrics.registry()).context("registering webhook metrics")?;
        let listener = TcpListener::bind(listen)
            .await
            .with_context(|| format!("listening on {listen} for the webhook"))?;
        let reloads = webhook_metrics.clone();
        tasks.push(tokio::spawn(reloader.run(CERT_RELOAD_INTERVAL, move |reload| match reload {
            Reload::Unchanged => {}
            Reload::Reloaded => {
                tracing::info!("webhook certificate reloaded");
                reloads.cert_reloaded(true);
            }
            Reload::Failed(error) => {
                tracing::warn!(%error, "new webhook certificate unusable; the old one keeps serving");
                reloads.cert_reloaded(false);
            }
        })));
        let webhook = Webhook {
            config: options.config.clone(),
            namespaces: namespaces.clone(),
            recorder: Recorder::new(client.clone(), "aiflags-operator".into()),
            client: client.clone(),
            metrics: webhook_metrics,
        };
        tasks.push(tokio::spawn(server::serve(
            listener,
            certificates,
            Arc::new(webhook),
            shutdown.clone(),
        )));
        tracing::info!(%listen, "serving the injection webhook at {}", server::MUTATE_PODS_PATH);
    }

    if let Some(spacing) = options.restart_spacing {
        let ctx = restart::Context::new(
            client.clone(),
            namespaces.clone(),
            options.config,
            spacing,
            metrics.registry(),
        )
        .context("registering restart metrics")?;
        let ctx = Arc::new(ctx);
        let (leadership, stop) = leading;
        let controllers = futures::future::join3(
            restarts::<Deployment>(client.clone(), ctx.clone(), &changed, stop.clone()),
            restarts::<StatefulSet>(client.clone(), ctx.clone(), &changed, stop.clone()),
            restarts::<DaemonSet>(client, ctx, &changed, stop.clone()),
        );
        tasks.push(tokio::spawn(async move {
            let leading = tokio::select! {
                leading = leadership.acquired() => leading,
                () = stop => false,
            };
            if leading {
                tracing::info!(?spacing, "offering restarts to workloads that opt in");
                controllers.await;
            }
        }));
    }
    Ok(Injection { namespaces, tasks })
}

/// One restart controller: workloads of kind `K` by their metadata alone
/// (no specs or statuses cached), plus every workload of a namespace
/// whose labels or annotations changed.
fn restarts<K: Workload>(
    client: Client,
    ctx: Arc<restart::Context>,
    namespaces_changed: &broadcast::Sender<String>,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) -> impl Future<Output = ()> + Send + 'static {
    let (reader, writer) = reflector::store::<PartialObjectMeta<K>>();
    // Api<PartialObjectMeta<K>> watches metadata only.
    let all = Api::<PartialObjectMeta<K>>::all(client);
    let metas = watcher(all, watcher::Config::default().any_semantic())
        .default_backoff()
        .reflect(writer)
        .applied_objects();
    let by_namespace =
        workloads_in_changed_namespaces(namespaces_changed.subscribe(), reader.clone());
    Controller::for_stream(metas, reader)
        .reconcile_on(by_namespace)
        .graceful_shutdown_on(shutdown)
        .run(restart::reconcile::<K>, restart::error_policy::<K>, ctx)
        .for_each(|result| async move {
            if let Err(error) = result {
                tracing::debug!(%error, "restart controller event");
            }
        })
}

fn workloads_in_changed_namespaces<K: Workload>(
    changed: broadcast::Receiver<String>,
    workloads: Store<PartialObjectMeta<K>>,
) -> impl Stream<Item = ObjectRef<PartialObjectMeta<K>>> + Send + 'static {
    let names = stream::unfold(changed, |mut changed| async move {
        loop {
            match changed.recv().await {
                Ok(name) => return Some((name, changed)),
                // Missed some: the periodic recheck covers them.
                Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    });
    names.flat_map(move |namespace| {
        let refs: Vec<_> = workloads
            .state()
            .iter()
            .filter(|w| w.metadata.namespace.as_deref() == Some(namespace.as_str()))
            .map(|w| ObjectRef::from_obj(w.as_ref()))
            .collect();
        stream::iter(refs)
    })
}

#[cfg(test)]
mod tests {
    use futures::StreamExt;
    use k8s_openapi::api::apps::v1::Deployment;
    use kube::core::PartialObjectMeta;
    use kube::runtime::reflector::{self, ObjectRef};
    use kube::runtime::watcher;
    use tokio::sync::broadcast;

    use super::workloads_in_changed_namespaces;

    fn meta(namespace: &str, name: &str) -> PartialObjectMeta<Deployment> {
        let mut meta = PartialObjectMeta::<Deployment>::default();
        meta.metadata.namespace = Some(namespace.into());
        meta.metadata.name = Some(name.into());
        meta
    }

    #[tokio::test]
    async fn a_namespace_change_reconciles_every_workload_in_it() {
        let (store, mut writer) = reflector::store::<PartialObjectMeta<Deployment>>();
        writer.apply_watcher_event(&watcher::Event::Init);
        for (namespace, name) in [("shop", "a"), ("shop", "b"), ("other", "c")] {
            writer.apply_watcher_event(&watcher::Event::InitApply(meta(namespace, name)));
        }
        writer.apply_watcher_event(&watcher::Event::InitDone);
        let (changed, receiver) = broadcast::channel(8);
        let refs = workloads_in_changed_namespaces(receiver, store);
        changed.send("shop".to_string()).expect("a receiver");
        changed.send("empty".to_string()).expect("a receiver");
        drop(changed);
        let mut names: Vec<String> = refs.map(|r: ObjectRef<_>| r.name).collect().await;
        names.sort();
        assert_eq!(names, ["a", "b"]);
    }
}
