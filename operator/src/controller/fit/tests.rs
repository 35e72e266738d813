use std::collections::BTreeSet;

use aiflags_api::{CompiledFallback, CompiledVariant, TOTAL_BP};
use proptest::prelude::*;
use serde_json::json;

use super::*;
use crate::controller::fixtures::noise;

/// A compiled flag whose size grows with `padding` (bytes of noise in params).
fn flag(key: &str, generation: i64, padding: usize) -> CompiledFlag {
    let seed = key.bytes().fold(generation as u64, |h, b| {
        h.wrapping_mul(31).wrapping_add(u64::from(b))
    });
    CompiledFlag {
        key: key.into(),
        namespace: Some("shop".into()),
        generation,
        enabled: true,
        pod_selector: None,
        models: vec![format!("{key}-*")],
        operations: Vec::new(),
        default_variant: "stable".into(),
        variants: vec![CompiledVariant {
            name: "stable".into(),
            model: "gpt-4o-mini".into(),
            params: Some(json!({"metadata": {"note": noise(seed, padding)}})),
            provider: None,
            pricing: None,
        }],
        sticky_by: Vec::new(),
        weights: vec![TOTAL_BP],
        targeting: Vec::new(),
        fallback: CompiledFallback::default(),
    }
}

fn config<F: Into<std::sync::Arc<CompiledFlag>>>(flags: Vec<F>) -> SidecarConfig {
    SidecarConfig::new(
        Some("shop".into()),
        flags.into_iter().map(Into::into).collect(),
    )
}

fn keys(config: &SidecarConfig) -> Vec<&str> {
    config.flags.iter().map(|f| f.key.as_str()).collect()
}

fn refused(fitted: &Fitted) -> Vec<(&str, Option<i64>)> {
    fitted
        .refused
        .iter()
        .map(|(k, r)| (k.as_str(), r.serving_generation))
        .collect()
}

/// Room for the empty document plus `flags` flags of `padding` bytes.
fn room_for(flags: usize, padding: usize) -> Limits {
    let one = encode_config(&config(vec![flag("f0", 1, padding)])).stored_len();
    let empty = encode_config(&config(Vec::<CompiledFlag>::new())).stored_len();
    Limits {
        stored: empty + flags * (one - empty) + (one - empty) / 2,
        json: usize::MAX,
    }
}

#[test]
fn a_config_that_fits_is_written_whole() {
    let compiled = config((0..3).map(|i| flag(&format!("f{i}"), 1, 100)).collect());
    let fitted = fit_config(&compiled, None, &[], Limits::default());
    assert_eq!(fitted.config, compiled);
    assert_eq!(fitted.encoded, encode_config(&compiled));
    assert!(fitted.refused.is_empty());
}

#[test]
fn new_flags_are_admitted_oldest_first() {
    let compiled = config((0..10).map(|i| flag(&format!("f{i}"), 1, 1_000)).collect());
    // Created in reverse order of their names.
    let age_order: Vec<String> = (0..10).rev().map(|i| format!("f{i}")).collect();
    let age_order: Vec<&str> = age_order.iter().map(String::as_str).collect();
    let limits = room_for(6, 1_000);
    let fitted = fit_config(&compiled, None, &age_order, limits);
    assert_eq!(keys(&fitted.config), ["f4", "f5", "f6", "f7", "f8", "f9"]);
    assert_eq!(
        refused(&fitted),
        [("f0", None), ("f1", None), ("f2", None), ("f3", None)]
    );
    assert!(limits.admit(&fitted.encoded));
    assert_eq!(fitted.encoded, encode_config(&fitted.config));
    let refusal = &fitted.refused["f0"];
    assert_eq!(
        refusal.full_stored_len,
        encode_config(&compiled).stored_len()
    );
    assert_eq!((refusal.full_format, refusal.limits), ("json", limits));
}

#[test]
fn what_serves_keeps_serving_when_a_newcomer_does_not_fit() {
    let served = config((0..5).map(|i| flag(&format!("f{i}"), 1, 1_000)).collect());
    let mut flags = served.flags.clone();
    flags.push(flag("new", 1, 1_000).into());
    // The newcomer is even the oldest: being served already is what counts.
    let fitted = fit_config(
        &config(flags),
        Some(&served),
        &["new", "f0", "f1", "f2", "f3", "f4"],
        room_for(5, 1_000),
    );
    assert_eq!(fitted.config, served);
    assert_eq!(refused(&fitted), [("new", None)]);
}

#[test]
fn an_update_that_does_not_fit_leaves_its_served_version_serving() {
    let served = config(vec![flag("a", 1, 1_000), flag("b", 1, 1_000)]);
    let compiled = config(vec![flag("a", 2, 3_000), flag("b", 2, 500)]);
    let fitted = fit_config(&compiled, Some(&served), &["a", "b"], room_for(2, 1_000));
    // b's update shrinks it and goes in; a's grows past the limit and waits.
    assert_eq!(
        fitted.config,
        config(vec![flag("a", 1, 1_000), flag("b", 2, 500)])
    );
    assert_eq!(refused(&fitted), [("a", Some(1))]);
}

#[test]
fn when_even_what_serves_no_longer_fits_the_newest_flags_leave() {
    let served = config((0..5).map(|i| flag(&format!("f{i}"), 1, 1_000)).collect());
    let fitted = fit_config(
        &served,
        Some(&served),
        &["f4", "f3", "f2", "f1", "f0"],
        room_for(3, 1_000),
    );
    assert_eq!(keys(&fitted.config), ["f2", "f3", "f4"]);
    assert_eq!(refused(&fitted), [("f0", None), ("f1", None)]);
}

#[test]
fn flags_the_age_order_does_not_name_come_last_by_key() {
    let compiled = config((0..4).map(|i| flag(&format!("f{i}"), 1, 1_000)).collect());
    let fitted = fit_config(&compiled, None, &["f3"], room_for(2, 1_000));
    assert_eq!(keys(&fitted.config), ["f0", "f3"]);
}

#[test]
fn the_json_limit_counts_too() {
    let compiled = config((0..4).map(|i| flag(&format!("f{i}"), 1, 1_000)).collect());
    let json = encode_config(&config(compiled.flags[..2].to_vec())).json_len();
    let limits = Limits {
        stored: usize::MAX,
        json,
    };
    let fitted = fit_config(&compiled, None, &[], limits);
    assert_eq!(keys(&fitted.config), ["f0", "f1"]);
}

/// A namespace of `count` flags, each with `padding` bytes of noise.
fn namespace_of(count: usize, padding: usize) -> (SidecarConfig, Vec<String>) {
    let names: Vec<String> = (0..count).map(|i| format!("feature-{i:05}")).collect();
    let flags = names.iter().map(|n| flag(n, 1, padding)).collect();
    (config(flags), names)
}

#[test]
fn five_thousand_flags_fit_when_they_compress_like_flags() {
    let (compiled, _) = namespace_of(5_000, 0);
    let fitted = fit_config(&compiled, None, &[], Limits::default());
    assert!(fitted.refused.is_empty());
    assert_eq!(fitted.encoded.format(), "gzip");
    assert!(fitted.encoded.json_len() > MAX_CONFIG_MAP_BYTES);
}

#[test]
fn five_thousand_flags_that_cannot_fit_hold_back_the_newest() {
    // 600 bytes of noise each: about 1.5 MiB even compressed.
    let (compiled, names) = namespace_of(5_000, 600);
    let age_order: Vec<&str> = names.iter().map(String::as_str).collect();
    let fitted = fit_config(&compiled, None, &age_order, Limits::default());
    let admitted = fitted.config.flags.len();
    assert!((1_000..5_000).contains(&admitted), "{admitted}");
    assert!(fitted.encoded.stored_len() <= MAX_CONFIG_MAP_BYTES);
    assert_eq!(fitted.encoded.format(), "gzip");
    // Exactly the oldest are admitted, and one more would not fit.
    assert_eq!(keys(&fitted.config), age_order[..admitted]);
    let held: Vec<&str> = fitted.refused.keys().map(String::as_str).collect();
    assert_eq!(held, age_order[admitted..]);
    let one_more = config(compiled.flags[..=admitted].to_vec());
    assert!(encode_config(&one_more).stored_len() > MAX_CONFIG_MAP_BYTES);
}

proptest! {
    #[test]
    fn bisection_finds_the_largest_fitting_prefix(len in 1usize..300, fit in 0usize..300) {
        let fit = fit.min(len - 1);
        let (n, found) = largest_fitting(len, 0, |n| (n <= fit).then_some(n));
        prop_assert_eq!((n, found), (fit, fit));
    }

    /// Whatever is served and compiled, and whatever the limit: the result
    /// fits, holds only versions compiled or served, keeps what serves when
    /// that fits, and accounts for every compiled flag.
    #[test]
    fn fitting_keeps_its_promises(
        flags in prop::collection::vec((0usize..3_000, prop::option::of(0usize..3_000)), 1..12),
        room in 0usize..20,
    ) {
        let names: Vec<String> = (0..flags.len()).map(|i| format!("f{i:02}")).collect();
        let compiled = config(
            names.iter().zip(&flags).map(|(n, (size, _))| flag(n, 2, *size)).collect(),
        );
        let served = config(
            names
                .iter()
                .zip(&flags)
                .filter_map(|(n, (_, served))| served.map(|size| flag(n, 1, size)))
                .collect(),
        );
        let limits = room_for(room, 1_500);
        let age_order: Vec<&str> = names.iter().rev().map(String::as_str).collect();
        let fitted = fit_config(&compiled, Some(&served), &age_order, limits);

        prop_assert!(limits.admit(&fitted.encoded));
        prop_assert_eq!(&fitted.encoded, &encode_config(&fitted.config));
        for f in &fitted.config.flags {
            let refusal = fitted.refused.get(&f.key);
            let expected = match refusal {
                None => compiled.flag(&f.key),
                Some(r) => {
                    prop_assert_eq!(r.serving_generation, Some(f.generation));
                    served.flag(&f.key)
                }
            };
            prop_assert_eq!(Some(&**f), expected);
        }
        let present: BTreeSet<&str> = keys(&fitted.config).into_iter().collect();
        for key in keys(&compiled) {
            prop_assert!(present.contains(key) || fitted.refused.contains_key(key), "{key}");
        }
        if limits.admit(&encode_config(&served)) {
            for key in keys(&served) {
                prop_assert!(present.contains(key), "served {key} was dropped");
            }
        }
        prop_assert_eq!(fit_config(&compiled, Some(&served), &age_order, limits), fitted);
    }
}
