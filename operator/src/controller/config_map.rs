//! The namespace's `aiflags-config` ConfigMap: which flags feed it, what was
//! in it, and what it should hold. Pure.

use std::collections::BTreeMap;
use std::sync::Arc;

use aiflags_api::{AIFeatureFlag, CONFIG_MAP_KEY, CONFIG_MAP_NAME, ConfigError, SidecarConfig};
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

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

/// The config now served in the namespace, if the ConfigMap holds one.
/// A document this build cannot read is an error the caller decides about.
pub fn previous_config(existing: Option<&ConfigMap>) -> Result<Option<SidecarConfig>, ConfigError> {
    let Some(json) = existing
        .and_then(|cm| cm.data.as_ref())
        .and_then(|data| data.get(CONFIG_MAP_KEY))
    else {
        return Ok(None);
    };
    SidecarConfig::from_json(json.as_bytes()).map(Some)
}

/// The ConfigMap to server-side apply: only the fields this operator owns.
pub fn desired_config_map(namespace: &str, config: &SidecarConfig) -> ConfigMap {
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
        data: Some(BTreeMap::from([(
            CONFIG_MAP_KEY.to_string(),
            config.to_json(),
        )])),
        ..ConfigMap::default()
    }
}

/// Label selector of the ConfigMaps this operator writes.
pub fn managed_selector() -> String {
    format!("{MANAGED_BY}={MANAGER}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::fixtures::FlagBuilder;
    use aiflags_api::{FlagInput, compile};

    fn names(flags: &[&AIFeatureFlag]) -> Vec<String> {
        flags
            .iter()
            .map(|f| f.metadata.name.clone().unwrap_or_default())
            .collect()
    }

    #[test]
    fn deleting_flags_are_never_compiled() {
        let listed = [
            Arc::new(AIFeatureFlag::test().named("a")),
            Arc::new(AIFeatureFlag::test().named("b").finalized().deleting()),
        ];
        let flags = flags_to_compile(&listed, &listed[0], false);
        assert_eq!(names(&flags), ["a"]);
    }

    #[test]
    fn the_removed_flag_is_left_out() {
        let listed = [
            Arc::new(AIFeatureFlag::test().named("a").finalized().deleting()),
            Arc::new(AIFeatureFlag::test().named("b")),
        ];
        // Even if the list still shows it as live.
        let stale = AIFeatureFlag::test().named("b");
        assert_eq!(names(&flags_to_compile(&listed, &listed[0], true)), ["b"]);
        assert!(flags_to_compile(&listed, &stale, true).is_empty());
    }

    #[test]
    fn the_reconciled_flag_is_added_when_the_list_lacks_it() {
        let listed = [Arc::new(AIFeatureFlag::test().named("a"))];
        let new = AIFeatureFlag::test().named("b");
        assert_eq!(names(&flags_to_compile(&listed, &new, false)), ["a", "b"]);
    }

    #[test]
    fn the_config_map_round_trips_the_config() {
        let flag = AIFeatureFlag::test();
        let config = compile(Some("shop"), &[FlagInput::from_resource(&flag)], None).config;
        let cm = desired_config_map("shop", &config);
        assert_eq!(cm.metadata.name.as_deref(), Some("aiflags-config"));
        assert_eq!(cm.metadata.namespace.as_deref(), Some("shop"));
        assert_eq!(
            cm.metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(MANAGED_BY))
                .map(String::as_str),
            Some("aiflags-operator")
        );
        assert_eq!(previous_config(Some(&cm)), Ok(Some(config)));
    }

    #[test]
    fn no_config_map_or_no_key_means_no_previous_config() {
        assert_eq!(previous_config(None), Ok(None));
        assert_eq!(previous_config(Some(&ConfigMap::default())), Ok(None));
    }

    #[test]
    fn an_unreadable_config_is_an_error() {
        let cm = ConfigMap {
            data: Some(BTreeMap::from([(
                CONFIG_MAP_KEY.to_string(),
                "{}".to_string(),
            )])),
            ..ConfigMap::default()
        };
        assert!(matches!(
            previous_config(Some(&cm)),
            Err(ConfigError::UnknownSchema { .. })
        ));
    }
}
