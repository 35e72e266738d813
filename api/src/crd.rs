//! The `AIFeatureFlag` custom resource (`aiflags.dev/v1alpha1`).
//!
//! Structural rules live in the generated OpenAPI schema and its CEL
//! `x-kubernetes-validations`, so `kubectl apply` rejects bad input at once; the
//! semantic rules are repeated in `compile` so that every path into
//! the sidecar config (operator, `render`, local mode) gives the same answer.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use crate::status::*;

/// A Go-style duration: `500ms`, `30s`, `10m`, `1h30m`.
pub const DURATION_PATTERN: &str = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$";
/// Where a sticky value is read from: a request header or a top-level body field path.
pub const STICKY_PATTERN: &str = r"^(header:[A-Za-z0-9!#$%&'*+.^_`|~-]+|body:[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*)$";
/// Failure classes a fallback reacts to.
pub const FALLBACK_ON_PATTERN: &str =
    r"^(timeout|connect|4xx|5xx|[45][0-9][0-9]|empty|contentFilter)$";
/// Variant names are DNS labels: they appear in metrics labels and headers.
pub const NAME_PATTERN: &str = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$";

/// Spec of an `AIFeatureFlag`: which requests it applies to, the variants it
/// chooses between, how it splits traffic and how it falls back.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "aiflags.dev",
    version = "v1alpha1",
    kind = "AIFeatureFlag",
    plural = "aifeatureflags",
    singular = "aifeatureflag",
    shortname = "aiff",
    category = "aiflags",
    namespaced,
    cel,
    status = "AIFeatureFlagStatus",
    derive = "PartialEq",
    printcolumn = r#"{"name":"State","type":"string","jsonPath":".spec.state"}"#,
    printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase"}"#,
    printcolumn = r#"{"name":"Step","type":"string","jsonPath":".status.rollout.stepSummary"}"#,
    printcolumn = r#"{"name":"Split","type":"string","jsonPath":".status.split"}"#,
    printcolumn = r#"{"name":"Revision","type":"string","jsonPath":".status.configRevision"}"#,
    printcolumn = r#"{"name":"Proxies","type":"string","jsonPath":".status.proxies.summary"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("self.variants.all(v, self.variants.filter(w, w.name == v.name).size() == 1)").message("variant names must be unique").field_path(".variants"),
    validation = Rule::new("self.variants.exists(v, v.name == self.defaultVariant)").message("defaultVariant must name one of spec.variants").field_path(".defaultVariant"),
    validation = Rule::new("!has(self.rollout) || !(has(self.rollout.weights) && has(self.rollout.steps))").message("rollout.weights and rollout.steps are mutually exclusive: use fixed weights or a progressive canary").field_path(".rollout"),
    validation = Rule::new("!has(self.rollout) || !has(self.rollout.weights) || self.rollout.weights.all(k, self.variants.exists(v, v.name == k))").message("every key of rollout.weights must name one of spec.variants").field_path(".rollout.weights"),
    validation = Rule::new("!has(self.rollout) || !has(self.rollout.weights) || (self.rollout.weights.map(k, double(self.rollout.weights[k])).sum() > 99.995 && self.rollout.weights.map(k, double(self.rollout.weights[k])).sum() < 100.005)").message("rollout.weights must sum to 100").field_path(".rollout.weights"),
    validation = Rule::new("!has(self.rollout) || !has(self.rollout.weights) || self.rollout.weights.all(k, math.abs(double(self.rollout.weights[k]) * 100.0 - math.round(double(self.rollout.weights[k]) * 100.0)) < 0.000001)").message("rollout.weights allow at most 2 decimals").field_path(".rollout.weights"),
    validation = Rule::new("!has(self.rollout) || has(self.rollout.steps) == has(self.rollout.canary)").message("rollout.canary and rollout.steps go together").field_path(".rollout.canary"),
    validation = Rule::new("!has(self.rollout) || !has(self.rollout.canary) || self.variants.exists(v, v.name == self.rollout.canary)").message("rollout.canary must name one of spec.variants").field_path(".rollout.canary"),
    validation = Rule::new("!has(self.rollout) || !has(self.rollout.canary) || self.rollout.canary != self.defaultVariant").message("rollout.canary must differ from defaultVariant, which receives the remaining traffic").field_path(".rollout.canary"),
    validation = Rule::new("!has(self.rollout) || !has(self.rollout.steps) || self.rollout.steps.map(s, double(s.weight)).isSorted()").message("rollout.steps weights must be non-decreasing").field_path(".rollout.steps"),
    validation = Rule::new("!has(self.rollout) || !has(self.rollout.analysis) || has(self.rollout.steps)").message("rollout.analysis gates canary steps: it needs rollout.steps").field_path(".rollout.analysis"),
    validation = Rule::new("!has(self.targeting) || self.targeting.all(t, self.variants.exists(v, v.name == t.variant))").message("every targeting[].variant must name one of spec.variants").field_path(".targeting"),
    validation = Rule::new("!has(self.fallback) || !has(self.fallback.chain) || self.fallback.chain.all(c, self.variants.exists(v, v.name == c))").message("every fallback.chain entry must name one of spec.variants").field_path(".fallback.chain"),
)]
pub struct AIFeatureFlagSpec {
    /// `Enabled` applies the split; `Disabled` is the kill switch: all matching
    /// traffic goes to `defaultVariant`.
    #[serde(default)]
    pub state: FlagState,

    /// Which pods' sidecars apply this flag. Empty selects every injected pod
    /// of the namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_selector: Option<LabelSelector>,

    /// Which requests the flag applies to.
    #[serde(default, rename = "match", skip_serializing_if = "MatchSpec::is_empty")]
    pub match_: MatchSpec,

    /// The variant that gets all traffic when disabled, and the rest of the
    /// traffic during a canary.
    #[schemars(length(min = 1, max = 63))]
    pub default_variant: String,

    /// The models (and their parameters and providers) the flag chooses between.
    #[schemars(length(min = 1, max = 16))]
    pub variants: Vec<Variant>,

    /// How traffic is split between variants. Absent: all traffic to `defaultVariant`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout: Option<Rollout>,

    /// Rules evaluated before the split; the first that matches picks the variant.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub targeting: Vec<TargetingRule>,

    /// What to do when the chosen variant fails.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback: Option<Fallback>,
}

/// Kill switch.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum FlagState {
    #[default]
    Enabled,
    Disabled,
}

/// The request selector of a flag.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MatchSpec {
    /// Requested model names, exact or glob (`gpt-4o*`). Empty matches any model.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub models: Vec<String>,
    /// API operations. Empty matches all.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub operations: Vec<Operation>,
}

impl MatchSpec {
    pub fn is_empty(&self) -> bool {
        self.models.is_empty() && self.operations.is_empty()
    }
}

/// An LLM API operation, recognised by request path.
#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Operation {
    /// `POST /v1/chat/completions`
    Chat,
    /// `POST /v1/responses`
    Responses,
    /// `POST /v1/completions`
    Completions,
    /// `POST /v1/embeddings`
    Embeddings,
    /// Anthropic `POST /v1/messages`
    Messages,
}

impl Operation {
    pub const ALL: [Operation; 5] = [
        Operation::Chat,
        Operation::Responses,
        Operation::Completions,
        Operation::Embeddings,
        Operation::Messages,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Chat => "chat",
            Operation::Responses => "responses",
            Operation::Completions => "completions",
            Operation::Embeddings => "embeddings",
            Operation::Messages => "messages",
        }
    }
}

/// One arm of the flag.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct Variant {
    /// DNS-label name, used in metrics, headers and references.
    #[schemars(
        length(min = 1, max = 63),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    )]
    pub name: String,
    /// The model the request is rewritten to.
    #[schemars(length(min = 1, max = 256))]
    pub model: String,
    /// JSON merge patch (RFC 7386) applied to the request body.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::schema::free_form_object")]
    pub params: Option<serde_json::Value>,
    /// Where to send it. Absent: the upstream the request was meant for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<Provider>,
    /// Price override in USD per million tokens (defaults come from the sidecar's table).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pricing: Option<Pricing>,
}

/// An upstream endpoint and the credential to use there. The endpoint speaks
/// the protocol of the incoming request (OpenAI-compatible servers such as
/// vLLM, Azure OpenAI or Anthropic's OpenAI-compatible API all do).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Provider {
    /// Base URL, e.g. `https://api.openai.com` or `http://vllm.models:8000`.
    #[schemars(length(min = 1, max = 2048))]
    pub base_url: String,
    /// Key in the namespace's Secret `aiflags-credentials` holding the API key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[-._a-zA-Z0-9]+$"), length(max = 253))]
    pub credential_key: Option<String>,
}

/// USD per million tokens.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Pricing {
    #[schemars(range(min = 0.0))]
    pub input_per_million: f64,
    #[schemars(range(min = 0.0))]
    pub output_per_million: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0))]
    pub cached_input_per_million: Option<f64>,
}

/// Traffic split: fixed weights or a progressive canary.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct Rollout {
    /// Where the sticky value comes from, first present wins:
    /// `header:x-user-id`, `body:user`, `body:metadata.user_id`. None present: random.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(
        length(max = 8),
        inner(regex(
            pattern = r"^(header:[A-Za-z0-9!#$%&'*+.^_`|~-]+|body:[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*)$"
        ))
    )]
    pub sticky_by: Vec<String>,
    /// Percent per variant, up to 2 decimals, summing to 100. Unlisted variants get 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("maxProperties" = 16))]
    pub weights: Option<BTreeMap<String, f64>>,
    /// The variant a progressive rollout moves traffic to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary: Option<String>,
    /// Canary weights in order; the rest goes to `defaultVariant`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 32))]
    pub steps: Option<Vec<RolloutStep>>,
    /// Health checks that gate each step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub analysis: Option<Analysis>,
}

/// One step of a canary.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.weight >= 0.0 && self.weight <= 100.0").message("step weight must be between 0 and 100").field_path(".weight"))]
pub struct RolloutStep {
    /// Canary percent at this step.
    pub weight: f64,
    /// How long to hold this step once proxies serve it. Absent on the last step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new(r"self.matches('^([0-9]+(\\.[0-9]+)?(ms|s|m|h))+$')").message("must be a duration such as 30s, 10m or 1h30m"))]
    pub pause: Option<String>,
}

/// Thresholds the canary must stay within.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct Analysis {
    /// How often to check. Default 1m.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new(r"self.matches('^([0-9]+(\\.[0-9]+)?(ms|s|m|h))+$')").message("must be a duration such as 30s, 10m or 1h30m"))]
    pub interval: Option<String>,
    /// Failed checks before the rollout aborts. Default 2.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 100))]
    pub failure_limit: Option<u32>,
    /// Canary requests needed before a check counts. Default 50.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_requests: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub max_error_rate: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0))]
    pub max_p95_latency_seconds: Option<f64>,
    /// Highest share of canary requests served by another model (a fallback).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub max_fallback_rate: Option<f64>,
    /// Highest share of the canary model's upstream attempts that answered
    /// empty or content-filtered (the sidecar's attempt outcomes `empty` and
    /// `content_filter`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub max_empty_rate: Option<f64>,
    /// The canary may be worse than the stable variant (`defaultVariant`) by
    /// at most these margins, measured over the same interval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_increase_over_stable: Option<StableMargins>,
}

/// How much worse than the stable variant the canary may be: each margin is
/// added to the stable variant's value (rates as ratios, latency in seconds).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.errorRate) || has(self.p95LatencySeconds) || has(self.fallbackRate) || has(self.emptyRate)").message("name at least one margin: errorRate, p95LatencySeconds, fallbackRate or emptyRate"))]
pub struct StableMargins {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub error_rate: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0))]
    pub p95_latency_seconds: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub fallback_rate: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub empty_rate: Option<f64>,
}

/// Sends matching requests to a variant before the split is consulted.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TargetingRule {
    pub when: TargetingMatch,
    #[schemars(length(min = 1, max = 63))]
    pub variant: String,
}

/// All listed conditions must hold; within one header, any listed value matches.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TargetingMatch {
    /// Header name → accepted values.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 16))]
    pub header: BTreeMap<String, Vec<String>>,
    /// Top-level body field (dotted path) → accepted string values.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 16))]
    pub body: BTreeMap<String, Vec<String>>,
}

/// Retry and fallback policy.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("!has(self.on) || !self.on.exists(c, c == 'contentFilter') || (has(self.chain) && size(self.chain) > 0)").message("fallback.on names contentFilter, which is never retried on the same variant: name the variants to fall back to in fallback.chain").field_path(".on"),
    validation = Rule::new("!has(self.on) || !self.on.exists(c, c == 'empty') || (has(self.chain) && size(self.chain) > 0) || (has(self.retries) && self.retries > 0)").message("fallback.on names empty: give it a fallback.chain or retries to retry with").field_path(".on"),
)]
pub struct Fallback {
    /// Failures that trigger a retry or fallback: `timeout`, `connect`, `4xx`,
    /// `5xx`, a status code, and answers judged bad: `empty` (no text, tool
    /// call or refusal; no vectors) and `contentFilter` (the provider's filter
    /// stopped it). Default: timeout, connect, 429, 5xx.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(
        length(max = 16),
        inner(
            length(max = 13),
            regex(pattern = r"^(timeout|connect|4xx|5xx|[45][0-9][0-9]|empty|contentFilter)$")
        )
    )]
    pub on: Vec<String>,
    /// Variants tried in order after the chosen one fails.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 8))]
    pub chain: Vec<String>,
    /// Retries of the same target before moving down the chain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(max = 5))]
    pub retries: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(
        validation = Rule::new(r"self.matches('^([0-9]+(\\.[0-9]+)?(ms|s|m|h))+$')").message("must be a duration such as 30s, 10m or 1h30m"),
        validation = Rule::new(r"!self.matches('^(0+(\\.0+)?(ms|s|m|h))+$')").message("must be longer than 0"),
    )]
    pub per_attempt_timeout: Option<String>,
    /// Streams: no first byte by then is a failed attempt (with `empty` or
    /// `contentFilter` in `on`: no first content).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(
        validation = Rule::new(r"self.matches('^([0-9]+(\\.[0-9]+)?(ms|s|m|h))+$')").message("must be a duration such as 30s, 10m or 1h30m"),
        validation = Rule::new(r"!self.matches('^(0+(\\.0+)?(ms|s|m|h))+$')").message("must be longer than 0"),
    )]
    pub first_token_timeout: Option<String>,
    /// Overall budget for all attempts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(
        validation = Rule::new(r"self.matches('^([0-9]+(\\.[0-9]+)?(ms|s|m|h))+$')").message("must be a duration such as 30s, 10m or 1h30m"),
        validation = Rule::new(r"!self.matches('^(0+(\\.0+)?(ms|s|m|h))+$')").message("must be longer than 0"),
    )]
    pub deadline: Option<String>,
}
