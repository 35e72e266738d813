//! Which pods get the sidecar: opted in by their own label or their
//! namespace's, not opted out by either, and not in an excluded namespace.

use std::collections::BTreeMap;

use super::config::InjectionConfig;

/// The opt-in (`enabled`) and opt-out (`disabled`) label, on pods and namespaces.
pub const INJECT_LABEL: &str = "aiflags.dev/inject";
pub const ENABLED: &str = "enabled";
pub const DISABLED: &str = "disabled";

/// Why a pod is admitted as it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Skip {
    /// Neither the pod nor its namespace opted in.
    NotSelected,
    /// The pod or its namespace is labelled `disabled`.
    OptedOut,
    /// A system namespace, or one the chart excludes.
    ExcludedNamespace,
    /// The sidecar is already there.
    AlreadyInjected,
}

impl Skip {
    pub fn describe(self) -> &'static str {
        match self {
            Skip::NotSelected => {
                "neither the pod nor its namespace is labelled aiflags.dev/inject=enabled"
            }
            Skip::OptedOut => "the pod or its namespace is labelled aiflags.dev/inject=disabled",
            Skip::ExcludedNamespace => "the namespace is excluded from injection",
            Skip::AlreadyInjected => "the pod already has the aiflags-proxy container",
        }
    }
}

/// `Ok` when a pod with `pod_labels` in `namespace` should get the sidecar.
/// `disabled` anywhere wins over `enabled` anywhere; other values mean nothing.
pub fn selected(
    namespace: &str,
    pod_labels: &BTreeMap<String, String>,
    namespace_labels: &BTreeMap<String, String>,
    config: &InjectionConfig,
) -> Result<(), Skip> {
    if config.excluded_namespaces.iter().any(|n| n == namespace) {
        return Err(Skip::ExcludedNamespace);
    }
    let pod = pod_labels.get(INJECT_LABEL).map(String::as_str);
    let ns = namespace_labels.get(INJECT_LABEL).map(String::as_str);
    if pod == Some(DISABLED) || ns == Some(DISABLED) {
        return Err(Skip::OptedOut);
    }
    if pod == Some(ENABLED) || ns == Some(ENABLED) {
        return Ok(());
    }
    Err(Skip::NotSelected)
}
