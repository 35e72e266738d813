//! Which flags a change of their namespace's `aiflags-config` re-reconciles. Pure.
//!
//! Every flag reports the config revision that serves it, so a ConfigMap
//! event re-reconciles only the flags whose report is out of date. That is
//! what stops the cascade: a reconcile whose apply leaves the ConfigMap as
//! it was writes the revision every flag already reports, and even a changed
//! ConfigMap re-reconciles each flag once, after which it reports the new
//! revision. Edits by anyone else are still undone at once: content that no
//! longer matches its `revision` (or is unreadable, or gone, or relabelled
//! out of the watch) re-reconciles every flag of the namespace.
//!
//! Reacting to the event type (a deletion looks like any other object) is
//! why this reads raw watcher events rather than `Controller::watches`.

use std::sync::Arc;

use aiflags_api::AIFeatureFlag;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::ResourceExt;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher::Event;

use super::config_map::previous_config;

/// The flags of `flags` to re-reconcile after `event` on a managed ConfigMap.
pub fn flags_to_refresh(
    flags: &[Arc<AIFeatureFlag>],
    event: &Event<ConfigMap>,
) -> Vec<ObjectRef<AIFeatureFlag>> {
    let (config_map, deleted) = match event {
        Event::Apply(cm) | Event::InitApply(cm) => (cm, false),
        Event::Delete(cm) => (cm, true),
        Event::Init | Event::InitDone => return Vec::new(),
    };
    let namespace = config_map.namespace();
    // `None`: every flag must look again (deleted, unreadable or no config).
    let revision = match previous_config(Some(config_map)) {
        Ok(Some(config)) if !deleted => Some(config.revision),
        _ => None,
    };
    flags
        .iter()
        .filter(|f| f.namespace() == namespace)
        .filter(|f| {
            let reported = f.status.as_ref().and_then(|s| s.config_revision.as_ref());
            revision.is_none() || reported != revision.as_ref()
        })
        .map(|f| ObjectRef::from_obj(f.as_ref()))
        .collect()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use aiflags_api::{
        AIFeatureFlagStatus, CONFIG_MAP_KEY, FlagInput, SidecarConfig, compile, encode_config,
    };

    use super::*;
    use crate::controller::config_map::desired_config_map;
    use crate::controller::fixtures::FlagBuilder;

    fn config_of(flags: &[&AIFeatureFlag]) -> SidecarConfig {
        let inputs: Vec<FlagInput> = flags.iter().map(|f| FlagInput::from_resource(f)).collect();
        compile(Some("shop"), &inputs, None).config
    }

    fn reporting(name: &str, revision: Option<&str>) -> Arc<AIFeatureFlag> {
        let status = AIFeatureFlagStatus {
            config_revision: revision.map(Into::into),
            ..Default::default()
        };
        Arc::new(AIFeatureFlag::test().named(name).with_status(status))
    }

    fn names(refs: &[ObjectRef<AIFeatureFlag>]) -> Vec<&str> {
        refs.iter().map(|r| r.name.as_str()).collect()
    }

    #[test]
    fn a_config_map_every_flag_already_reports_triggers_nothing() {
        let config = config_of(&[&AIFeatureFlag::test()]);
        let cm = desired_config_map("shop", &encode_config(&config));
        let flags = [
            reporting("a", Some(&config.revision)),
            reporting("b", Some(&config.revision)),
        ];
        assert!(flags_to_refresh(&flags, &Event::Apply(cm.clone())).is_empty());
        // Nor does the re-list after a watch restart.
        assert!(flags_to_refresh(&flags, &Event::InitApply(cm)).is_empty());
        assert!(flags_to_refresh(&flags, &Event::Init).is_empty());
        assert!(flags_to_refresh(&flags, &Event::InitDone).is_empty());
    }

    #[test]
    fn a_new_revision_triggers_the_flags_that_do_not_report_it() {
        let config = config_of(&[&AIFeatureFlag::test()]);
        let cm = desired_config_map("shop", &encode_config(&config));
        let flags = [
            reporting("current", Some(&config.revision)),
            reporting("stale", Some("an-older-revision")),
            reporting("never-served", None),
        ];
        let refs = flags_to_refresh(&flags, &Event::Apply(cm));
        assert_eq!(names(&refs), ["stale", "never-served"]);
        assert!(refs.iter().all(|r| r.namespace.as_deref() == Some("shop")));
    }

    #[test]
    fn deleted_or_edited_config_maps_trigger_every_flag_of_their_namespace() {
        let config = config_of(&[&AIFeatureFlag::test()]);
        let cm = desired_config_map("shop", &encode_config(&config));
        let mut elsewhere = AIFeatureFlag::test().named("elsewhere");
        elsewhere.metadata.namespace = Some("other".into());
        let flags = [
            reporting("a", Some(&config.revision)),
            reporting("b", Some(&config.revision)),
            Arc::new(elsewhere),
        ];
        let deleted = flags_to_refresh(&flags, &Event::Delete(cm.clone()));
        assert_eq!(names(&deleted), ["a", "b"]);

        // Content edited without its revision no longer reads.
        let edited = config.to_json().replace("gpt-4.1-mini", "gpt-5");
        let mut tampered = cm.clone();
        tampered.data = Some(BTreeMap::from([(CONFIG_MAP_KEY.to_string(), edited)]));
        assert_eq!(
            names(&flags_to_refresh(&flags, &Event::Apply(tampered))),
            ["a", "b"]
        );
        let mut emptied = cm;
        emptied.data = None;
        assert_eq!(
            names(&flags_to_refresh(&flags, &Event::Apply(emptied))),
            ["a", "b"]
        );
    }
}
