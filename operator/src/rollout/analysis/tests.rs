//! The judge: thresholds, minimum requests, relative margins.

use std::time::Duration;

use aiflags_api::{Analysis, CheckResult, StableMargins, VariantMeasurements};

use super::{Arm, Request, judge};

fn request(analysis: Analysis) -> Request {
    Request {
        namespace: "shop".into(),
        flag: "summarizer".into(),
        canary: Arm {
            variant: "candidate".into(),
            model: "gpt-4.1-mini".into(),
        },
        stable: Arm {
            variant: "stable".into(),
            model: "gpt-4o-mini".into(),
        },
        window: Duration::from_secs(90),
        min_requests: analysis.min_requests.unwrap_or(50),
        analysis,
    }
}

fn thresholds() -> Analysis {
    Analysis {
        interval: None,
        failure_limit: None,
        min_requests: Some(50),
        max_error_rate: Some(0.05),
        max_p95_latency_seconds: Some(8.0),
        max_fallback_rate: Some(0.1),
        max_empty_rate: Some(0.02),
        max_increase_over_stable: None,
    }
}

fn healthy() -> VariantMeasurements {
    VariantMeasurements {
        requests: 400.0,
        error_rate: Some(0.01),
        p95_latency_seconds: Some(1.5),
        fallback_rate: Some(0.0),
        empty_rate: Some(0.0),
    }
}

#[test]
fn within_every_threshold_passes_and_says_what_it_measured() {
    let verdict = judge(&request(thresholds()), &healthy(), None);
    assert_eq!(verdict.result, CheckResult::Pass);
    assert_eq!(
        verdict.message,
        "error rate 1.0%, p95 latency 1.50s, fallback rate 0.0%, empty-or-filtered rate 0.0% over 400 canary requests in the last 1m30s"
    );
    assert_eq!(verdict.canary, Some(healthy()));
}

#[test]
fn each_threshold_fails_on_its_own() {
    type Edit = fn(&mut VariantMeasurements);
    let cases: [(&str, Edit, &str); 4] = [
        (
            "errors",
            |m| m.error_rate = Some(0.2),
            "error rate 20.0% > maxErrorRate 5.0%",
        ),
        (
            "latency",
            |m| m.p95_latency_seconds = Some(9.0),
            "p95 latency 9.00s > maxP95LatencySeconds 8.00s",
        ),
        (
            "fallbacks",
            |m| m.fallback_rate = Some(0.5),
            "fallback rate 50.0% > maxFallbackRate 10.0%",
        ),
        (
            "empty",
            |m| m.empty_rate = Some(0.03),
            "empty-or-filtered rate 3.0% > maxEmptyRate 2.0%",
        ),
    ];
    for (name, edit, expected) in cases {
        let mut canary = healthy();
        edit(&mut canary);
        let verdict = judge(&request(thresholds()), &canary, None);
        assert_eq!(verdict.result, CheckResult::Fail, "{name}");
        assert!(
            verdict.message.starts_with(expected),
            "{name}: {}",
            verdict.message
        );
    }
    // At the threshold is within it.
    let mut canary = healthy();
    canary.error_rate = Some(0.05);
    assert_eq!(
        judge(&request(thresholds()), &canary, None).result,
        CheckResult::Pass
    );
}

#[test]
fn too_few_requests_is_inconclusive_even_when_failing() {
    let canary = VariantMeasurements {
        requests: 49.0,
        error_rate: Some(1.0),
        ..healthy()
    };
    let verdict = judge(&request(thresholds()), &canary, None);
    assert_eq!(verdict.result, CheckResult::Inconclusive);
    assert_eq!(
        verdict.message,
        "the canary served 49 requests in the last 1m30s, fewer than minRequests 50"
    );
}

#[test]
fn a_value_prometheus_could_not_give_is_inconclusive_but_a_failure_still_fails() {
    let canary = VariantMeasurements {
        p95_latency_seconds: None,
        ..healthy()
    };
    let verdict = judge(&request(thresholds()), &canary, None);
    assert_eq!(verdict.result, CheckResult::Inconclusive);
    assert!(
        verdict.message.starts_with("no p95 latency for the canary"),
        "{}",
        verdict.message
    );
    let failing = VariantMeasurements {
        p95_latency_seconds: None,
        error_rate: Some(0.9),
        ..healthy()
    };
    assert_eq!(
        judge(&request(thresholds()), &failing, None).result,
        CheckResult::Fail
    );
}

#[test]
fn relative_thresholds_compare_with_the_stable_variant() {
    let analysis = Analysis {
        max_increase_over_stable: Some(StableMargins {
            error_rate: Some(0.02),
            p95_latency_seconds: Some(1.0),
            ..Default::default()
        }),
        ..thresholds()
    };
    let stable = VariantMeasurements {
        requests: 1000.0,
        error_rate: Some(0.001),
        p95_latency_seconds: Some(1.0),
        ..Default::default()
    };
    let worse = VariantMeasurements {
        error_rate: Some(0.04),
        p95_latency_seconds: Some(2.2),
        ..healthy()
    };
    let verdict = judge(&request(analysis.clone()), &worse, Some(&stable));
    assert_eq!(verdict.result, CheckResult::Fail);
    assert!(verdict.message.starts_with(
        "error rate 4.0% > the stable variant's 0.1% + 2.0%, p95 latency 2.20s > the stable variant's 1.00s + 1.00s"
    ), "{}", verdict.message);
    assert_eq!(verdict.stable, Some(stable.clone()));

    let close = VariantMeasurements {
        error_rate: Some(0.02),
        p95_latency_seconds: Some(1.9),
        ..healthy()
    };
    assert_eq!(
        judge(&request(analysis.clone()), &close, Some(&stable)).result,
        CheckResult::Pass
    );

    // The stable variant starved (the canary at 100%): absolute thresholds decide.
    let starved = VariantMeasurements {
        requests: 3.0,
        ..stable
    };
    let verdict = judge(&request(analysis), &worse, Some(&starved));
    assert_eq!(verdict.result, CheckResult::Pass);
    assert!(
        verdict
            .message
            .contains("no comparison with the stable variant: it served 3 requests"),
        "{}",
        verdict.message
    );
}

#[test]
fn requests_name_the_variants_and_their_models() {
    use crate::controller::fixtures::FlagBuilder;
    let mut flag = aiflags_api::AIFeatureFlag::test();
    let rollout = flag.spec.rollout.get_or_insert_with(Default::default);
    rollout.weights = None;
    rollout.canary = Some("candidate".into());
    rollout.analysis = Some(Analysis {
        interval: Some("30s".into()),
        min_requests: None,
        ..thresholds()
    });
    let request = Request::for_flag(&flag).expect("a request");
    assert_eq!(
        (request.namespace.as_str(), request.flag.as_str()),
        ("shop", "summarizer")
    );
    assert_eq!(
        request.canary,
        Arm {
            variant: "candidate".into(),
            model: "gpt-4.1-mini".into()
        }
    );
    assert_eq!(
        request.stable,
        Arm {
            variant: "stable".into(),
            model: "gpt-4o-mini".into()
        }
    );
    assert_eq!(
        (request.window, request.min_requests),
        (Duration::from_secs(30), 50)
    );
}
