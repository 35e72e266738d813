//! What `compile` produces: basis points, resolved fallbacks, the
//! last-valid-version rule, and the config document's integrity checks.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)] // test helpers may fail loudly

use std::collections::BTreeMap;

use aiflags_api::{
    AIFeatureFlag, AIFeatureFlagStatus, CONFIG_SCHEMA, ConfigError, Failure, FailureClass,
    FlagInput, RolloutStatus, SidecarConfig, compile, compile_flag, rollout_identity,
};
use proptest::prelude::*;
use serde_json::{Value, json};

fn flag(name: &str, generation: i64, spec: Value) -> AIFeatureFlag {
    serde_json::from_value(json!({
        "apiVersion": "aiflags.dev/v1alpha1",
        "kind": "AIFeatureFlag",
        "metadata": {"name": name, "namespace": "shop", "generation": generation},
        "spec": spec,
    }))
    .expect("flag deserializes")
}

fn split_spec(stable: f64, candidate: f64) -> Value {
    json!({
        "defaultVariant": "stable",
        "variants": [{"name": "stable", "model": "gpt-4o-mini"}, {"name": "candidate", "model": "gpt-4.1-mini"}],
        "rollout": {"weights": {"stable": stable, "candidate": candidate}},
    })
}

/// One flag compiled on its own into namespace `shop`, with no previous config.
fn compile_alone(f: &AIFeatureFlag) -> aiflags_api::Compilation {
    compile(Some("shop"), &[FlagInput::from_resource(f)], None)
}

fn compile_one(f: &AIFeatureFlag) -> aiflags_api::CompiledFlag {
    compile_flag(&FlagInput::from_resource(f)).expect("compiles")
}

#[test]
fn weights_become_basis_points_in_variant_order() {
    let compiled = compile_one(&flag("s", 1, split_spec(66.67, 33.33)));
    assert_eq!(compiled.weights, vec![6667, 3333]);
    assert_eq!(compiled.key, "s");
    assert_eq!(compiled.namespace.as_deref(), Some("shop"));
}

#[test]
fn no_rollout_sends_everything_to_the_default() {
    let mut spec = split_spec(50.0, 50.0);
    spec.as_object_mut().map(|s| s.remove("rollout"));
    spec["defaultVariant"] = json!("candidate");
    assert_eq!(compile_one(&flag("s", 1, spec)).weights, vec![0, 10_000]);
}

#[test]
fn disabled_flag_keeps_weights_but_serves_only_the_default() {
    let mut spec = split_spec(90.0, 10.0);
    spec["state"] = json!("Disabled");
    let compiled = compile_one(&flag("s", 1, spec));
    assert!(!compiled.enabled);
    assert_eq!(compiled.weights, vec![9000, 1000]);
    assert_eq!(compiled.effective_weights(), vec![10_000, 0]);
}

fn canary_spec() -> Value {
    json!({
        "defaultVariant": "stable",
        "variants": [
            {"name": "stable", "model": "gpt-4o"},
            {"name": "next", "model": "gpt-4.1"},
            {"name": "spare", "model": "gpt-4o-mini"}
        ],
        "rollout": {"canary": "next", "steps": [{"weight": 1.5, "pause": "10m"}, {"weight": 100}]},
    })
}

#[test]
fn canary_starts_at_the_first_step() {
    assert_eq!(
        compile_one(&flag("c", 1, canary_spec())).weights,
        vec![9850, 150, 0]
    );
}

/// `f` with the rollout engine's record at `weight` for the spec `hashed`.
fn at_canary_weight(mut f: AIFeatureFlag, weight: f64, hashed: &AIFeatureFlag) -> AIFeatureFlag {
    f.status = Some(AIFeatureFlagStatus {
        // What the reconciler reports is not the engine's position.
        current_weights: Some(BTreeMap::from([
            ("next".into(), 60.0),
            ("stable".into(), 40.0),
        ])),
        rollout: Some(RolloutStatus {
            spec_hash: rollout_identity(&hashed.spec),
            canary_weight: weight,
            ..Default::default()
        }),
        ..Default::default()
    });
    f
}

#[test]
fn canary_follows_the_rollout_engines_weight_in_status() {
    let f = flag("c", 1, canary_spec());
    let f = at_canary_weight(f.clone(), 25.0, &f);
    assert_eq!(compile_one(&f).weights, vec![7500, 2500, 0]);
}

#[test]
fn a_changed_spec_starts_the_canary_again_at_the_first_step() {
    let old = flag("c", 1, canary_spec());
    let mut spec = canary_spec();
    spec["variants"][1]["model"] = json!("gpt-5");
    let changed = at_canary_weight(flag("c", 2, spec), 25.0, &old);
    assert_eq!(compile_one(&changed).weights, vec![9850, 150, 0]);
}

#[test]
fn the_kill_switch_and_analysis_thresholds_are_not_part_of_the_rollouts_identity() {
    let base = flag("c", 1, canary_spec());
    let mut tuned = canary_spec();
    tuned["state"] = json!("Disabled");
    tuned["rollout"]["analysis"] = json!({"maxErrorRate": 0.2});
    assert_eq!(
        rollout_identity(&flag("c", 2, tuned).spec),
        rollout_identity(&base.spec)
    );
    let mut steps = canary_spec();
    steps["rollout"]["steps"][0]["weight"] = json!(2);
    assert_ne!(
        rollout_identity(&flag("c", 2, steps).spec),
        rollout_identity(&base.spec)
    );
}

#[test]
fn fallback_defaults_and_durations_resolve() {
    let mut spec = split_spec(90.0, 10.0);
    spec["fallback"] =
        json!({"chain": ["stable"], "perAttemptTimeout": "1m30s", "firstTokenTimeout": "500ms"});
    let fb = compile_one(&flag("s", 1, spec)).fallback;
    assert_eq!(fb.per_attempt_timeout_ms, 90_000);
    assert_eq!(fb.first_token_timeout_ms, Some(500));
    assert_eq!(fb.deadline_ms, 600_000);
    for (failure, applies) in [
        (Failure::Timeout, true),
        (Failure::Connect, true),
        (Failure::Status(429), true),
        (Failure::Status(503), true),
        (Failure::Status(400), false),
        (Failure::Status(404), false),
        // Judging answers is opt-in.
        (Failure::Empty, false),
        (Failure::ContentFilter, false),
    ] {
        assert_eq!(fb.applies_to(failure), applies, "{failure:?}");
    }
    assert!(!fb.judges_answers());

    let none = compile_one(&flag("s", 1, split_spec(90.0, 10.0))).fallback;
    assert!(
        !none.applies_to(Failure::Status(500)),
        "no fallback section, no retries"
    );
}

#[test]
fn bad_answers_fall_back_when_named() {
    let mut spec = split_spec(90.0, 10.0);
    spec["fallback"] = json!({"on": ["5xx", "empty", "contentFilter"], "chain": ["stable"]});
    let fb = compile_one(&flag("s", 1, spec)).fallback;
    assert_eq!(
        fb.on,
        vec![
            FailureClass::StatusClass(5),
            FailureClass::Empty,
            FailureClass::ContentFilter
        ]
    );
    assert!(fb.judges_answers());
    assert!(fb.applies_to(Failure::Empty) && fb.applies_to(Failure::ContentFilter));
    assert!(!fb.applies_to(Failure::Timeout));
    // The compiled config names them as the spec does.
    let json = serde_json::to_value(&fb).unwrap();
    assert_eq!(json["on"], json!(["5xx", "empty", "contentFilter"]));
    let back: aiflags_api::CompiledFallback = serde_json::from_value(json).unwrap();
    assert_eq!(back, fb);

    let mut spec = split_spec(90.0, 10.0);
    spec["fallback"] = json!({"on": ["contentFilter"], "chain": ["stable"]});
    let fb = compile_one(&flag("s", 1, spec)).fallback;
    assert!(fb.judges_answers() && !fb.applies_to(Failure::Empty));
}

#[test]
fn an_invalid_update_keeps_the_last_valid_version_serving() {
    let v1 = flag("s", 1, split_spec(90.0, 10.0));
    let other = flag("other", 4, split_spec(50.0, 50.0));
    let first = compile(
        Some("shop"),
        &[
            FlagInput::from_resource(&v1),
            FlagInput::from_resource(&other),
        ],
        None,
    );
    assert_eq!(first.config.flags.len(), 2);

    let v2 = flag("s", 2, split_spec(90.0, 5.0));
    let second = compile(
        Some("shop"),
        &[
            FlagInput::from_resource(&v2),
            FlagInput::from_resource(&other),
        ],
        Some(&first.config),
    );
    let outcome = &second.flags["s"];
    assert_eq!(
        outcome.errors[0].to_string(),
        "spec.rollout.weights: weights sum to 95, not 100"
    );
    assert_eq!(outcome.serving_generation, Some(1));
    assert_eq!(
        second.config.flag("s"),
        first.config.flag("s"),
        "generation 1 still serves"
    );
    assert_eq!(
        second.config.revision, first.config.revision,
        "nothing changed for the sidecars"
    );

    let never_valid = compile(Some("shop"), &[FlagInput::from_resource(&v2)], None);
    assert_eq!(never_valid.flags["s"].serving_generation, None);
    assert!(never_valid.config.flags.is_empty());
}

#[test]
fn revision_follows_content_only() {
    let a = compile_alone(&flag("s", 1, split_spec(90.0, 10.0)));
    let b = compile_alone(&flag("s", 1, split_spec(90.0, 10.0)));
    let c = compile_alone(&flag("s", 1, split_spec(80.0, 20.0)));
    assert_eq!(a.config.revision, b.config.revision);
    assert_ne!(a.config.revision, c.config.revision);
    assert_eq!(a.config.revision.len(), 16);
}

/// A tampered document whose revision matches its (tampered) content, so the
/// sidecar's own checks are what must catch it.
fn set_honest_revision(doc: &mut Value) {
    let flags: Vec<std::sync::Arc<aiflags_api::CompiledFlag>> =
        serde_json::from_value(doc["flags"].clone()).expect("flags");
    doc["revision"] = json!(aiflags_api::revision_of(&flags));
}

#[test]
fn sidecars_reject_documents_they_cannot_trust() {
    let good = compile_alone(&flag("s", 1, split_spec(90.0, 10.0))).config;
    assert_eq!(
        SidecarConfig::from_json(good.to_json().as_bytes()),
        Ok(good.clone())
    );

    let mut doc: Value = serde_json::from_str(&good.to_json()).expect("json");
    doc["schema"] = json!("aiflags.dev/config/v2");
    assert_eq!(
        SidecarConfig::from_json(doc.to_string().as_bytes()),
        Err(ConfigError::UnknownSchema {
            found: "aiflags.dev/config/v2".into()
        })
    );

    let mut doc: Value = serde_json::from_str(&good.to_json()).expect("json");
    doc["flags"][0]["weights"] = json!([9000, 2000]);
    assert!(matches!(
        SidecarConfig::from_json(doc.to_string().as_bytes()),
        Err(ConfigError::RevisionMismatch { .. })
    ));
    // With an honest revision the broken invariant itself is named.
    set_honest_revision(&mut doc);
    assert_eq!(
        SidecarConfig::from_json(doc.to_string().as_bytes()),
        Err(ConfigError::InvalidFlag {
            index: 0,
            key: "s".into(),
            message: "weights sum to 11000 basis points, not 10000".into()
        })
    );

    assert!(matches!(
        SidecarConfig::from_json(b"{not json"),
        Err(ConfigError::Json(_))
    ));
    assert_eq!(good.schema, CONFIG_SCHEMA);
}

#[test]
fn pods_keep_only_flags_whose_selector_matches() {
    let mut selected = split_spec(90.0, 10.0);
    selected["podSelector"] = json!({
        "matchLabels": {"app": "summarizer"},
        "matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["batch"]}]
    });
    let config = compile(
        Some("shop"),
        &[
            FlagInput::from_resource(&flag("scoped", 1, selected)),
            FlagInput::from_resource(&flag("everywhere", 1, split_spec(50.0, 50.0))),
        ],
        None,
    )
    .config;
    let labels = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    let keys =
        |c: SidecarConfig| -> Vec<String> { c.flags.into_iter().map(|f| f.key.clone()).collect() };
    assert_eq!(
        keys(config.for_pod(&labels(&[("app", "summarizer")]))),
        ["everywhere", "scoped"]
    );
    assert_eq!(
        keys(config.for_pod(&labels(&[("app", "summarizer"), ("tier", "batch")]))),
        ["everywhere"]
    );
    assert_eq!(
        keys(config.for_pod(&labels(&[("app", "checkout")]))),
        ["everywhere"]
    );
}

/// Weights with up to 2 decimals that sum to exactly 100.
fn weights_summing_to_100() -> impl Strategy<Value = Vec<u32>> {
    proptest::collection::vec(0u32..=10_000, 1..8).prop_map(|cuts| {
        let mut cuts = cuts;
        cuts.sort_unstable();
        let mut previous = 0;
        let mut parts: Vec<u32> = cuts
            .iter()
            .map(|c| {
                let part = c - previous;
                previous = *c;
                part
            })
            .collect();
        parts.push(10_000 - previous);
        parts
    })
}

proptest! {
    #[test]
    fn compiled_weights_always_sum_to_10000(parts in weights_summing_to_100()) {
        let variants: Vec<Value> = (0..parts.len())
            .map(|i| json!({"name": format!("v{i}"), "model": format!("m{i}")}))
            .collect();
        let weights: serde_json::Map<String, Value> = parts
            .iter()
            .enumerate()
            .map(|(i, bp)| (format!("v{i}"), json!(f64::from(*bp) / 100.0)))
            .collect();
        let f = flag("p", 1, json!({"defaultVariant": "v0", "variants": variants, "rollout": {"weights": weights}}));
        prop_assert!(f.validate_cel().is_ok(), "{:?}", f.validate_cel());
        let compiled = compile_one(&f);
        prop_assert_eq!(compiled.weights.iter().sum::<u32>(), 10_000);
        prop_assert_eq!(compiled.weights, parts);
    }

    #[test]
    fn config_round_trips(canary in 0u32..=100, stable_model in "[a-z0-9.-]{1,20}") {
        let mut spec = canary_spec();
        spec["variants"][0]["model"] = json!(stable_model);
        spec["rollout"]["steps"][0]["weight"] = json!(canary);
        let config = compile(Some("shop"), &[FlagInput::from_resource(&flag("c", 3, spec))], None).config;
        let parsed = SidecarConfig::from_json(config.to_json().as_bytes());
        prop_assert_eq!(parsed, Ok(config));
    }
}

#[test]
fn sidecars_recheck_what_becomes_a_deadline_or_a_file_path() {
    let good = compile_alone(&flag("s", 1, split_spec(90.0, 10.0))).config;
    let tamper = |edit: &dyn Fn(&mut Value)| -> Result<SidecarConfig, ConfigError> {
        let mut doc: Value = serde_json::from_str(&good.to_json()).expect("json");
        edit(&mut doc["flags"][0]);
        set_honest_revision(&mut doc);
        SidecarConfig::from_json(doc.to_string().as_bytes())
    };
    let huge = tamper(&|f| f["fallback"]["deadlineMs"] = json!(u64::MAX));
    assert!(
        matches!(&huge, Err(ConfigError::InvalidFlag { message, .. }) if message.starts_with("fallback.deadlineMs")),
        "{huge:?}"
    );
    let path = tamper(&|f| {
        f["variants"][1]["provider"] =
            json!({"baseUrl": "https://x.example", "credentialKey": "../../token"})
    });
    assert!(
        matches!(&path, Err(ConfigError::InvalidFlag { message, .. }) if message.contains("credentialKey")),
        "{path:?}"
    );
}
