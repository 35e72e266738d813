//! One compiled flag, its variants and targeting rules, and the invariants a
//! sidecar relies on.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{CompiledFallback, MAX_RETRIES, MAX_TIMEOUT_MS, Selector, StickySource, TOTAL_BP};
use crate::crd::{Operation, Pricing, Provider};

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
    pub(super) fn check(&self) -> Result<(), String> {
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
