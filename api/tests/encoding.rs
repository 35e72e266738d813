//! How a document is stored and read back: compact JSON while small, gzip
//! when large, one decoder for both, and clear errors for anything else.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)] // test helpers may fail loudly

use std::io::Write;

use aiflags_api::{
    AIFeatureFlag, ConfigError, EncodedConfig, FlagInput, GZIP_ABOVE_BYTES, MAX_CONFIG_MAP_BYTES,
    MAX_DECODED_BYTES, SidecarConfig, compile, decode_config, encode_config,
};
use flate2::Compression;
use flate2::write::GzEncoder;
use proptest::prelude::*;
use serde_json::json;

/// A typical small flag, its names numbered: a selector, a model glob, two
/// variants with params, sticky sources, a targeting rule and a fallback.
fn flag(i: usize) -> AIFeatureFlag {
    serde_json::from_value(json!({
        "apiVersion": "aiflags.dev/v1alpha1",
        "kind": "AIFeatureFlag",
        "metadata": {"name": format!("feature-{i:05}"), "namespace": "shop", "generation": 1},
        "spec": {
            "podSelector": {"matchLabels": {"app": format!("service-{}", i % 50)}},
            "match": {"models": [format!("model-{i:05}-*")], "operations": ["chat"]},
            "defaultVariant": "stable",
            "variants": [
                {"name": "stable", "model": "gpt-4o-mini"},
                {"name": "candidate", "model": "gpt-4.1-mini", "params": {"temperature": 0.2}},
            ],
            "rollout": {"stickyBy": ["header:x-user-id", "body:user"], "weights": {"stable": 90, "candidate": 10}},
            "targeting": [{"when": {"header": {"x-tenant": ["beta-corp"]}}, "variant": "candidate"}],
            "fallback": {"chain": ["stable"], "retries": 1, "perAttemptTimeout": "30s"},
        },
    }))
    .expect("flag deserializes")
}

fn config_of(count: usize) -> SidecarConfig {
    let flags: Vec<AIFeatureFlag> = (0..count).map(flag).collect();
    let inputs: Vec<FlagInput> = flags.iter().map(FlagInput::from_resource).collect();
    let compilation = compile(Some("shop"), &inputs, None);
    assert_eq!(compilation.config.flags.len(), count, "every flag compiles");
    compilation.config
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = GzEncoder::new(Vec::new(), Compression::fast());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

#[test]
fn a_small_config_is_stored_as_compact_json() {
    let config = config_of(3);
    let encoded = encode_config(&config);
    let EncodedConfig::Json(json) = &encoded else {
        panic!("3 flags stay plain JSON: {encoded:?}");
    };
    assert!(!json.contains('\n'), "compact");
    assert_eq!(json, &config.to_compact_json());
    assert_eq!(encoded.format(), "json");
    assert_eq!(decode_config(json.as_bytes()), Ok(config));
}

#[test]
fn a_thousand_flags_are_gzipped_far_under_the_limit() {
    let config = config_of(1_000);
    let encoded = encode_config(&config);
    let EncodedConfig::Gzip { bytes, json_len } = &encoded else {
        panic!("1,000 flags are compressed");
    };
    assert!(*json_len > GZIP_ABOVE_BYTES);
    assert_eq!(*json_len, config.to_compact_json().len());
    assert_eq!(bytes[..2], [0x1f, 0x8b]);
    assert!(encoded.fits());
    // The same document gives the same bytes: an unchanged config is a no-op write.
    assert_eq!(encode_config(&config), encoded);
    assert_eq!(decode_config(bytes), Ok(config));
}

#[test]
fn five_thousand_flags_fit_compressed() {
    let config = config_of(5_000);
    let encoded = encode_config(&config);
    // Uncompressed they are past the API server's limit; compressed, well under it.
    assert!(
        encoded.json_len() > MAX_CONFIG_MAP_BYTES,
        "{}",
        encoded.json_len()
    );
    assert!(
        encoded.stored_len() < MAX_CONFIG_MAP_BYTES / 2,
        "{}",
        encoded.stored_len()
    );
    assert!(encoded.fits());
    let EncodedConfig::Gzip { bytes, .. } = &encoded else {
        panic!("compressed");
    };
    assert_eq!(decode_config(bytes), Ok(config));
}

#[test]
fn pretty_json_from_older_operators_still_reads() {
    let config = config_of(2);
    assert_eq!(decode_config(config.to_json().as_bytes()), Ok(config));
}

#[test]
fn a_gzipped_document_gets_the_same_checks_as_plain_json() {
    let unknown = gzip(br#"{"schema": "aiflags.dev/config/v9", "revision": "x", "flags": []}"#);
    assert_eq!(
        decode_config(&unknown),
        Err(ConfigError::UnknownSchema {
            found: "aiflags.dev/config/v9".into()
        })
    );
    assert!(matches!(
        decode_config(&gzip(b"not json")),
        Err(ConfigError::Json(_))
    ));
}

#[test]
fn broken_gzip_is_a_clear_error() {
    let whole = gzip(config_of(2).to_compact_json().as_bytes());
    let cut = &whole[..whole.len() / 2];
    let error = decode_config(cut).expect_err("truncated");
    assert!(matches!(error, ConfigError::Gzip(_)), "{error:?}");
    assert!(
        error
            .to_string()
            .starts_with("config.json.gz is not a readable gzip stream")
    );
    assert!(matches!(
        decode_config(&[0x1f, 0x8b, 0, 0]),
        Err(ConfigError::Gzip(_))
    ));
}

#[test]
fn a_gzip_bomb_is_refused_before_it_is_parsed() {
    let bomb = gzip(&vec![b' '; MAX_DECODED_BYTES + 1]);
    // Small enough to sit in a ConfigMap.
    assert!(
        bomb.len() < MAX_CONFIG_MAP_BYTES,
        "compresses to {}",
        bomb.len()
    );
    assert_eq!(
        decode_config(&bomb),
        Err(ConfigError::TooLarge {
            limit: MAX_DECODED_BYTES
        })
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(12))]

    /// Any document round-trips, in plain JSON exactly while its compact
    /// form is at most the threshold.
    #[test]
    fn every_document_round_trips_in_the_form_its_size_calls_for(count in 0usize..400) {
        let config = config_of(count);
        let encoded = encode_config(&config);
        let compact = config.to_compact_json().len();
        prop_assert_eq!(matches!(encoded, EncodedConfig::Json(_)), compact <= GZIP_ABOVE_BYTES);
        prop_assert_eq!(encoded.json_len(), compact);
        let stored = match &encoded {
            EncodedConfig::Json(json) => json.as_bytes().to_vec(),
            EncodedConfig::Gzip { bytes, .. } => bytes.clone(),
        };
        prop_assert_eq!(stored.len(), encoded.stored_len());
        prop_assert_eq!(decode_config(&stored), Ok(config));
    }
}
