//! The status of an `AIFeatureFlag`: what the operator's reconciler, its
//! propagation pass and its rollout engine observed and decided, each under
//! its own field manager (`docs/operator.md`).

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Observed state, written by the operator.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AIFeatureFlagStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<Phase>,
    /// `Ready` (the latest generation compiled and is in the config) and
    /// `Propagated` (every proxy the flag applies to serves that config),
    /// each written by its own field manager: a map keyed by `type`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// Generation whose compiled form the sidecars serve.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serving_generation: Option<i64>,
    /// Revision of the namespace config that holds the serving version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_revision: Option<String>,
    /// The canary's step, counted from 1 (rollouts with `steps` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_step: Option<u32>,
    /// Percent per variant now served.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_weights: Option<BTreeMap<String, f64>>,
    /// Human-readable split for the printer column, e.g. `stable=90 candidate=10`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub split: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxies: Option<ProxyCount>,
    /// Failed analysis checks since the rollout (re)started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed_checks: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Where a progressive rollout (`rollout.steps`) stands: the rollout
    /// engine's state, from which a restarted operator resumes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout: Option<RolloutStatus>,
}

/// The rollout engine's record of a progressive rollout.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RolloutStatus {
    /// Identity of the spec this rollout runs: a hash of the spec without
    /// `state` and `rollout.analysis`. Any other change restarts the steps.
    pub spec_hash: String,
    pub state: RolloutState,
    /// `currentStep/steps`, for the printer column.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step_summary: Option<String>,
    /// Canary percent the config serves.
    pub canary_weight: f64,
    /// When this step's weight was decided.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step_started_at: Option<Time>,
    /// When every proxy was first seen serving this step's weight: its
    /// pause counts from here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step_served_at: Option<Time>,
    /// Set while paused by hand: resuming adds the time paused to the step's pause.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paused_at: Option<Time>,
    /// The latest analysis checks, oldest first (at most 10).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub checks: Vec<AnalysisCheck>,
    /// What the rollout waits for, or why it stopped.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
}

/// Where a progressive rollout is.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum RolloutState {
    /// Walking the steps: waiting for proxies, holding a pause, or waiting
    /// for a passing analysis check.
    #[default]
    Progressing,
    /// Held by hand (`aiflags.dev/pause`) or at a step without a pause,
    /// until resumed. Analysis keeps running.
    Paused,
    /// Analysis failed `failureLimit` times, or aborted by hand: the canary gets 0%.
    Aborted,
    /// Every step walked (or promoted): the canary keeps its last weight.
    Completed,
    /// `state: Disabled` stopped it; enabling the flag again restarts it.
    Stopped,
}

/// One analysis check of the canary against the thresholds.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AnalysisCheck {
    pub time: Time,
    /// The step it was taken at, counted from 1.
    pub step: u32,
    pub result: CheckResult,
    pub message: String,
    /// The canary's measurements, when Prometheus answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary: Option<VariantMeasurements>,
    /// The stable variant's, when a relative threshold needed them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stable: Option<VariantMeasurements>,
}

/// The outcome of one analysis check.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
pub enum CheckResult {
    Pass,
    Fail,
    /// Too few requests, or no answer from Prometheus: neither pass nor fail.
    Inconclusive,
}

/// What Prometheus showed for one variant over one interval.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VariantMeasurements {
    pub requests: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_rate: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p95_latency_seconds: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback_rate: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub empty_rate: Option<f64>,
}

/// Summary phase of a flag.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum Phase {
    Healthy,
    Progressing,
    Paused,
    Degraded,
    Disabled,
}

/// How many sidecars serve the flag's config revision.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProxyCount {
    /// Running injected pods the flag's `podSelector` matches.
    pub total: u32,
    /// Those whose sidecar reports serving `revision`.
    pub at_revision: u32,
    /// The namespace's config revision counted against: the latest the
    /// operator wrote.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
    /// `atRevision/total`, for the printer column.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
}
