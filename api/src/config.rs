//! The compiled config document the operator writes to the ConfigMap
//! `aiflags-config` (key `config.json`) and every sidecar reads.
//!
//! Everything a sidecar needs is resolved here: weights are integer basis
//! points in variant order, durations are milliseconds, references are
//! checked. The format is documented in `docs/config-format.md`.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::crd::{Operation, Pricing, Provider};

/// The only document schema this build understands.
pub const CONFIG_SCHEMA: &str = "aiflags.dev/config/v1";
/// ConfigMap name and key the operator writes in every namespace with flags.
pub const CONFIG_MAP_NAME: &str = "aiflags-config";
pub const CONFIG_MAP_KEY: &str = "config.json";
/// Total of a flag's weights.
pub const TOTAL_BP: u32 = 10_000;

/// One namespace's compiled flags.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SidecarConfig {
    /// Always [`CONFIG_SCHEMA`]; sidecars reject any other.
    pub schema: String,
    /// Content hash of `flags`; what sidecars report and the operator waits for.
    pub revision: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Sorted by `key`.
    pub flags: Vec<CompiledFlag>,
}

/// Why a document is not a usable config.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ConfigError {
    #[error("config is not valid JSON: {0}")]
    Json(String),
    #[error("config schema {found:?} is not supported (expected {CONFIG_SCHEMA:?})")]
    UnknownSchema { found: String },
    #[error("config revision {found:?} does not match its content (expected {expected:?})")]
    RevisionMismatch { found: String, expected: String },
    #[error("flags[{index}] ({key}): {message}")]
    InvalidFlag {
        index: usize,
        key: String,
        message: String,
    },
}

impl SidecarConfig {
    /// Builds a document from compiled flags, sorting them and computing the revision.
    pub fn new(namespace: Option<String>, mut flags: Vec<CompiledFlag>) -> Self {
        flags.sort_by(|a, b| (&a.namespace, &a.key).cmp(&(&b.namespace, &b.key)));
        let revision = revision_of(&flags);
        SidecarConfig {
            schema: CONFIG_SCHEMA.to_string(),
            revision,
            namespace,
            flags,
        }
    }

    /// An empty config: what a namespace with no valid flag serves.
    pub fn empty(namespace: Option<String>) -> Self {
        Self::new(namespace, Vec::new())
    }

    /// Parses and checks a document as a sidecar must before swapping it in:
    /// known schema, honest revision, internally consistent flags.
    pub fn from_json(bytes: &[u8]) -> Result<Self, ConfigError> {
        // Look at the schema first, so a future document gets the clear error
        // rather than a field-level one.
        let raw: serde_json::Value =
            serde_json::from_slice(bytes).map_err(|e| ConfigError::Json(e.to_string()))?;
        let found = raw.get("schema").and_then(|s| s.as_str()).unwrap_or("");
        if found != CONFIG_SCHEMA {
            return Err(ConfigError::UnknownSchema {
                found: found.to_string(),
            });
        }
        let config: SidecarConfig =
            serde_json::from_value(raw).map_err(|e| ConfigError::Json(e.to_string()))?;
        let expected = revision_of(&config.flags);
        if config.revision != expected {
            return Err(ConfigError::RevisionMismatch {
                found: config.revision,
                expected,
            });
        }
        for (index, flag) in config.flags.iter().enumerate() {
            flag.check().map_err(|message| ConfigError::InvalidFlag {
                index,
                key: flag.key.clone(),
                message,
            })?;
        }
        Ok(config)
    }

    /// Pretty JSON, as stored in the ConfigMap.
    pub fn to_json(&self) -> String {
        // Serialising plain data with string keys cannot fail.
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    /// Keeps only the flags whose pod selector matches these pod labels.
    pub fn for_pod(&self, labels: &BTreeMap<String, String>) -> SidecarConfig {
        let flags = self
            .flags
            .iter()
            .filter(|f| f.pod_selector.as_ref().is_none_or(|s| s.matches(labels)))
            .cloned()
            .collect();
        SidecarConfig {
            schema: self.schema.clone(),
            revision: self.revision.clone(),
            namespace: self.namespace.clone(),
            flags,
        }
    }

    pub fn flag(&self, key: &str) -> Option<&CompiledFlag> {
        self.flags.iter().find(|f| f.key == key)
    }
}

/// `sha256` of the canonical JSON of the flags, first 16 hex digits.
pub fn revision_of(flags: &[CompiledFlag]) -> String {
    let canonical = serde_json::to_vec(flags).unwrap_or_default();
    let digest = Sha256::digest(&canonical);
    hex::encode(&digest[..8])
}

/// A flag ready to evaluate.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CompiledFlag {
    /// The flag's name: the flagd `flagKey` of the sticky hash and the `flag` metric label.
    pub key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// `metadata.generation` this was compiled from.
    pub generation: i64,
    /// `false` is the kill switch: every request gets `defaultVariant`.
    pub enabled: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_selector: Option<Selector>,
    /// Model patterns (exact or `*`/`?` glob); empty = any.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub models: Vec<String>,
    /// Empty = any.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub operations: Vec<Operation>,
    pub default_variant: String,
    pub variants: Vec<CompiledVariant>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sticky_by: Vec<StickySource>,
    /// One entry per variant, in `variants` order, summing to [`TOTAL_BP`].
    pub weights: Vec<u32>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub targeting: Vec<CompiledTargeting>,
    pub fallback: CompiledFallback,
}

impl CompiledFlag {
    pub fn variant(&self, name: &str) -> Option<&CompiledVariant> {
        self.variants.iter().find(|v| v.name == name)
    }

    pub fn default_variant(&self) -> Option<&CompiledVariant> {
        self.variant(&self.default_variant)
    }

    /// The weights in force: the kill switch sends everything to the default.
    pub fn effective_weights(&self) -> Vec<u32> {
        if self.enabled {
            return self.weights.clone();
        }
        self.variants
            .iter()
            .map(|v| {
                if v.name == self.default_variant {
                    TOTAL_BP
                } else {
                    0
                }
            })
            .collect()
    }

    /// Invariants a sidecar relies on; a document breaking them is rejected whole.
    fn check(&self) -> Result<(), String> {
        if self.variants.is_empty() {
            return Err("no variants".into());
        }
        if self.weights.len() != self.variants.len() {
            return Err(format!(
                "{} weights for {} variants",
                self.weights.len(),
                self.variants.len()
            ));
        }
        let total: u64 = self.weights.iter().map(|w| u64::from(*w)).sum();
        if total != u64::from(TOTAL_BP) {
            return Err(format!(
                "weights sum to {total} basis points, not {TOTAL_BP}"
            ));
        }
        let known = |name: &str| self.variants.iter().any(|v| v.name == name);
        if !known(&self.default_variant) {
            return Err(format!("unknown defaultVariant {:?}", self.default_variant));
        }
        for name in self
            .fallback
            .chain
            .iter()
            .chain(self.targeting.iter().map(|t| &t.variant))
        {
            if !known(name) {
                return Err(format!("unknown variant {name:?}"));
            }
        }
        // Whoever can write the ConfigMap bypasses the compiler: the values a
        // sidecar turns into deadlines and file paths are checked again.
        let fb = &self.fallback;
        let timeouts = [
            ("perAttemptTimeoutMs", Some(fb.per_attempt_timeout_ms)),
            ("firstTokenTimeoutMs", fb.first_token_timeout_ms),
            ("deadlineMs", Some(fb.deadline_ms)),
        ];
        for (field, ms) in timeouts {
            if ms.is_some_and(|ms| ms == 0 || ms > MAX_TIMEOUT_MS) {
                return Err(format!(
                    "fallback.{field} must be between 1 and {MAX_TIMEOUT_MS}"
                ));
            }
        }
        if fb.retries > MAX_RETRIES {
            return Err(format!("fallback.retries must be at most {MAX_RETRIES}"));
        }
        for v in &self.variants {
            let key = v
                .provider
                .as_ref()
                .and_then(|p| p.credential_key.as_deref());
            if key.is_some_and(|k| !is_secret_key(k)) {
                return Err(format!(
                    "variant {:?}: credentialKey is not a Secret key",
                    v.name
                ));
            }
        }
        Ok(())
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CompiledVariant {
    pub name: String,
    pub model: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub params: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<Provider>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pricing: Option<Pricing>,
}

/// Where a sticky value is read from.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum StickySource {
    /// A request header, lower-cased.
    Header(String),
    /// A body field, as a path of object keys.
    Body(Vec<String>),
}

impl StickySource {
    /// Parses `header:x-user-id` or `body:metadata.user_id`.
    pub fn parse(s: &str) -> Option<StickySource> {
        if let Some(name) = s.strip_prefix("header:") {
            let valid = !name.is_empty() && http_token(name);
            return valid.then(|| StickySource::Header(name.to_ascii_lowercase()));
        }
        let path = s.strip_prefix("body:")?;
        let parts: Vec<String> = path.split('.').map(str::to_string).collect();
        let valid = parts.iter().all(|p| {
            let mut chars = p.chars();
            chars
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        });
        valid.then_some(StickySource::Body(parts))
    }
}

impl fmt::Display for StickySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StickySource::Header(h) => write!(f, "header:{h}"),
            StickySource::Body(p) => write!(f, "body:{}", p.join(".")),
        }
    }
}

/// Longest timeout a config may carry: a week.
pub const MAX_TIMEOUT_MS: u64 = 7 * 24 * 3_600_000;
/// Most retries of one target a config may ask for.
pub const MAX_RETRIES: u32 = 5;

/// A Kubernetes Secret key: letters, digits, `-`, `.`, `_` — never a path.
pub fn is_secret_key(key: &str) -> bool {
    !key.is_empty()
        && key.len() <= 253
        && key != "."
        && key != ".."
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b))
}

/// RFC 9110 token characters: what a header name may contain.
pub(crate) fn http_token(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// All conditions must hold; within one field, any value matches.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct CompiledTargeting {
    /// Lower-cased header name → accepted values.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, Vec<String>>,
    /// Dotted body path → accepted string values.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub body: BTreeMap<String, Vec<String>>,
    pub variant: String,
}

/// Retry and fallback policy, resolved.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct CompiledFallback {
    /// Failures that trigger a retry or fallback; empty = none do.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub on: Vec<FailureClass>,
    /// Variant names tried in order after the chosen one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub chain: Vec<String>,
    pub retries: u32,
    pub per_attempt_timeout_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_token_timeout_ms: Option<u64>,
    pub deadline_ms: u64,
}

impl Default for CompiledFallback {
    /// No fallback section: one attempt, generous timeouts suited to long generations.
    fn default() -> Self {
        CompiledFallback {
            on: Vec::new(),
            chain: Vec::new(),
            retries: 0,
            per_attempt_timeout_ms: DEFAULT_PER_ATTEMPT_TIMEOUT_MS,
            first_token_timeout_ms: None,
            deadline_ms: DEFAULT_DEADLINE_MS,
        }
    }
}

pub const DEFAULT_PER_ATTEMPT_TIMEOUT_MS: u64 = 300_000;
pub const DEFAULT_DEADLINE_MS: u64 = 600_000;

impl CompiledFallback {
    /// Whether this failure moves on to a retry or the next target.
    pub fn applies_to(&self, failure: Failure) -> bool {
        self.on.iter().any(|class| class.matches(failure))
    }
}

/// An observed failure of one upstream attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    Timeout,
    Connect,
    Status(u16),
}

/// A class of failures named in `fallback.on`.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(try_from = "String", into = "String")]
pub enum FailureClass {
    Timeout,
    Connect,
    /// `4xx` or `5xx`: the leading digit.
    StatusClass(u16),
    Status(u16),
}

impl FailureClass {
    pub fn matches(self, failure: Failure) -> bool {
        match (self, failure) {
            (FailureClass::Timeout, Failure::Timeout) => true,
            (FailureClass::Connect, Failure::Connect) => true,
            (FailureClass::StatusClass(c), Failure::Status(s)) => s / 100 == c,
            (FailureClass::Status(a), Failure::Status(b)) => a == b,
            _ => false,
        }
    }
}

impl TryFrom<String> for FailureClass {
    type Error = String;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        FailureClass::parse(&s).ok_or_else(|| {
            format!("{s:?} is not one of timeout, connect, 4xx, 5xx or a status code 400-599")
        })
    }
}

impl FailureClass {
    pub fn parse(s: &str) -> Option<FailureClass> {
        match s {
            "timeout" => Some(FailureClass::Timeout),
            "connect" => Some(FailureClass::Connect),
            "4xx" => Some(FailureClass::StatusClass(4)),
            "5xx" => Some(FailureClass::StatusClass(5)),
            _ => s
                .parse::<u16>()
                .ok()
                .filter(|c| (400..600).contains(c) && s.len() == 3)
                .map(FailureClass::Status),
        }
    }
}

impl From<FailureClass> for String {
    fn from(c: FailureClass) -> String {
        match c {
            FailureClass::Timeout => "timeout".into(),
            FailureClass::Connect => "connect".into(),
            FailureClass::StatusClass(d) => format!("{d}xx"),
            FailureClass::Status(s) => s.to_string(),
        }
    }
}

/// A label selector reduced to what a sidecar evaluates.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Selector {
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub match_labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub match_expressions: Vec<SelectorRequirement>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct SelectorRequirement {
    pub key: String,
    pub operator: SelectorOperator,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<String>,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum SelectorOperator {
    In,
    NotIn,
    Exists,
    DoesNotExist,
}

impl Selector {
    /// Kubernetes semantics: every label and every expression must hold; empty selects all.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        let labels_ok = self
            .match_labels
            .iter()
            .all(|(k, v)| labels.get(k) == Some(v));
        labels_ok
            && self.match_expressions.iter().all(|r| {
                let value = labels.get(&r.key);
                match r.operator {
                    SelectorOperator::In => value.is_some_and(|v| r.values.contains(v)),
                    SelectorOperator::NotIn => value.is_none_or(|v| !r.values.contains(v)),
                    SelectorOperator::Exists => value.is_some(),
                    SelectorOperator::DoesNotExist => value.is_none(),
                }
            })
    }
}
