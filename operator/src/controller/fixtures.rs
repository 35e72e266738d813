//! Test-only builders: flags and the flag cache.

use aiflags_api::{
    AIFeatureFlag, AIFeatureFlagSpec, AIFeatureFlagStatus, FlagState, Rollout, Variant,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::runtime::reflector::store::Writer;
use kube::runtime::watcher;
use kube::{Resource, ResourceExt};
use serde_json::json;

use super::{Context, FINALIZER};

pub(crate) const NAMESPACE: &str = "shop";

/// Small fluent builders for test flags: `AIFeatureFlag::test().disabled()`.
pub(crate) trait FlagBuilder: Sized {
    /// `shop/summarizer`, generation 1: stable (gpt-4o-mini) 90, candidate (gpt-4.1-mini) 10.
    fn test() -> Self;
    fn named(self, name: &str) -> Self;
    fn generation(self, generation: i64) -> Self;
    fn weights(self, weights: &[(&str, f64)]) -> Self;
    fn disabled(self) -> Self;
    fn finalized(self) -> Self;
    fn deleting(self) -> Self;
    fn with_status(self, status: AIFeatureFlagStatus) -> Self;
    /// `creationTimestamp` this many seconds after 2025-01-01.
    fn created(self, seconds: i64) -> Self;
    /// `bytes` of noise in the candidate's params: a flag that compresses badly.
    fn padded(self, bytes: usize) -> Self;
    /// A progressive rollout of `candidate` instead of fixed weights:
    /// `(weight, pause)` steps and, when given, `analysis`.
    fn canary(self, steps: &[(f64, Option<&str>)], analysis: Option<serde_json::Value>) -> Self;
    /// An annotation, as `kubectl annotate` (or `kubectl aiflags`) sets it.
    fn annotated(self, key: &str) -> Self;
}

impl FlagBuilder for AIFeatureFlag {
    fn test() -> Self {
        let variant = |name: &str, model: &str| Variant {
            name: name.into(),
            model: model.into(),
            params: None,
            provider: None,
            pricing: None,
        };
        let spec = AIFeatureFlagSpec {
            state: FlagState::Enabled,
            pod_selector: None,
            match_: Default::default(),
            default_variant: "stable".into(),
            variants: vec![
                variant("stable", "gpt-4o-mini"),
                variant("candidate", "gpt-4.1-mini"),
            ],
            rollout: Some(Rollout::default()),
            targeting: Vec::new(),
            fallback: None,
        };
        AIFeatureFlag::new("summarizer", spec)
            .named("summarizer")
            .generation(1)
            .weights(&[("stable", 90.0), ("candidate", 10.0)])
    }

    fn named(mut self, name: &str) -> Self {
        let meta = self.meta_mut();
        meta.name = Some(name.into());
        meta.namespace = Some(NAMESPACE.into());
        meta.uid = Some(format!("uid-{name}"));
        meta.resource_version = Some("1".into());
        self
    }

    fn generation(mut self, generation: i64) -> Self {
        self.meta_mut().generation = Some(generation);
        self
    }

    fn weights(mut self, weights: &[(&str, f64)]) -> Self {
        let rollout = self.spec.rollout.get_or_insert_with(Rollout::default);
        rollout.weights = Some(weights.iter().map(|(k, v)| (k.to_string(), *v)).collect());
        self
    }

    fn disabled(mut self) -> Self {
        self.spec.state = FlagState::Disabled;
        self
    }

    fn finalized(mut self) -> Self {
        self.finalizers_mut().push(FINALIZER.into());
        self
    }

    fn deleting(mut self) -> Self {
        let at: k8s_openapi::jiff::Timestamp = "2025-01-01T00:00:00Z".parse().expect("timestamp");
        self.meta_mut().deletion_timestamp = Some(Time(at));
        self
    }

    fn with_status(mut self, status: AIFeatureFlagStatus) -> Self {
        self.status = Some(status);
        self
    }

    fn created(mut self, seconds: i64) -> Self {
        let epoch: k8s_openapi::jiff::Timestamp =
            "2025-01-01T00:00:00Z".parse().expect("timestamp");
        let at = epoch
            .checked_add(k8s_openapi::jiff::SignedDuration::from_secs(seconds))
            .expect("in range");
        self.meta_mut().creation_timestamp = Some(Time(at));
        self
    }

    fn canary(
        mut self,
        steps: &[(f64, Option<&str>)],
        analysis: Option<serde_json::Value>,
    ) -> Self {
        let rollout = self.spec.rollout.get_or_insert_with(Rollout::default);
        rollout.weights = None;
        rollout.canary = Some("candidate".into());
        rollout.steps = Some(
            steps
                .iter()
                .map(|(weight, pause)| aiflags_api::RolloutStep {
                    weight: *weight,
                    pause: pause.map(Into::into),
                })
                .collect(),
        );
        rollout.analysis = analysis.map(|a| serde_json::from_value(a).expect("analysis"));
        self
    }

    fn annotated(mut self, key: &str) -> Self {
        self.annotations_mut().insert(key.into(), "true".into());
        self
    }

    fn padded(mut self, bytes: usize) -> Self {
        let seed = self
            .name_any()
            .bytes()
            .fold(0u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b)));
        self.spec.variants[1].params = Some(json!({"metadata": {"note": noise(seed, bytes)}}));
        self
    }
}

/// `len` hex digits that do not repeat: about 4 bits of entropy per byte, so
/// they shrink to roughly half under gzip, never to nothing.
pub(crate) fn noise(seed: u64, len: usize) -> String {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            char::from_digit((state % 16) as u32, 16).unwrap_or('0')
        })
        .collect()
}

impl Context {
    /// Whether the per-namespace lock map has an entry for `namespace`.
    pub(crate) fn has_namespace_lock(&self, namespace: &str) -> bool {
        self.namespace_locks
            .lock()
            .expect("not poisoned")
            .contains_key(namespace)
    }
}

/// Fills the controller's flag cache as its watch would.
pub(crate) trait CacheBuilder {
    /// The cache now holds exactly `flags`, as after a (re-)list.
    fn holds(&mut self, flags: &[&AIFeatureFlag]);
}

impl CacheBuilder for Writer<AIFeatureFlag> {
    fn holds(&mut self, flags: &[&AIFeatureFlag]) {
        self.apply_watcher_event(&watcher::Event::Init);
        for flag in flags {
            self.apply_watcher_event(&watcher::Event::InitApply((*flag).clone()));
        }
        self.apply_watcher_event(&watcher::Event::InitDone);
    }
}
