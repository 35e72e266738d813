use super::*;
use crate::controller::fixtures::FlagBuilder;
use aiflags_api::{FlagInput, GZIP_ABOVE_BYTES, compile, encode_config};

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

fn config_of(count: usize) -> SidecarConfig {
    let flags: Vec<AIFeatureFlag> = (0..count)
        .map(|i| AIFeatureFlag::test().named(&format!("flag-{i}")))
        .collect();
    let inputs: Vec<FlagInput> = flags.iter().map(FlagInput::from_resource).collect();
    compile(Some("shop"), &inputs, None).config
}

#[test]
fn the_config_map_round_trips_the_config() {
    let config = config_of(1);
    let cm = desired_config_map("shop", &encode_config(&config));
    assert!(cm.binary_data.is_none());
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
fn a_large_config_is_stored_gzipped_in_binary_data_only() {
    let config = config_of(1_000);
    let encoded = encode_config(&config);
    assert!(encoded.json_len() > GZIP_ABOVE_BYTES);
    let cm = desired_config_map("shop", &encoded);
    assert!(cm.data.is_none());
    let binary = cm.binary_data.clone().unwrap_or_default();
    assert_eq!(binary.keys().collect::<Vec<_>>(), [CONFIG_MAP_GZIP_KEY]);
    assert_eq!(binary[CONFIG_MAP_GZIP_KEY].0.len(), encoded.stored_len());
    assert_eq!(previous_config(Some(&cm)), Ok(Some(config)));
}

#[test]
fn the_form_not_written_is_removed_only_when_something_kept_it() {
    let small = encode_config(&config_of(1));
    let large = encode_config(&config_of(1_000));
    let as_small = desired_config_map("shop", &small);
    let as_large = desired_config_map("shop", &large);
    // The apply left exactly the written form: nothing to remove.
    assert_eq!(stale_key_removal(&as_small, &small), None);
    assert_eq!(stale_key_removal(&as_large, &large), None);
    // Another manager kept the other form.
    let mut both = as_small.clone();
    both.binary_data = as_large.binary_data.clone();
    assert_eq!(
        stale_key_removal(&both, &small),
        Some(serde_json::json!({"binaryData": {"config.json.gz": null}}))
    );
    assert_eq!(
        stale_key_removal(&both, &large),
        Some(serde_json::json!({"data": {"config.json": null}}))
    );
    // While both are there, the plain JSON is read.
    assert_eq!(previous_config(Some(&both)), Ok(Some(config_of(1))));
}

#[test]
fn unreadable_gzip_is_an_error() {
    let cm = ConfigMap {
        binary_data: Some(BTreeMap::from([(
            CONFIG_MAP_GZIP_KEY.to_string(),
            ByteString(vec![0x1f, 0x8b, 1, 2, 3]),
        )])),
        ..ConfigMap::default()
    };
    assert!(matches!(
        previous_config(Some(&cm)),
        Err(ConfigError::Gzip(_))
    ));
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
