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

fn api_error(code: u16) -> kube::Error {
    kube::Error::Api(Box::new(
        kube::core::Status::failure("test", "Test").with_code(code),
    ))
}

#[test]
fn only_a_refused_create_or_a_missing_namespace_leaves_nothing_to_clean() {
    assert!(nothing_left_to_clean(&api_error(403), false));
    assert!(!nothing_left_to_clean(&api_error(403), true));
    assert!(nothing_left_to_clean(&api_error(404), false));
    assert!(nothing_left_to_clean(&api_error(404), true));
    for code in [409, 422, 429, 500] {
        assert!(!nothing_left_to_clean(&api_error(code), false), "{code}");
    }
    let transport = kube::Error::ReadEvents(std::io::Error::other("reset"));
    assert!(!nothing_left_to_clean(&transport, false));
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
