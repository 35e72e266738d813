//! What the restart offer needs to know of Deployments, StatefulSets and
//! DaemonSets, behind one trait.

use std::fmt::Debug;

use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::Resource;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Why a workload cannot be restarted now, or at all.
#[derive(Debug, PartialEq, Eq)]
pub enum Blocker {
    /// Try again later: a rollout is under way, or the Deployment is paused.
    Wait(&'static str),
    /// A template change would not replace the pods (`OnDelete`).
    Never(&'static str),
}

pub trait Workload:
    Resource<DynamicType = (), Scope = NamespaceResourceScope>
    + Clone
    + Debug
    + DeserializeOwned
    + Serialize
    + Send
    + Sync
    + 'static
{
    fn template(&self) -> &PodTemplateSpec;
    fn selector(&self) -> &LabelSelector;
    fn observed_generation(&self) -> Option<i64>;
    /// Anything besides a rollout in progress that stands in the way.
    fn kind_blocker(&self) -> Option<Blocker>;

    fn blocker(&self) -> Option<Blocker> {
        if self.observed_generation() != self.meta().generation {
            return Some(Blocker::Wait("a rollout is in progress"));
        }
        self.kind_blocker()
    }
}

/// The accessors all three kinds share, field for field.
macro_rules! pod_template_accessors {
    () => {
        fn template(&self) -> &PodTemplateSpec {
            self.spec
                .as_ref()
                .map(|s| &s.template)
                .unwrap_or(&EMPTY_TEMPLATE)
        }
        fn selector(&self) -> &LabelSelector {
            self.spec
                .as_ref()
                .map(|s| &s.selector)
                .unwrap_or(&EMPTY_SELECTOR)
        }
        fn observed_generation(&self) -> Option<i64> {
            self.status.as_ref().and_then(|s| s.observed_generation)
        }
    };
}

impl Workload for Deployment {
    pod_template_accessors!();
    fn kind_blocker(&self) -> Option<Blocker> {
        let paused = self.spec.as_ref().and_then(|s| s.paused) == Some(true);
        paused.then_some(Blocker::Wait("the Deployment is paused"))
    }
}

impl Workload for StatefulSet {
    pod_template_accessors!();
    fn kind_blocker(&self) -> Option<Blocker> {
        let strategy = self.spec.as_ref().and_then(|s| s.update_strategy.as_ref());
        on_delete(strategy.and_then(|s| s.type_.as_deref()))
    }
}

impl Workload for DaemonSet {
    pod_template_accessors!();
    fn kind_blocker(&self) -> Option<Blocker> {
        let strategy = self.spec.as_ref().and_then(|s| s.update_strategy.as_ref());
        on_delete(strategy.and_then(|s| s.type_.as_deref()))
    }
}

fn on_delete(strategy: Option<&str>) -> Option<Blocker> {
    (strategy == Some("OnDelete")).then_some(Blocker::Never("its updateStrategy is OnDelete"))
}

static EMPTY_TEMPLATE: PodTemplateSpec = PodTemplateSpec {
    metadata: None,
    spec: None,
};
static EMPTY_SELECTOR: LabelSelector = LabelSelector {
    match_expressions: None,
    match_labels: None,
};
