//! `aiflags-operator inject`: a pod manifest as the webhook would admit it,
//! computed offline by the same functions, to review what injection does
//! (and to test that the chart's config yields the pod it promises).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Pod;
use serde_json::Value;

use super::config::InjectionConfig;
use super::inject::{Verdict, decide};

/// The pod to print, and what the webhook would have said about it.
#[derive(Debug)]
pub struct Preview {
    pub pod: Value,
    pub notes: Vec<String>,
}

/// `manifest` is one Pod in YAML or JSON; its namespace (default `default`)
/// has `namespace_labels`. A pod that would be admitted without the
/// sidecar though it asked for it is an error listing why.
pub fn preview(
    manifest: &str,
    namespace_labels: &BTreeMap<String, String>,
    config: &InjectionConfig,
) -> Result<Preview, Vec<String>> {
    let mut document: Value =
        serde_yaml::from_str(manifest).map_err(|e| vec![format!("reading the manifest: {e}")])?;
    if document.get("kind").and_then(Value::as_str) != Some("Pod") {
        return Err(vec![
            "the manifest is not a Pod (the webhook injects pods as they are created)".to_string(),
        ]);
    }
    let pod: Pod = serde_path_to_error::deserialize(document.clone()).map_err(|e| {
        vec![format!(
            "the pod cannot be read at {}: {}",
            e.path(),
            e.inner()
        )]
    })?;
    let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
    match decide(&pod, namespace, namespace_labels, config) {
        Verdict::Inject { patch, warnings } => {
            json_patch::patch(&mut document, &patch)
                .map_err(|e| vec![format!("applying the patch failed: {e}")])?;
            Ok(Preview {
                pod: document,
                notes: warnings,
            })
        }
        Verdict::Skip(skip) => Ok(Preview {
            pod: document,
            notes: vec![format!("not injected: {}", skip.describe())],
        }),
        Verdict::Refuse(problems) => Err(problems),
    }
}

/// `key=value` pairs, as `--namespace-label` takes them.
pub fn parse_labels(pairs: &[String]) -> Result<BTreeMap<String, String>, Vec<String>> {
    let mut labels = BTreeMap::new();
    let mut errors = Vec::new();
    for pair in pairs {
        match pair.split_once('=') {
            Some((key, value)) if !key.is_empty() => {
                labels.insert(key.to_string(), value.to_string());
            }
            _ => errors.push(format!("--namespace-label {pair:?}: expected key=value")),
        }
    }
    if errors.is_empty() {
        Ok(labels)
    } else {
        Err(errors)
    }
}
