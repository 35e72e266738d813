use aiflags_api::{CompiledFallback, CompiledVariant, FailureClass};
use http::HeaderValue;
use proptest::prelude::*;

use super::*;

fn flag(variants: &[&str], chain: &[&str], retries: u32) -> CompiledFlag {
    CompiledFlag {
        key: "f".into(),
        namespace: None,
        generation: 1,
        enabled: true,
        pod_selector: None,
        models: Vec::new(),
        operations: Vec::new(),
        default_variant: variants.first().map(|v| v.to_string()).unwrap_or_default(),
        variants: variants
            .iter()
            .map(|name| CompiledVariant {
                name: name.to_string(),
                model: format!("model-{name}"),
                params: None,
                provider: None,
                pricing: None,
            })
            .collect(),
        sticky_by: Vec::new(),
        weights: variants.iter().map(|_| 0).collect(),
        targeting: Vec::new(),
        fallback: CompiledFallback {
            chain: chain.iter().map(|c| c.to_string()).collect(),
            retries,
            ..CompiledFallback::default()
        },
    }
}

fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in pairs {
        map.insert(*name, HeaderValue::from_str(value).unwrap());
    }
    map
}

#[test]
fn plan_tries_the_chosen_variant_then_the_chain() {
    let f = flag(&["stable", "candidate", "backup"], &["stable", "backup"], 1);
    assert_eq!(attempt_plan(&f, 1), vec![1, 1, 0, 0, 2, 2]);
    // The chosen variant is not tried again when the chain names it.
    assert_eq!(attempt_plan(&f, 0), vec![0, 0, 2, 2]);
}

#[test]
fn plan_skips_duplicates_and_unknown_names() {
    let f = flag(&["a", "b"], &["b", "b", "missing", "a"], 0);
    assert_eq!(attempt_plan(&f, 0), vec![0, 1]);
    assert_eq!(attempt_plan(&f, 7), vec![1, 0]);
    assert_eq!(attempt_plan(&flag(&["a"], &[], 0), 0), vec![0]);
}

#[test]
fn plan_bounds_retries() {
    let f = flag(&["a"], &[], u32::MAX);
    assert_eq!(attempt_plan(&f, 0).len(), MAX_RETRIES as usize + 1);
}

#[test]
fn every_error_status_is_a_failure_for_the_policy_to_judge() {
    assert_eq!(classify_status(200), None);
    assert_eq!(classify_status(304), None);
    assert_eq!(classify_status(400), Some(Failure::Status(400)));
    assert_eq!(classify_status(429), Some(Failure::Status(429)));
    assert_eq!(classify_status(503), Some(Failure::Status(503)));
    let policy = CompiledFallback {
        on: vec![FailureClass::Status(429), FailureClass::StatusClass(5)],
        ..CompiledFallback::default()
    };
    let retried = |s| classify_status(s).is_some_and(|f| policy.applies_to(f));
    assert!(retried(429) && retried(500) && retried(504));
    assert!(!retried(400) && !retried(404) && !retried(200));
}

#[test]
fn backoff_doubles_with_equal_jitter_up_to_the_cap() {
    let ms = Duration::from_millis;
    assert_eq!(backoff(0, 0), ms(50));
    assert_eq!(backoff(0, u32::MAX), ms(100) - Duration::from_nanos(1));
    assert_eq!(backoff(1, 0), ms(100));
    assert_eq!(backoff(2, 0), ms(200));
    assert_eq!(backoff(4, 0), ms(800));
    assert_eq!(backoff(5, 0), ms(1000));
    assert_eq!(backoff(40, 0), ms(1000));
    assert!(backoff(u32::MAX, u32::MAX) < ms(2000));
}

#[test]
fn retry_after_forms() {
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(784_111_777);
    let parse = |pairs: &[(&'static str, &str)]| parse_retry_after(&headers(pairs), now);
    assert_eq!(parse(&[]), None);
    assert_eq!(parse(&[("retry-after", "7")]), Some(Duration::from_secs(7)));
    assert_eq!(
        parse(&[("retry-after", " 1.5 ")]),
        Some(Duration::from_millis(1500))
    );
    assert_eq!(
        parse(&[("retry-after-ms", "250"), ("retry-after", "7")]),
        Some(Duration::from_millis(250))
    );
    assert_eq!(
        parse(&[("retry-after-ms", "soon"), ("retry-after", "7")]),
        Some(Duration::from_secs(7))
    );
    // RFC 9110's example date is `now`; ten seconds later, and one in the past.
    assert_eq!(
        parse(&[("retry-after", "Sun, 06 Nov 1994 08:49:47 GMT")]),
        Some(Duration::from_secs(10))
    );
    assert_eq!(
        parse(&[("retry-after", "Sun, 06 Nov 1994 08:49:27 GMT")]),
        Some(Duration::ZERO)
    );
    for garbage in ["-1", "soon", "NaN", "inf", "", "1e400"] {
        assert_eq!(parse(&[("retry-after", garbage)]), None, "{garbage:?}");
    }
    assert_eq!(
        parse(&[("retry-after", "99999999999999999999999")]),
        Some(Duration::from_secs(3600))
    );
}

#[test]
fn next_delay_gives_up_when_the_wait_does_not_fit() {
    let s = Duration::from_secs;
    assert_eq!(next_delay(0, Some(s(3)), s(10), 0), Some(s(3)));
    assert_eq!(next_delay(0, Some(s(10)), s(10), 0), None);
    assert_eq!(next_delay(0, Some(s(30)), s(10), 0), None);
    assert_eq!(
        next_delay(1, None, s(10), 0),
        Some(Duration::from_millis(100))
    );
    assert_eq!(next_delay(1, None, Duration::from_millis(100), 0), None);
    assert_eq!(next_delay(0, None, Duration::ZERO, 0), None);
}

proptest! {
    #[test]
    fn backoff_stays_within_its_band(n in 0u32..64, random in any::<u32>()) {
        let ceiling = Duration::from_millis(100 * (1u64 << n.min(5))).min(Duration::from_secs(2));
        let delay = backoff(n, random);
        prop_assert!(delay >= ceiling / 2 && delay < ceiling);
    }

    #[test]
    fn plans_list_each_target_in_one_run(chosen in 0usize..5, chain in prop::collection::vec(0usize..6, 0..6), retries in 0u32..4) {
        let names = ["a", "b", "c", "d", "e", "zz"];
        let chain: Vec<&str> = chain.iter().map(|i| names[*i]).collect();
        let f = flag(&names[..5], &chain, retries);
        let plan = attempt_plan(&f, chosen);
        prop_assert_eq!(plan.first(), Some(&chosen));
        let runs: Vec<&[usize]> = plan.chunk_by(|a, b| a == b).collect();
        prop_assert!(runs.iter().all(|run| run.len() == retries as usize + 1));
        let mut targets: Vec<usize> = runs.iter().map(|run| run[0]).collect();
        targets.sort_unstable();
        targets.dedup();
        prop_assert_eq!(targets.len(), runs.len());
    }

    #[test]
    fn retry_after_never_panics(value in "\\PC{0,40}", secs in any::<u64>()) {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(secs % 4_000_000_000);
        if let Ok(h) = HeaderValue::from_str(&value) {
            let mut map = HeaderMap::new();
            map.insert("retry-after", h.clone());
            map.insert("retry-after-ms", h);
            let parsed = parse_retry_after(&map, now);
            prop_assert!(parsed.is_none_or(|d| d <= Duration::from_secs(3600)));
        }
    }
}
