//! Who is left alone and why, and the AdmissionReview answers around it.

use serde_json::json;

use super::config::InjectionConfig;
use super::fixtures::{
    NAMESPACE, PodJson, answer_to, labels, pod, response_json, review_of, typed, verdict,
};
use super::inject::{Verdict, decide};
use super::review::{Outcome, ReviewError, parse};
use super::select::Skip;

const ENABLED: (&str, &str) = ("aiflags.dev/inject", "enabled");
const DISABLED: (&str, &str) = ("aiflags.dev/inject", "disabled");

fn refusal(verdict: Verdict) -> Vec<String> {
    match verdict {
        Verdict::Refuse(problems) => problems,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[test]
fn opting_out_wins_over_opting_in() {
    let pod_out = pod().set("/metadata/labels/aiflags.dev~1inject", json!("disabled"));
    assert_eq!(verdict(&pod_out, &[ENABLED]), Verdict::Skip(Skip::OptedOut));
    assert_eq!(verdict(&pod(), &[DISABLED]), Verdict::Skip(Skip::OptedOut));
    let other_value = pod().set("/metadata/labels/aiflags.dev~1inject", json!("true"));
    assert_eq!(verdict(&other_value, &[]), Verdict::Skip(Skip::NotSelected));
}

#[test]
fn system_namespaces_are_never_injected() {
    for namespace in ["kube-system", "kube-public", "kube-node-lease"] {
        let verdict = decide(
            &typed(&pod()),
            namespace,
            &labels(&[ENABLED]),
            &InjectionConfig::default(),
        );
        assert_eq!(
            verdict,
            Verdict::Skip(Skip::ExcludedNamespace),
            "{namespace}"
        );
    }
}

#[test]
fn bad_annotations_are_all_named_and_the_pod_goes_without() {
    let pod_json = pod()
        .annotate("proxy.aiflags.dev/proxy-port", "eighty")
        .annotate("proxy.aiflags.dev/admin-port", "80")
        .annotate("proxy.aiflags.dev/cpu-request", "lots")
        .annotate("proxy.aiflags.dev/openai-upstream", "ftp://files.example")
        .annotate("proxy.aiflags.dev/workers", "0")
        .annotate("proxy.aiflags.dev/override-base-url", "yes")
        .annotate("proxy.aiflags.dev/imgae", "typo:1")
        .annotate("example.com/unrelated", "ignored");
    let problems = refusal(verdict(&pod_json, &[]));
    let expected = [
        "annotation proxy.aiflags.dev/admin-port: 80 is below 1024",
        "annotation proxy.aiflags.dev/cpu-request: \"lots\" is not a quantity (like 100m or 64Mi)",
        "annotation proxy.aiflags.dev/imgae: unknown setting \"imgae\" (known: image, proxy-port,",
        "annotation proxy.aiflags.dev/openai-upstream: \"ftp://files.example\" is not an http:// or https:// URL",
        "annotation proxy.aiflags.dev/override-base-url: \"yes\" is not \"true\" or \"false\"",
        "annotation proxy.aiflags.dev/proxy-port: \"eighty\" is not a port number",
        "annotation proxy.aiflags.dev/workers: 0 is not between 1 and 64",
    ];
    assert_eq!(problems.len(), expected.len(), "{problems:#?}");
    for (problem, expected) in problems.iter().zip(expected) {
        assert!(
            problem.starts_with(expected),
            "{problem:?} should start with {expected:?}"
        );
    }
}

#[test]
fn settings_that_the_api_server_would_reject_are_refused() {
    let above = pod()
        .annotate("proxy.aiflags.dev/memory-request", "1Gi")
        .annotate("proxy.aiflags.dev/memory-limit", "512Mi");
    assert_eq!(
        refusal(verdict(&above, &[])),
        ["annotations: resources.requests.memory: 1Gi is above the limit 512Mi"]
    );
    let same = pod().annotate("proxy.aiflags.dev/admin-port", "15080");
    assert_eq!(
        refusal(verdict(&same, &[])),
        ["annotations: proxy port and admin port are both 15080"]
    );
}

#[test]
fn pods_the_proxy_cannot_join_are_refused_with_the_reason() {
    let host = pod().set("/spec/hostNetwork", json!(true));
    assert!(refusal(verdict(&host, &[]))[0].contains("host network"));
    let port = pod().set("/spec/containers/0/ports/0/containerPort", json!(15090));
    let problem = &refusal(verdict(&port, &[]))[0];
    assert!(
        problem.contains("container \"app\" uses port 15090"),
        "{problem}"
    );
    let volume = json!({"name": "aiflags-config", "emptyDir": {}});
    let clash = pod().set("/spec/volumes/1", volume);
    assert!(refusal(verdict(&clash, &[]))[0].contains("volume named \"aiflags-config\""));
}

#[test]
fn an_injection_answer_carries_the_patch_as_json_patch() {
    let answer = answer_to(&review_of(&pod()), &[]);
    assert_eq!(answer.outcome, Outcome::Injected);
    assert!(answer.notice.is_none());
    let response = response_json(&answer.review);
    assert_eq!(response["uid"], "705ab4f5-6393-11e8-b7cc-42010a800002");
    assert_eq!(response["allowed"], true);
    assert_eq!(response["patchType"], "JSONPatch");
    // kube-rs sends the bytes as a JSON array, which the API server's
    // decoder reads as readily as base64.
    let bytes: Vec<u8> = serde_json::from_value(response["patch"].clone()).expect("patch bytes");
    let patch: json_patch::Patch = serde_json::from_slice(&bytes).expect("a JSON patch");
    let mut patched = pod();
    json_patch::patch(&mut patched, &patch).expect("applies");
    assert_eq!(
        patched["metadata"]["labels"]["aiflags.dev/proxy"],
        "injected"
    );
    let review = serde_json::to_value(&answer.review).expect("json");
    assert_eq!(review["apiVersion"], "admission.k8s.io/v1");
    assert_eq!(review["kind"], "AdmissionReview");
}

#[test]
fn a_refused_pod_is_admitted_unchanged_with_warnings_and_a_notice_on_its_owner() {
    let bad = pod().annotate("proxy.aiflags.dev/proxy-port", "eighty");
    let answer = answer_to(&review_of(&bad), &[]);
    assert_eq!(answer.outcome, Outcome::Refused);
    let response = response_json(&answer.review);
    assert_eq!(response["allowed"], true, "never a rejected deploy");
    assert!(response.get("patch").is_none());
    assert_eq!(
        response["warnings"],
        json!([
            "aiflags: annotation proxy.aiflags.dev/proxy-port: \"eighty\" is not a port number; \
                the pod was admitted without the aiflags proxy"
        ])
    );
    let notice = answer.notice.expect("a notice for an Event");
    assert!(notice.warning);
    assert_eq!(notice.regarding.kind.as_deref(), Some("ReplicaSet"));
    assert_eq!(
        notice.regarding.name.as_deref(),
        Some("summarizer-7d9f8b6c5")
    );
    assert_eq!(notice.regarding.namespace.as_deref(), Some(NAMESPACE));

    let mut dry_run = review_of(&bad);
    dry_run["request"]["dryRun"] = json!(true);
    assert!(
        answer_to(&dry_run, &[]).notice.is_none(),
        "no side effects on a dry run"
    );
}

#[test]
fn warnings_of_an_injection_reach_the_author() {
    let own = json!({"name": "OPENAI_BASE_URL", "value": "https://azure.example"});
    let answer = answer_to(&review_of(&pod().set("/spec/containers/0/env/1", own)), &[]);
    assert_eq!(answer.outcome, Outcome::Injected);
    let warnings = response_json(&answer.review)["warnings"].clone();
    assert!(
        warnings[0]
            .as_str()
            .is_some_and(|w| w.starts_with("aiflags: container \"app\" sets OPENAI_BASE_URL"))
    );
    assert!(!answer.notice.expect("a notice").warning);
}

#[test]
fn requests_that_are_not_pod_creations_pass_untouched() {
    let mut update = review_of(&pod());
    update["request"]["operation"] = json!("UPDATE");
    let mut binding = review_of(&pod());
    binding["request"]["subResource"] = json!("binding");
    let mut deployment = review_of(&pod());
    deployment["request"]["kind"] = json!({"group": "apps", "version": "v1", "kind": "Deployment"});
    for review in [update, binding, deployment] {
        let answer = answer_to(&review, &[]);
        assert_eq!(answer.outcome, Outcome::Skipped);
        let response = response_json(&answer.review);
        assert_eq!(
            (response["allowed"].clone(), response.get("patch")),
            (json!(true), None)
        );
    }
}

#[test]
fn an_injected_pod_admitted_again_gets_no_patch() {
    let (_, patched, _) = super::fixtures::injected(&pod());
    let answer = answer_to(&review_of(&patched), &[]);
    assert_eq!(answer.outcome, Outcome::AlreadyInjected);
    let response = response_json(&answer.review);
    assert_eq!(response.get("patch"), None);
    assert_eq!(response.get("warnings"), None);
}

#[test]
fn an_unreadable_pod_is_admitted_with_a_warning() {
    let broken = pod().set("/spec/containers", json!("not a list"));
    let answer = answer_to(&review_of(&broken), &[]);
    assert_eq!(answer.outcome, Outcome::Refused);
    let response = response_json(&answer.review);
    assert_eq!(response["allowed"], true);
    let warning = response["warnings"][0].as_str().expect("a warning");
    assert!(
        warning.contains("the pod cannot be read at spec.containers"),
        "{warning}"
    );
}

#[test]
fn a_malformed_review_is_a_clear_error() {
    let cases: [(&[u8], &str); 4] = [
        (b"", "the body is not an AdmissionReview: EOF while parsing"),
        (
            b"{\"kind\": \"AdmissionReview\"",
            "the body is not an AdmissionReview: EOF while parsing",
        ),
        (
            b"[1, 2]",
            "the body is not an AdmissionReview: invalid type: sequence",
        ),
        (
            br#"{"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview"}"#,
            "the AdmissionReview has no request",
        ),
    ];
    for (body, expected) in cases {
        let error = parse(body).err().map(|e| e.to_string()).expect("an error");
        assert!(
            error.starts_with(expected),
            "{error:?} should start with {expected:?}"
        );
    }
    let mut no_uid = review_of(&pod());
    no_uid["request"]
        .as_object_mut()
        .expect("request")
        .remove("uid");
    let error = parse(&serde_json::to_vec(&no_uid).expect("json")).err();
    assert!(
        matches!(&error, Some(ReviewError::NotAReview(m)) if m.contains("request") && m.contains("uid")),
        "{error:?}"
    );
}
