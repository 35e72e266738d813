//! The namespace's `aiflags-config` ConfigMap: which flags feed it, what was
//! in it, and what it should hold. Pure.

use std::collections::BTreeMap;
use std::sync::Arc;

use aiflags_api::{
    AIFeatureFlag, CONFIG_MAP_GZIP_KEY, CONFIG_MAP_KEY, CONFIG_MAP_NAME, ConfigError,
    EncodedConfig, SidecarConfig, decode_config,
};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde_json::{Value, json};

/// Field manager of every write, and the `managed-by` label value.
pub const MANAGER: &str = "aiflags-operator";
pub const MANAGED_BY: &str = "app.kubernetes.io/managed-by";

/// The flags whose compiled form belongs in the config. Flags being deleted
/// are left out, and so is `reconciled` itself when `removing` it; otherwise
/// `reconciled` is included even if the cache has not caught up with it yet.
pub fn flags_to_compile<'a>(
    listed: &'a [Arc<AIFeatureFlag>],
    reconciled: &'a AIFeatureFlag,
    removing: bool,
) -> Vec<&'a AIFeatureFlag> {
    let name = &reconciled.metadata.name;
    let mut flags: Vec<&AIFeatureFlag> = listed
        .iter()
        .map(AsRef::as_ref)
        .filter(|f| f.metadata.deletion_timestamp.is_none())
        .filter(|f| !(removing && f.metadata.name == *name))
        .collect();
    let listed_already = listed.iter().any(|f| f.metadata.name == *name);
    if !removing && !listed_already && reconciled.metadata.deletion_timestamp.is_none() {
        flags.push(reconciled);
    }
    flags
}

/// The config now served in the namespace, if the ConfigMap holds one, as
/// plain JSON or gzip. A document this build cannot read is an error the
/// caller decides about.
pub fn previous_config(existing: Option<&ConfigMap>) -> Result<Option<SidecarConfig>, ConfigError> {
    let Some(cm) = existing else {
        return Ok(None);
    };
    let json = cm.data.as_ref().and_then(|d| d.get(CONFIG_MAP_KEY));
    let gzip = cm
        .binary_data
        .as_ref()
        .and_then(|d| d.get(CONFIG_MAP_GZIP_KEY));
    // Both present only between a write and the removal of the stale key
    // (see `stale_key_removal`): plain JSON is what an older operator wrote.
    match (json, gzip) {
        (Some(json), _) => decode_config(json.as_bytes()).map(Some),
        (None, Some(gzip)) => decode_config(&gzip.0).map(Some),
        (None, None) => Ok(None),
    }
}

/// The ConfigMap to server-side apply: only the fields this operator owns,
/// and exactly one of `data["config.json"]` and `binaryData["config.json.gz"]`.
/// Applying one form drops the other, which this operator applied before.
pub fn desired_config_map(namespace: &str, config: &EncodedConfig) -> ConfigMap {
    let (data, binary_data) = match config {
        EncodedConfig::Json(json) => (
            Some(BTreeMap::from([(CONFIG_MAP_KEY.to_string(), json.clone())])),
            None,
        ),
        EncodedConfig::Gzip { bytes, .. } => (
            None,
            Some(BTreeMap::from([(
                CONFIG_MAP_GZIP_KEY.to_string(),
                ByteString(bytes.clone()),
            )])),
        ),
    };
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(CONFIG_MAP_NAME.to_string()),
            namespace: Some(namespace.to_string()),
            labels: Some(BTreeMap::from([(
                MANAGED_BY.to_string(),
                MANAGER.to_string(),
            )])),
            ..ObjectMeta::default()
        },
        data,
        binary_data,
        ..ConfigMap::default()
    }
}

/// A merge patch removing the form of the config that `written` (the
/// ConfigMap as the apply left it) should no longer hold. Server-side apply
/// already drops a key this operator applied before; one that another field
/// manager also claims (say, a `kubectl edit`) survives it, and sidecars
/// must not be left to choose between two documents.
pub fn stale_key_removal(written: &ConfigMap, config: &EncodedConfig) -> Option<Value> {
    let has_json = written
        .data
        .as_ref()
        .is_some_and(|d| d.contains_key(CONFIG_MAP_KEY));
    let has_gzip = written
        .binary_data
        .as_ref()
        .is_some_and(|d| d.contains_key(CONFIG_MAP_GZIP_KEY));
    match config {
        EncodedConfig::Json(_) if has_gzip => {
            Some(json!({"binaryData": {CONFIG_MAP_GZIP_KEY: null}}))
        }
        EncodedConfig::Gzip { .. } if has_json => Some(json!({"data": {CONFIG_MAP_KEY: null}})),
        _ => None,
    }
}

/// Whether `error`, failing the apply of the config that leaves a deleted
/// flag out, means no config is left to remove the flag from:
/// - 404: the namespace is gone, and its ConfigMap with it;
/// - 403 when no ConfigMap existed: the apply was a create, which a
///   terminating namespace refuses ("... because it is being terminated");
///   whatever the cause, no config there serves the flag.
///
/// A 403 on an existing ConfigMap (say, RBAC) is a real failure: the config
/// still serves the flag, and a terminating namespace does allow updates.
pub fn nothing_left_to_clean(error: &kube::Error, config_map_existed: bool) -> bool {
    match error {
        kube::Error::Api(status) => {
            status.code == 404 || (status.code == 403 && !config_map_existed)
        }
        _ => false,
    }
}

/// Label selector of the ConfigMaps this operator writes.
pub fn managed_selector() -> String {
    format!("{MANAGED_BY}={MANAGER}")
}

#[cfg(test)]
mod tests;
