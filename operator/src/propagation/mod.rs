//! Propagation: which config revision the sidecars serve, written per flag
//! as `status.proxies` and the `Propagated` condition.
//!
//! The operator keeps a cache of the cluster's running injected pods (one
//! watch, by the webhook's label `aiflags.dev/proxy=injected`; pods
//! stripped to a few fields, and only those with the `aiflags-proxy`
//! container kept), and
//! every few seconds runs a pass: it asks the sidecars that are due which
//! revision they serve (`GET http://<podIP>:<adminPort>/metrics`, bounded
//! concurrency, a timeout per request), then writes the status of each flag
//! whose count changed. A sidecar is due when its pod is new or changed
//! (`resourceVersion`: a restart, a new IP), when it did not serve the
//! revision the operator last wrote for its namespace at its last answer
//! (asked again every pass until it does), and otherwise every few minutes.
//! In a steady state no sidecar is asked between those rounds; after a
//! config change each sidecar of the namespace is asked once or a few times.
//! `docs/propagation.md` has the cost at 1,000 pods and the network access.

pub mod metrics;
pub mod pods;
pub mod probe;
pub mod status;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aiflags_api::{AIFeatureFlag, AIFeatureFlagStatus};
use futures::{StreamExt, future, stream};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource, ResourceExt};
use serde_json::json;

use self::metrics::PropagationMetrics;
use self::pods::{admin_addr, is_proxy, labels};
use self::probe::{Answer, Cadence, HttpClient, PollSettings, ProbeCache, Target, ask};
use self::status::{Proxy, desired_propagation, propagation_part};
use crate::written::WrittenConfigs;

/// Field manager of `status.proxies` and the `Propagated` condition; the
/// reconciler's writes (manager `aiflags-operator`) leave them alone.
pub const FIELD_MANAGER: &str = "aiflags-operator-propagation";

/// How often the pass runs and how sidecars are asked.
#[derive(Clone, Copy, Debug)]
pub struct Settings {
    pub interval: Duration,
    pub cadence: Cadence,
    pub poll: PollSettings,
    /// Status writes in flight at once.
    pub write_concurrency: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            interval: Duration::from_secs(5),
            cadence: Cadence {
                behind: Duration::from_secs(5),
                settled: Duration::from_secs(300),
            },
            poll: PollSettings::default(),
            write_concurrency: 8,
        }
    }
}

/// What one pass did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PassReport {
    /// Sidecars asked.
    pub asked: usize,
    /// Flag statuses written.
    pub written: usize,
    /// Flag status writes that failed (retried by the next pass).
    pub failed: usize,
}

/// The propagation pass and what it remembers between runs.
pub struct Propagation {
    client: Client,
    http: HttpClient,
    settings: Settings,
    written: Arc<WrittenConfigs>,
    metrics: PropagationMetrics,
    probes: ProbeCache,
}

impl Propagation {
    pub fn new(
        client: Client,
        settings: Settings,
        written: Arc<WrittenConfigs>,
        metrics: PropagationMetrics,
    ) -> Self {
        Propagation {
            client,
            http: probe::http_client(&settings.poll),
            settings,
            written,
            metrics,
            probes: ProbeCache::default(),
        }
    }

    /// Asks the sidecars that are due, then writes every flag status whose
    /// proxies or `Propagated` condition changed.
    pub async fn pass(&mut self, flags: &[Arc<AIFeatureFlag>], pods: &[Arc<Pod>]) -> PassReport {
        let started = Instant::now();
        let written = self.written.snapshot();
        let proxies: Vec<&Pod> = pods
            .iter()
            .map(AsRef::as_ref)
            .filter(|p| is_proxy(p))
            .collect();

        let targets: Vec<Target> = proxies
            .iter()
            .filter_map(|pod| {
                let wanted = written.get(pod.metadata.namespace.as_deref()?)?;
                let uid = pod.metadata.uid.as_deref()?;
                let version = pod.metadata.resource_version.as_deref().unwrap_or_default();
                let due = self.probes.due(
                    uid,
                    version,
                    &wanted.revision,
                    started,
                    self.settings.cadence,
                );
                due.then(|| Target {
                    uid: uid.to_string(),
                    resource_version: version.to_string(),
                    addr: admin_addr(pod),
                    wanted: wanted.revision.clone(),
                })
            })
            .collect();
        let asked = targets.len();
        let (http, poll) = (&self.http, &self.settings.poll);
        let answers: Vec<(Target, Answer)> = stream::iter(targets)
            .map(|target| async move {
                let answer = match target.addr {
                    Some(addr) => ask(http, addr, poll).await,
                    None => Answer::Unreachable("the pod has no IP or admin port yet".into()),
                };
                (target, answer)
            })
            .buffer_unordered(poll.concurrency.max(1))
            .collect()
            .await;
        for (target, answer) in answers {
            self.metrics.polled(answer.result_label());
            if let Answer::Unreachable(why) = &answer {
                tracing::debug!(pod_uid = %target.uid, why, "sidecar did not tell its revision");
            }
            self.probes.record(&target, answer, started);
        }
        let live: HashSet<&str> = proxies
            .iter()
            .filter_map(|p| p.metadata.uid.as_deref())
            .collect();
        self.probes.retain(|uid| live.contains(uid));

        let mut by_namespace: HashMap<&str, Vec<Proxy<'_>>> = HashMap::new();
        let mut by_revision: BTreeMap<(String, String), i64> = BTreeMap::new();
        for pod in &proxies {
            let Some(namespace) = pod.metadata.namespace.as_deref() else {
                continue;
            };
            let answer = pod.metadata.uid.as_deref().and_then(|uid| {
                let version = pod.metadata.resource_version.as_deref().unwrap_or_default();
                self.probes.answer(uid, version)
            });
            by_namespace.entry(namespace).or_default().push(Proxy {
                labels: labels(pod),
                answer,
            });
            if written.contains_key(namespace) {
                let revision = match answer {
                    Some(Answer::Serving(revision)) => revision.as_str(),
                    Some(Answer::NoConfig) => "none",
                    _ => "unknown",
                };
                *by_revision
                    .entry((namespace.to_string(), revision.to_string()))
                    .or_default() += 1;
            }
        }

        let now = Timestamp::now();
        let mut counts = BTreeMap::new();
        let mut writes = Vec::new();
        for flag in flags
            .iter()
            .filter(|f| f.metadata.deletion_timestamp.is_none())
        {
            let namespace = flag.namespace().unwrap_or_default();
            let proxies = by_namespace
                .get(namespace.as_str())
                .map(Vec::as_slice)
                .unwrap_or_default();
            let config = written.get(&namespace).map(AsRef::as_ref);
            let Some(desired) = desired_propagation(flag, config, proxies, now) else {
                continue;
            };
            if let Some(count) = &desired.proxies {
                counts.insert((namespace.clone(), flag.name_any()), count.clone());
            }
            if propagation_part(flag.status.as_ref()) != desired {
                writes.push(write_status(&self.client, flag, desired));
            }
        }
        let wanted = writes.len();
        let failed = stream::iter(writes)
            .buffer_unordered(self.settings.write_concurrency.max(1))
            .filter(|result| future::ready(result.is_err()))
            .count()
            .await;
        self.metrics.observed(&counts, &by_revision);
        self.metrics.pass_finished(started.elapsed().as_secs_f64());
        PassReport {
            asked,
            written: wanted - failed,
            failed,
        }
    }
}

/// Server-side applies the propagation part of a flag's status.
async fn write_status(
    client: &Client,
    flag: &AIFeatureFlag,
    status: AIFeatureFlagStatus,
) -> Result<(), kube::Error> {
    let name = flag.name_any();
    let api: Api<AIFeatureFlag> =
        Api::namespaced(client.clone(), &flag.namespace().unwrap_or_default());
    let patch = Patch::Apply(json!({
        "apiVersion": AIFeatureFlag::api_version(&()),
        "kind": AIFeatureFlag::kind(&()),
        "status": status,
    }));
    let result = api
        .patch_status(&name, &PatchParams::apply(FIELD_MANAGER).force(), &patch)
        .await;
    if let Err(error) = &result {
        tracing::warn!(flag = %name, namespace = ?flag.namespace(), %error, "writing the propagation status failed");
    }
    result.map(drop)
}

/// The cluster's running pods the webhook injected (by its label; the
/// sidecar container is checked too), stripped, in a store kept current by
/// a watch; the returned future drives the watch.
pub fn proxy_pods(client: Client) -> (Store<Pod>, impl Future<Output = ()> + Send + 'static) {
    let (store, writer) = reflector::store();
    let running = watcher::Config::default()
        .labels(&pods::injected_selector())
        .fields("status.phase=Running");
    let events = watcher(Api::<Pod>::all(client), running)
        .default_backoff()
        .filter_map(|event| {
            future::ready(match event {
                Ok(event) => pods::keep_proxies(event).map(Ok),
                Err(error) => {
                    tracing::warn!(%error, "watching pods failed");
                    None
                }
            })
        });
    let driver = reflector::reflector(writer, events).for_each(|_| future::ready(()));
    (store, driver)
}

/// Runs a pass every `settings.interval` until `shutdown`, once both the
/// flag and pod caches have listed.
pub async fn run(
    mut propagation: Propagation,
    flags: Store<AIFeatureFlag>,
    pods: Store<Pod>,
    shutdown: impl Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    let caches = async {
        let _ = flags.wait_until_ready().await;
        let _ = pods.wait_until_ready().await;
    };
    tokio::select! {
        () = &mut shutdown => return,
        () = caches => {}
    }
    let mut ticks = tokio::time::interval(propagation.settings.interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = &mut shutdown => return,
            _ = ticks.tick() => {}
        }
        let report = propagation.pass(&flags.state(), &pods.state()).await;
        tracing::debug!(?report, "propagation pass");
    }
}

#[cfg(test)]
mod fake_sidecar;
#[cfg(test)]
mod tests;
