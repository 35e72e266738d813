//! The restart offer: workloads that opted in and still run pods without
//! the sidecar get `kubectl rollout restart`'s patch, once per generation,
//! spaced across the cluster. The decisions are in [`decide`]; this module
//! reads the workload and its pods and writes the one patch.

pub mod decide;
pub mod workload;

#[cfg(test)]
mod fixtures;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Namespace, Pod};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::core::{PartialObjectMeta, Selector};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Client, ResourceExt};
use prometheus::{IntCounterVec, Opts, Registry};

use self::decide::{
    Budget, Plan, RESTART_ANNOTATION, plan, pods_lacking_sidecar, restart_patch,
    template_would_be_injected,
};
use self::workload::{Blocker, Workload};
use crate::webhook::config::InjectionConfig;

/// How often an opted-in workload is looked at again without any change:
/// pods created while the webhook was down lack the sidecar too.
const RECHECK: Duration = Duration::from_secs(15 * 60);
/// How soon after a rollout in progress (or a pause) to look again.
const RECHECK_SOON: Duration = Duration::from_secs(60);
const MANAGER: &str = "aiflags-operator";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API request failed: {0}")]
    Kube(#[from] kube::Error),
    #[error("{0} has no namespace")]
    NoNamespace(String),
}

/// What every restart reconcile shares.
pub struct Context {
    pub client: Client,
    /// The operator's namespace cache, shared with the webhook.
    pub namespaces: Store<Namespace>,
    pub config: InjectionConfig,
    pub reporter: Reporter,
    budget: Mutex<Budget>,
    restarts: IntCounterVec,
}

impl Context {
    /// `spacing`: the least time between two restarts anywhere in the cluster.
    pub fn new(
        client: Client,
        namespaces: Store<Namespace>,
        config: InjectionConfig,
        spacing: Duration,
        registry: &Registry,
    ) -> Result<Self, prometheus::Error> {
        let restarts = IntCounterVec::new(
            Opts::new(
                "aiflags_operator_workload_restarts_total",
                "Workloads restarted so that their pods get the aiflags proxy, by kind",
            ),
            &["kind"],
        )?;
        registry.register(Box::new(restarts.clone()))?;
        Ok(Context {
            client,
            namespaces,
            config,
            reporter: MANAGER.into(),
            budget: Mutex::new(Budget::new(spacing)),
            restarts,
        })
    }
}

/// Looks at one workload (as its metadata watch saw it) and restarts it if
/// it asked for that and needs it.
pub async fn reconcile<K: Workload>(
    meta: Arc<PartialObjectMeta<K>>,
    ctx: Arc<Context>,
) -> Result<Action, Error> {
    let name = meta.name_any();
    let namespace = meta
        .namespace()
        .ok_or_else(|| Error::NoNamespace(name.clone()))?;
    // A namespace not cached yet is reconciled when its own event arrives.
    let Some(ns) = ctx.namespaces.get(&ObjectRef::new(&namespace)) else {
        return Ok(Action::await_change());
    };
    let empty = BTreeMap::new();
    let ns_annotations = ns.metadata.annotations.as_ref().unwrap_or(&empty);
    let ns_labels = ns.metadata.labels.as_ref().unwrap_or(&empty);
    let annotations = meta.metadata.annotations.as_ref().unwrap_or(&empty);
    if plan(annotations, meta.metadata.generation, ns_annotations) != Plan::Check {
        return Ok(Action::await_change());
    }

    let api: Api<K> = Api::namespaced(ctx.client.clone(), &namespace);
    let Some(workload) = api.get_opt(&name).await? else {
        return Ok(Action::await_change());
    };
    let described = format!("{} {namespace}/{name}", K::kind(&()));
    if !template_would_be_injected(workload.template(), &namespace, ns_labels, &ctx.config) {
        tracing::debug!(workload = %described, "its pods would not be injected; no restart");
        return Ok(Action::await_change());
    }
    match workload.blocker() {
        Some(Blocker::Wait(reason)) => {
            tracing::debug!(workload = %described, reason, "restart postponed");
            return Ok(Action::requeue(RECHECK_SOON));
        }
        Some(Blocker::Never(reason)) => {
            tracing::info!(workload = %described, reason, "cannot restart it; restart its pods by hand");
            return Ok(Action::await_change());
        }
        None => {}
    }
    let selector = match Selector::try_from(workload.selector().clone()) {
        Ok(selector) if !selector.selects_all() => selector,
        _ => return Ok(Action::await_change()),
    };
    let pods = Api::<Pod>::namespaced(ctx.client.clone(), &namespace)
        .list(&ListParams::default().labels_from(&selector))
        .await?;
    let lacking = pods_lacking_sidecar(&pods.items);
    if lacking == 0 {
        return Ok(Action::requeue(RECHECK));
    }
    let taken = ctx
        .budget
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .take(Instant::now());
    if let Err(wait) = taken {
        // Whole seconds, rounded up: the retry finds the slot free, not a
        // timer tick short of it.
        let wait = Duration::from_secs(wait.as_secs() + u64::from(wait.subsec_nanos() > 0));
        tracing::debug!(workload = %described, ?wait, "restart waits for its turn");
        return Ok(Action::requeue(wait));
    }
    let generation = workload.meta().generation.unwrap_or_default();
    let version = workload.resource_version().unwrap_or_default();
    let patch = restart_patch(generation, &version, Timestamp::now());
    let params = PatchParams {
        field_manager: Some(MANAGER.to_string()),
        ..PatchParams::default()
    };
    if let Err(error) = api.patch(&name, &params, &Patch::Merge(&patch)).await {
        ctx.budget
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .give_back(Instant::now());
        return Err(error.into());
    }
    ctx.restarts.with_label_values(&[&K::kind(&())]).inc();
    tracing::info!(workload = %described, lacking, "restarted so its pods get the aiflags proxy");
    let note = format!(
        "{lacking} pod(s) ran without the aiflags proxy; restarted so new pods get it \
         ({RESTART_ANNOTATION}=enabled on the {} or its namespace)",
        K::kind(&())
    );
    publish(&ctx, &workload, note).await;
    Ok(Action::requeue(RECHECK))
}

pub fn error_policy<K: Workload>(
    meta: Arc<PartialObjectMeta<K>>,
    error: &Error,
    _ctx: Arc<Context>,
) -> Action {
    tracing::warn!(
        workload = %format!("{} {}/{}", K::kind(&()), meta.namespace().unwrap_or_default(), meta.name_any()),
        %error,
        "restart check failed"
    );
    Action::requeue(RECHECK_SOON)
}

/// Events are informative: failing to publish one fails nothing.
async fn publish<K: Workload>(ctx: &Context, workload: &K, note: String) {
    let event = Event {
        type_: EventType::Normal,
        reason: "RestartedForInjection".to_string(),
        note: Some(note),
        action: "Restart".to_string(),
        secondary: None,
    };
    let recorder = Recorder::new(ctx.client.clone(), ctx.reporter.clone());
    if let Err(error) = recorder.publish(&event, &workload.object_ref(&())).await {
        tracing::warn!(%error, "publishing a restart event failed");
    }
}
