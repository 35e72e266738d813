//! Whether to restart a workload so its pods get the sidecar. Pure.
//!
//! A workload is restarted only when it or its namespace asks for it
//! (annotation `aiflags.dev/restart-to-inject: enabled`), its pods would be
//! injected, some running pod lacks the sidecar, no rollout is under way,
//! and it has not been restarted for this generation already. Restarts are
//! spaced across the whole cluster by a [`Budget`].

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec};
use k8s_openapi::jiff::Timestamp;
use serde_json::{Value, json};

use crate::webhook::config::InjectionConfig;
use crate::webhook::inject::{CONTAINER_NAME, Verdict, decide};

/// `enabled` on a workload or its namespace; `disabled` on the workload wins.
pub const RESTART_ANNOTATION: &str = "aiflags.dev/restart-to-inject";
/// The generation the operator last restarted the workload at.
pub const RESTARTED_ANNOTATION: &str = "aiflags.dev/restarted-for-injection";
/// What `kubectl rollout restart` sets; changing it rolls the pods.
pub const RESTARTED_AT: &str = "kubectl.kubernetes.io/restartedAt";

/// What the workload's metadata alone says.
#[derive(Debug, PartialEq, Eq)]
pub enum Plan {
    /// Nobody asked for restarts here.
    NotOptedIn,
    /// Restarted for this generation already (our own restart is the next one).
    AlreadyRestarted,
    /// Look at the workload and its pods.
    Check,
}

pub fn plan(
    annotations: &BTreeMap<String, String>,
    generation: Option<i64>,
    namespace_annotations: &BTreeMap<String, String>,
) -> Plan {
    let own = annotations.get(RESTART_ANNOTATION).map(String::as_str);
    let namespace = namespace_annotations
        .get(RESTART_ANNOTATION)
        .map(String::as_str);
    let opted_in = match own {
        Some("enabled") => true,
        Some("disabled") => false,
        _ => namespace == Some("enabled"),
    };
    if !opted_in {
        return Plan::NotOptedIn;
    }
    let restarted_at: Option<i64> = annotations
        .get(RESTARTED_ANNOTATION)
        .and_then(|g| g.parse().ok());
    match (restarted_at, generation) {
        // Our patch of the template raised the generation by one.
        (Some(at), Some(now)) if now == at || now == at + 1 => Plan::AlreadyRestarted,
        _ => Plan::Check,
    }
}

/// Whether the webhook would inject pods made from `template`.
pub fn template_would_be_injected(
    template: &PodTemplateSpec,
    namespace: &str,
    namespace_labels: &BTreeMap<String, String>,
    config: &InjectionConfig,
) -> bool {
    let pod = Pod {
        metadata: template.metadata.clone().unwrap_or_default(),
        spec: template.spec.clone(),
        status: None,
    };
    matches!(
        decide(&pod, namespace, namespace_labels, config),
        Verdict::Inject { .. }
    )
}

/// Running (not terminating) pods without the sidecar container.
pub fn pods_lacking_sidecar(pods: &[Pod]) -> usize {
    pods.iter()
        .filter(|pod| pod.metadata.deletion_timestamp.is_none())
        .filter(|pod| {
            !matches!(
                pod.status.as_ref().and_then(|s| s.phase.as_deref()),
                Some("Succeeded" | "Failed")
            )
        })
        .filter(|pod| {
            let has_sidecar = pod.spec.as_ref().is_some_and(|spec| {
                let mut containers = spec
                    .init_containers
                    .iter()
                    .flatten()
                    .chain(&spec.containers);
                containers.any(|c| c.name == CONTAINER_NAME)
            });
            !has_sidecar
        })
        .count()
}

/// The merge patch that restarts the workload, and records that it did,
/// guarded by the resourceVersion it was decided on.
pub fn restart_patch(generation: i64, resource_version: &str, now: Timestamp) -> Value {
    json!({
        "metadata": {
            "resourceVersion": resource_version,
            "annotations": {RESTARTED_ANNOTATION: generation.to_string()},
        },
        // The format `kubectl rollout restart` writes.
        "spec": {"template": {"metadata": {"annotations": {
            RESTARTED_AT: now.strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
        }}}},
    })
}

/// At most one restart per `spacing`, across the cluster: a namespace that
/// opts in does not restart all its workloads at once.
#[derive(Debug)]
pub struct Budget {
    spacing: Duration,
    next: Option<Instant>,
}

impl Budget {
    pub fn new(spacing: Duration) -> Self {
        Budget {
            spacing,
            next: None,
        }
    }

    /// Takes the next slot, or says how long until one is free.
    pub fn take(&mut self, now: Instant) -> Result<(), Duration> {
        match self.next {
            Some(next) if next > now => Err(next - now),
            _ => {
                self.next = Some(now + self.spacing);
                Ok(())
            }
        }
    }

    /// Gives back a slot whose restart failed.
    pub fn give_back(&mut self, now: Instant) {
        self.next = Some(now);
    }
}
