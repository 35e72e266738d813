//! Every validation rule, checked both ways: as the CEL rule the apiserver runs
//! on `kubectl apply` (evaluated client-side against the generated CRD), and
//! in `compile`. Each case breaks one rule of an otherwise valid flag and names
//! the exact message each side must give.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)] // test helpers may fail loudly

use aiflags_api::{AIFeatureFlag, FlagInput, compile_flag};
use serde_json::{Value, json};

fn valid_flag() -> Value {
    json!({
        "apiVersion": "aiflags.dev/v1alpha1",
        "kind": "AIFeatureFlag",
        "metadata": {"name": "summarizer", "namespace": "shop", "generation": 1},
        "spec": {
            "defaultVariant": "stable",
            "variants": [
                {"name": "stable", "model": "gpt-4o-mini"},
                {"name": "candidate", "model": "gpt-4.1-mini", "params": {"temperature": 0.2}}
            ],
            "rollout": {"stickyBy": ["header:x-user-id"], "weights": {"stable": 90, "candidate": 10}},
            "targeting": [{"when": {"header": {"x-tenant": ["beta"]}}, "variant": "candidate"}],
            "fallback": {"chain": ["stable"], "retries": 1, "perAttemptTimeout": "30s", "deadline": "2m"}
        }
    })
}

/// Judges answers: empty ones are retried, filtered ones fall back.
fn judging_flag() -> Value {
    let mut v = valid_flag();
    v["spec"]["fallback"]["on"] = json!(["timeout", "5xx", "empty", "contentFilter"]);
    v
}

fn canary_flag() -> Value {
    let mut v = valid_flag();
    v["spec"]["rollout"] = json!({
        "canary": "candidate",
        "steps": [{"weight": 1, "pause": "10m"}, {"weight": 50, "pause": "1h"}, {"weight": 100}],
        "analysis": {"interval": "1m", "failureLimit": 2, "maxErrorRate": 0.05,
                     "maxEmptyRate": 0.02,
                     "maxIncreaseOverStable": {"errorRate": 0.01, "p95LatencySeconds": 2,
                                               "fallbackRate": 0.05, "emptyRate": 0.01}}
    });
    v
}

struct Case {
    name: &'static str,
    flag: Value,
    /// `(field path, message)` the CEL rules must report, or `None` for rules
    /// only the compiler can check.
    cel: Option<(&'static str, &'static str)>,
    /// Every `path: message` the compiler must report.
    compile: &'static [&'static str],
}

fn with(base: fn() -> Value, edit: impl FnOnce(&mut Value)) -> Value {
    let mut v = base();
    edit(&mut v["spec"]);
    v
}

fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "duplicate variant names",
            flag: with(valid_flag, |s| {
                let variants = s["variants"].as_array_mut().expect("variants");
                variants.push(json!({"name": "stable", "model": "gpt-4o"}));
            }),
            cel: Some(("spec.variants", "variant names must be unique")),
            compile: &[r#"spec.variants[2].name: duplicate name "stable""#],
        },
        Case {
            name: "defaultVariant names no variant",
            flag: with(valid_flag, |s| s["defaultVariant"] = json!("primary")),
            cel: Some((
                "spec.defaultVariant",
                "defaultVariant must name one of spec.variants",
            )),
            compile: &[
                r#"spec.defaultVariant: "primary" is not one of the variants (stable, candidate)"#,
            ],
        },
        Case {
            name: "weights and steps together",
            flag: with(valid_flag, |s| {
                s["rollout"]["canary"] = json!("candidate");
                s["rollout"]["steps"] = json!([{"weight": 10}]);
            }),
            cel: Some((
                "spec.rollout",
                "rollout.weights and rollout.steps are mutually exclusive: use fixed weights or a progressive canary",
            )),
            compile: &[
                "spec.rollout: weights and steps are mutually exclusive: use fixed weights or a progressive canary",
            ],
        },
        Case {
            name: "weight for an unknown variant",
            flag: with(valid_flag, |s| {
                s["rollout"]["weights"] = json!({"stable": 90, "ghost": 10})
            }),
            cel: Some((
                "spec.rollout.weights",
                "every key of rollout.weights must name one of spec.variants",
            )),
            compile: &[
                r#"spec.rollout.weights.ghost: unknown variant "ghost" (variants: stable, candidate)"#,
            ],
        },
        Case {
            name: "weights not summing to 100",
            flag: with(valid_flag, |s| {
                s["rollout"]["weights"]["candidate"] = json!(5)
            }),
            cel: Some(("spec.rollout.weights", "rollout.weights must sum to 100")),
            compile: &["spec.rollout.weights: weights sum to 95, not 100"],
        },
        Case {
            name: "weights with 3 decimals",
            flag: with(valid_flag, |s| {
                s["rollout"]["weights"] = json!({"stable": 89.995, "candidate": 10.005})
            }),
            cel: Some((
                "spec.rollout.weights",
                "rollout.weights allow at most 2 decimals",
            )),
            compile: &[
                "spec.rollout.weights.candidate: 10.005 has more than 2 decimals",
                "spec.rollout.weights.stable: 89.995 has more than 2 decimals",
            ],
        },
        Case {
            name: "steps without canary",
            flag: with(canary_flag, |s| {
                s["rollout"].as_object_mut().map(|r| r.remove("canary"));
            }),
            cel: Some((
                "spec.rollout.canary",
                "rollout.canary and rollout.steps go together",
            )),
            compile: &[
                "spec.rollout.canary: canary and steps go together: a progressive rollout needs both",
            ],
        },
        Case {
            name: "canary names no variant",
            flag: with(canary_flag, |s| s["rollout"]["canary"] = json!("ghost")),
            cel: Some((
                "spec.rollout.canary",
                "rollout.canary must name one of spec.variants",
            )),
            compile: &[
                r#"spec.rollout.canary: unknown variant "ghost" (variants: stable, candidate)"#,
            ],
        },
        Case {
            name: "canary is the default variant",
            flag: with(canary_flag, |s| s["rollout"]["canary"] = json!("stable")),
            cel: Some((
                "spec.rollout.canary",
                "rollout.canary must differ from defaultVariant, which receives the remaining traffic",
            )),
            compile: &[
                r#"spec.rollout.canary: "stable" is the defaultVariant, which receives the remaining traffic; name another variant"#,
            ],
        },
        Case {
            name: "decreasing steps",
            flag: with(canary_flag, |s| {
                s["rollout"]["steps"][2]["weight"] = json!(20)
            }),
            cel: Some((
                "spec.rollout.steps",
                "rollout.steps weights must be non-decreasing",
            )),
            compile: &[
                "spec.rollout.steps[2].weight: 20 is lower than the previous step's 50: steps must not decrease",
            ],
        },
        Case {
            name: "step above 100",
            flag: with(canary_flag, |s| {
                s["rollout"]["steps"][2]["weight"] = json!(150)
            }),
            cel: Some((
                "spec.rollout.steps[2].weight",
                "step weight must be between 0 and 100",
            )),
            compile: &["spec.rollout.steps[2].weight: 150 must be between 0 and 100"],
        },
        Case {
            name: "targeting names no variant",
            flag: with(valid_flag, |s| s["targeting"][0]["variant"] = json!("beta")),
            cel: Some((
                "spec.targeting",
                "every targeting[].variant must name one of spec.variants",
            )),
            compile: &[
                r#"spec.targeting[0].variant: unknown variant "beta" (variants: stable, candidate)"#,
            ],
        },
        Case {
            name: "fallback chain names no variant",
            flag: with(valid_flag, |s| {
                s["fallback"]["chain"] = json!(["stable", "backup"])
            }),
            cel: Some((
                "spec.fallback.chain",
                "every fallback.chain entry must name one of spec.variants",
            )),
            compile: &[
                r#"spec.fallback.chain[1]: unknown variant "backup" (variants: stable, candidate)"#,
            ],
        },
        Case {
            name: "step pause is no duration",
            flag: with(canary_flag, |s| {
                s["rollout"]["steps"][0]["pause"] = json!("ten minutes")
            }),
            cel: Some((
                "spec.rollout.steps[0].pause",
                "must be a duration such as 30s, 10m or 1h30m",
            )),
            compile: &[
                r#"spec.rollout.steps[0].pause: "ten minutes" is not a duration such as 30s, 10m or 1h30m"#,
            ],
        },
        Case {
            name: "analysis interval is no duration",
            flag: with(canary_flag, |s| {
                s["rollout"]["analysis"]["interval"] = json!("1 min")
            }),
            cel: Some((
                "spec.rollout.analysis.interval",
                "must be a duration such as 30s, 10m or 1h30m",
            )),
            compile: &[
                r#"spec.rollout.analysis.interval: "1 min" is not a duration such as 30s, 10m or 1h30m"#,
            ],
        },
        Case {
            name: "per-attempt timeout is no duration",
            flag: with(valid_flag, |s| {
                s["fallback"]["perAttemptTimeout"] = json!("30")
            }),
            cel: Some((
                "spec.fallback.perAttemptTimeout",
                "must be a duration such as 30s, 10m or 1h30m",
            )),
            compile: &[
                r#"spec.fallback.perAttemptTimeout: "30" is not a duration such as 30s, 10m or 1h30m"#,
            ],
        },
        Case {
            name: "first-token timeout is no duration",
            flag: with(valid_flag, |s| {
                s["fallback"]["firstTokenTimeout"] = json!("5 s")
            }),
            cel: Some((
                "spec.fallback.firstTokenTimeout",
                "must be a duration such as 30s, 10m or 1h30m",
            )),
            compile: &[
                r#"spec.fallback.firstTokenTimeout: "5 s" is not a duration such as 30s, 10m or 1h30m"#,
            ],
        },
        Case {
            name: "deadline is no duration",
            flag: with(valid_flag, |s| s["fallback"]["deadline"] = json!("forever")),
            cel: Some((
                "spec.fallback.deadline",
                "must be a duration such as 30s, 10m or 1h30m",
            )),
            compile: &[
                r#"spec.fallback.deadline: "forever" is not a duration such as 30s, 10m or 1h30m"#,
            ],
        },
        Case {
            name: "zero timeout",
            flag: with(valid_flag, |s| {
                s["fallback"]["perAttemptTimeout"] = json!("0s")
            }),
            cel: Some(("spec.fallback.perAttemptTimeout", "must be longer than 0")),
            compile: &["spec.fallback.perAttemptTimeout: must be longer than 0"],
        },
        // Rules below need more than CEL can say cheaply; `compile` holds them.
        Case {
            name: "deadline shorter than one attempt",
            flag: with(valid_flag, |s| s["fallback"]["deadline"] = json!("10s")),
            cel: None,
            compile: &["spec.fallback.deadline: 10s is shorter than perAttemptTimeout 30s"],
        },
        Case {
            name: "a timeout longer than a week",
            flag: with(valid_flag, |s| s["fallback"]["deadline"] = json!("169h")),
            cel: None,
            compile: &["spec.fallback.deadline: must be at most 168h (a week)"],
        },
        Case {
            name: "params override the model",
            flag: with(valid_flag, |s| {
                s["variants"][1]["params"]["model"] = json!("gpt-5")
            }),
            cel: None,
            compile: &[
                "spec.variants[1].params.model: may not be set by params (model is chosen by the variant and the client)",
            ],
        },
        Case {
            // The proxy decides whether to ask for (and hide) the usage chunk
            // from what the client sent; params must not change that under it.
            name: "params set stream options",
            flag: with(valid_flag, |s| {
                s["variants"][1]["params"]["stream_options"] = json!({"include_usage": false})
            }),
            cel: None,
            compile: &[
                "spec.variants[1].params.stream_options.include_usage: may not be set by params (the proxy asks for usage itself and hides it from clients that did not)",
            ],
        },
        Case {
            name: "provider without scheme",
            flag: with(valid_flag, |s| {
                s["variants"][1]["provider"] = json!({"baseUrl": "api.openai.com"})
            }),
            cel: None,
            compile: &[
                r#"spec.variants[1].provider.baseUrl: "api.openai.com" must start with http:// or https://"#,
            ],
        },
        Case {
            name: "sticky source of unknown kind",
            flag: with(valid_flag, |s| {
                s["rollout"]["stickyBy"] = json!(["cookie:session"])
            }),
            cel: None,
            compile: &[
                r#"spec.rollout.stickyBy[0]: "cookie:session" must be header:<name> or body:<field.path>"#,
            ],
        },
        Case {
            name: "unknown failure class",
            flag: with(valid_flag, |s| {
                s["fallback"]["on"] = json!(["timeout", "rate-limited"])
            }),
            cel: None,
            compile: &[
                r#"spec.fallback.on[1]: "rate-limited" is not one of timeout, connect, 4xx, 5xx, empty, contentFilter or a status code 400-599"#,
            ],
        },
        Case {
            name: "the wire name of the content filter class",
            flag: with(valid_flag, |s| {
                s["fallback"]["on"] = json!(["5xx", "content_filter"])
            }),
            cel: None,
            compile: &[
                r#"spec.fallback.on[1]: "content_filter" is not one of timeout, connect, 4xx, 5xx, empty, contentFilter or a status code 400-599; did you mean contentFilter?"#,
            ],
        },
        Case {
            name: "contentFilter with nowhere to fall back",
            flag: with(valid_flag, |s| {
                s["fallback"] = json!({"on": ["5xx", "contentFilter"], "retries": 2})
            }),
            cel: Some((
                "spec.fallback.on",
                "fallback.on names contentFilter, which is never retried on the same variant: name the variants to fall back to in fallback.chain",
            )),
            compile: &[
                "spec.fallback.on[1]: contentFilter is never retried on the same variant: name the variants to fall back to in spec.fallback.chain",
            ],
        },
        Case {
            name: "empty with neither chain nor retries",
            flag: with(valid_flag, |s| {
                s["fallback"] = json!({"on": ["empty"], "retries": 0})
            }),
            cel: Some((
                "spec.fallback.on",
                "fallback.on names empty: give it a fallback.chain or retries to retry with",
            )),
            compile: &[
                "spec.fallback.on[0]: empty needs somewhere to go: a spec.fallback.chain or retries",
            ],
        },
        Case {
            name: "targeting rule without condition",
            flag: with(valid_flag, |s| s["targeting"][0]["when"] = json!({})),
            cel: None,
            compile: &["spec.targeting[0].when: must name at least one header or body field"],
        },
        Case {
            name: "analysis without steps",
            flag: with(valid_flag, |s| {
                s["rollout"]["analysis"] = json!({"maxErrorRate": 0.1})
            }),
            cel: Some((
                "spec.rollout.analysis",
                "rollout.analysis gates canary steps: it needs rollout.steps",
            )),
            compile: &[
                "spec.rollout.analysis: analysis gates canary steps: it needs rollout.steps",
            ],
        },
        Case {
            name: "analysis ratios above 1",
            flag: with(canary_flag, |s| {
                s["rollout"]["analysis"]["maxEmptyRate"] = json!(1.5);
                s["rollout"]["analysis"]["maxIncreaseOverStable"] =
                    json!({"errorRate": 2, "p95LatencySeconds": -1});
            }),
            // Ranges are OpenAPI minimum/maximum, which the API server checks
            // before CEL runs.
            cel: None,
            compile: &[
                "spec.rollout.analysis.maxEmptyRate: must be a ratio between 0 and 1",
                "spec.rollout.analysis.maxIncreaseOverStable.errorRate: must be a ratio between 0 and 1",
                "spec.rollout.analysis.maxIncreaseOverStable.p95LatencySeconds: must be zero or a positive number of seconds",
            ],
        },
        Case {
            name: "relative thresholds without a margin",
            flag: with(canary_flag, |s| {
                s["rollout"]["analysis"]["maxIncreaseOverStable"] = json!({});
            }),
            cel: Some((
                "spec.rollout.analysis.maxIncreaseOverStable",
                "name at least one margin: errorRate, p95LatencySeconds, fallbackRate or emptyRate",
            )),
            compile: &[
                "spec.rollout.analysis.maxIncreaseOverStable: name at least one margin: errorRate, p95LatencySeconds, fallbackRate or emptyRate",
            ],
        },
        Case {
            name: "selector expression without values",
            flag: with(valid_flag, |s| {
                s["podSelector"] = json!({"matchExpressions": [{"key": "app", "operator": "In"}]})
            }),
            cel: None,
            compile: &[
                "spec.podSelector.matchExpressions[0].values: must be non-empty for In and NotIn",
            ],
        },
    ]
}

fn parse(v: &Value) -> AIFeatureFlag {
    serde_json::from_value(v.clone()).expect("test flag deserializes")
}

fn compile_errors(flag: &AIFeatureFlag) -> Vec<String> {
    match compile_flag(&FlagInput::from_resource(flag)) {
        Ok(_) => Vec::new(),
        Err(errors) => errors.iter().map(ToString::to_string).collect(),
    }
}

#[test]
fn the_base_flags_are_valid_both_ways() {
    for base in [valid_flag(), canary_flag(), judging_flag()] {
        let flag = parse(&base);
        assert!(flag.validate_cel().is_ok(), "{:?}", flag.validate_cel());
        assert_eq!(compile_errors(&flag), Vec::<String>::new());
    }
}

#[test]
fn cel_rules_reject_each_broken_flag_with_its_message() {
    for case in cases() {
        let flag = parse(&case.flag);
        let result = flag.validate_cel();
        let Some((path, message)) = case.cel else {
            assert!(
                result.is_ok(),
                "{}: CEL should leave this to compile: {result:?}",
                case.name
            );
            continue;
        };
        let errors = result.expect_err(case.name).into_vec();
        let found: Vec<(String, String)> = errors
            .iter()
            .map(|e| (e.field_path.clone(), e.message.clone()))
            .collect();
        assert_eq!(
            found,
            vec![(path.to_string(), message.to_string())],
            "{}: exactly one CEL error expected",
            case.name
        );
    }
}

#[test]
fn compile_rejects_each_broken_flag_with_its_message() {
    for case in cases() {
        let errors = compile_errors(&parse(&case.flag));
        assert_eq!(errors, case.compile, "{}", case.name);
    }
}
