//! Propagation passes against a mock API server and real HTTP sidecars on
//! loopback: who is asked, what is written, and what is left alone.

use std::collections::BTreeMap;
use std::time::Duration;

use aiflags_api::{FlagInput, SidecarConfig, compile};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use prometheus::{Registry, TextEncoder};
use serde_json::{Value, json};

use super::fake_sidecar::{FakeSidecar, Metrics, serving, without_config};
use super::*;
use crate::controller::Context;
use crate::controller::fixtures::FlagBuilder;
use crate::controller::mock_api::finished;

/// `summarizer` applies to `app=summarizer` pods, `assistant` to every pod.
fn flags() -> (AIFeatureFlag, AIFeatureFlag) {
    let mut summarizer = AIFeatureFlag::test().finalized();
    summarizer.spec.pod_selector = Some(LabelSelector {
        match_labels: Some(BTreeMap::from([("app".into(), "summarizer".into())])),
        match_expressions: None,
    });
    let assistant = AIFeatureFlag::test().named("assistant").finalized();
    (summarizer, assistant)
}

fn config_of(flags: &[&AIFeatureFlag]) -> SidecarConfig {
    let inputs: Vec<FlagInput> = flags.iter().map(|f| FlagInput::from_resource(f)).collect();
    compile(Some("shop"), &inputs, None).config
}

/// A running pod of `namespace` whose sidecar's admin endpoint is `fake`
/// (`None`: injected, but no IP yet; `app` empty: not injected).
fn pod(
    name: &str,
    namespace: &str,
    app: &str,
    fake: Option<&FakeSidecar>,
    injected: bool,
) -> Arc<Pod> {
    let port = fake.map_or(15090, |f| f.addr.port());
    let mut containers = vec![json!({"name": "app", "image": "app:1"})];
    if injected {
        containers.push(json!({
            "name": "aiflags-proxy",
            "env": [{"name": "AIFLAGS_ADMIN_LISTEN", "value": format!("0.0.0.0:{port}")}],
        }));
    }
    let ip = fake.map(|_| "127.0.0.1");
    Arc::new(
        serde_json::from_value(json!({
            "metadata": {
                "name": name, "namespace": namespace, "uid": format!("uid-{name}"),
                "resourceVersion": "1", "labels": {"app": app},
            },
            "spec": {"containers": containers},
            "status": {"phase": "Running", "podIP": ip},
        }))
        .expect("a pod"),
    )
}

fn settings() -> Settings {
    Settings {
        interval: Duration::from_secs(5),
        cadence: Cadence {
            behind: Duration::ZERO,
            settled: Duration::from_secs(3600),
        },
        poll: PollSettings {
            timeout: Duration::from_secs(5),
            ..PollSettings::default()
        },
        // One write at a time: the mock API server expects them in order.
        write_concurrency: 1,
    }
}

/// `flag` as the watch shows it after the pass wrote `status` (whose
/// `lastTransitionTime` the fixture took out).
fn with_written(flag: &AIFeatureFlag, mut status: Value) -> Arc<AIFeatureFlag> {
    status["conditions"][0]["lastTransitionTime"] = json!("2025-01-01T00:00:00Z");
    let status = serde_json::from_value(status).expect("a status");
    Arc::new(flag.clone().with_status(status))
}

fn proxies_of(status: &Value) -> (&Value, &Value, &Value) {
    let condition = &status["conditions"][0];
    (
        &status["proxies"]["summary"],
        &condition["status"],
        &condition["reason"],
    )
}

#[tokio::test]
async fn passes_ask_whoever_is_due_and_write_only_what_changed() {
    let (ctx, server, _cache) = Context::test();
    let (summarizer, assistant) = flags();
    let config = config_of(&[&summarizer, &assistant]);
    ctx.written.set("shop", config.clone());
    let revision = config.revision.clone();

    let current = FakeSidecar::start(Metrics::Text(serving(&revision), 64)).await;
    let lagging = FakeSidecar::start(Metrics::Text(serving("0000000000000000"), 64)).await;
    let empty = FakeSidecar::start(Metrics::Text(without_config(), 64)).await;
    let elsewhere = FakeSidecar::start(Metrics::Text(serving(&revision), 64)).await;
    let pods = vec![
        pod("current", "shop", "summarizer", Some(&current), true),
        pod("lagging", "shop", "summarizer", Some(&lagging), true),
        pod("empty", "shop", "other", Some(&empty), true),
        pod("plain", "shop", "summarizer", None, false),
        // No config written in that namespace: nobody to compare with.
        pod("elsewhere", "other", "summarizer", Some(&elsewhere), true),
    ];
    let registry = Registry::new();
    let metrics = PropagationMetrics::new(&registry).expect("metrics");
    let mut propagation =
        Propagation::new(ctx.client.clone(), settings(), ctx.written.clone(), metrics);

    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let (s, a) = (summarizer.clone(), assistant.clone());
    let expected_revision = revision.clone();
    let scenario = tokio::spawn(async move {
        // Pass 1: one of the summarizer's two pods, one of everyone's three.
        let (server, status) = server.propagation_applied(&s).await;
        assert_eq!(
            status,
            json!({
                "proxies": {"total": 2, "atRevision": 1, "revision": expected_revision, "summary": "1/2"},
                "conditions": [{
                    "type": "Propagated", "status": "False", "reason": "ProxiesBehind",
                    "message": format!("1 of 2 proxies serve config revision {expected_revision}; 1 on another revision"),
                    "observedGeneration": 1,
                }],
            })
        );
        tx.send(status).expect("test alive");
        let (server, status) = server.propagation_applied(&a).await;
        assert_eq!(
            proxies_of(&status),
            (&json!("1/3"), &json!("False"), &json!("ProxiesBehind"))
        );
        tx.send(status).expect("test alive");
        // Pass 2: the lagging sidecar caught up.
        let (server, status) = server.propagation_applied(&s).await;
        assert_eq!(
            proxies_of(&status),
            (&json!("2/2"), &json!("True"), &json!("AtRevision"))
        );
        tx.send(status).expect("test alive");
        let (_, status) = server.propagation_applied(&a).await;
        assert_eq!(
            proxies_of(&status),
            (&json!("2/3"), &json!("False"), &json!("ProxiesBehind"))
        );
        tx.send(status).expect("test alive");
    });

    let flags = vec![Arc::new(summarizer.clone()), Arc::new(assistant.clone())];
    let first = propagation.pass(&flags, &pods).await;
    assert_eq!(
        first,
        PassReport {
            asked: 3,
            written: 2,
            failed: 0
        }
    );
    let statuses = (
        rx.recv().await.expect("written"),
        rx.recv().await.expect("written"),
    );
    let flags = vec![
        with_written(&summarizer, statuses.0),
        with_written(&assistant, statuses.1),
    ];

    lagging.answer(Metrics::Text(serving(&revision), 64));
    let second = propagation.pass(&flags, &pods).await;
    // The sidecar already at the revision is not asked again.
    assert_eq!(
        second,
        PassReport {
            asked: 2,
            written: 2,
            failed: 0
        }
    );
    finished(scenario).await;
    let statuses = (
        rx.recv().await.expect("written"),
        rx.recv().await.expect("written"),
    );
    let flags = vec![
        with_written(&summarizer, statuses.0),
        with_written(&assistant, statuses.1),
    ];

    // Nothing changed: no write (the mock API server is gone: any request
    // would fail), and only the sidecar without config is asked.
    let third = propagation.pass(&flags, &pods).await;
    assert_eq!(
        third,
        PassReport {
            asked: 1,
            written: 0,
            failed: 0
        }
    );
    assert_eq!(
        (
            current.requests(),
            lagging.requests(),
            empty.requests(),
            elsewhere.requests()
        ),
        (1, 2, 3, 0)
    );

    let text = TextEncoder::new()
        .encode_to_string(&registry.gather())
        .expect("text");
    for line in [
        format!("aiflags_operator_proxies{{namespace=\"shop\",revision=\"{revision}\"}} 2"),
        "aiflags_operator_proxies{namespace=\"shop\",revision=\"none\"} 1".to_string(),
        "aiflags_operator_flag_proxies{flag=\"assistant\",namespace=\"shop\",state=\"total\"} 3"
            .to_string(),
        "aiflags_operator_flag_proxies{flag=\"assistant\",namespace=\"shop\",state=\"at_revision\"} 2"
            .to_string(),
        "aiflags_operator_flag_proxies{flag=\"summarizer\",namespace=\"shop\",state=\"at_revision\"} 2"
            .to_string(),
        "aiflags_operator_proxy_polls_total{result=\"serving\"} 3".to_string(),
        "aiflags_operator_proxy_polls_total{result=\"no_config\"} 3".to_string(),
        "aiflags_operator_propagation_pass_duration_seconds_count 3".to_string(),
    ] {
        assert!(text.contains(&line), "{line} in\n{text}");
    }
    // The lagging revision's series went away with it.
    assert!(!text.contains("0000000000000000"), "{text}");
}

#[tokio::test]
async fn gone_pods_and_flags_take_their_series_and_answers_with_them() {
    let (ctx, server, _cache) = Context::test();
    // No API server: every write fails.
    drop(server);
    let (summarizer, _) = flags();
    ctx.written.set("shop", config_of(&[&summarizer]));
    let registry = Registry::new();
    let metrics = PropagationMetrics::new(&registry).expect("metrics");
    let mut propagation =
        Propagation::new(ctx.client.clone(), settings(), ctx.written.clone(), metrics);
    let fake = FakeSidecar::start(Metrics::Text(without_config(), 64)).await;
    let pods = vec![pod("a", "shop", "other", Some(&fake), true)];

    // The summarizer applies to no pod here: NoProxies, written to an API
    // server that is gone, so the write fails and is counted.
    let report = propagation
        .pass(&[Arc::new(summarizer.clone())], &pods)
        .await;
    assert_eq!(
        report,
        PassReport {
            asked: 1,
            written: 0,
            failed: 1
        }
    );
    assert_eq!(propagation.probes.len(), 1);

    let deleting = Arc::new(summarizer.deleting());
    let report = propagation.pass(&[deleting], &[]).await;
    assert_eq!(
        report,
        PassReport {
            asked: 0,
            written: 0,
            failed: 0
        }
    );
    assert!(propagation.probes.is_empty());
    let text = TextEncoder::new()
        .encode_to_string(&registry.gather())
        .expect("text");
    assert!(!text.contains("aiflags_operator_flag_proxies{"), "{text}");
    assert!(!text.contains("aiflags_operator_proxies{"), "{text}");
}

#[tokio::test]
async fn an_injected_pod_without_an_ip_counts_but_is_not_asked() {
    let (ctx, server, _cache) = Context::test();
    let (summarizer, _) = flags();
    let config = config_of(&[&summarizer]);
    ctx.written.set("shop", config.clone());
    let registry = Registry::new();
    let metrics = PropagationMetrics::new(&registry).expect("metrics");
    let mut propagation =
        Propagation::new(ctx.client.clone(), settings(), ctx.written.clone(), metrics);
    let pods = vec![pod("starting", "shop", "summarizer", None, true)];

    let flag = summarizer.clone();
    let scenario = tokio::spawn(async move {
        let (_, status) = server.propagation_applied(&flag).await;
        assert_eq!(status["proxies"]["summary"], "0/1");
        assert_eq!(
            status["conditions"][0]["message"],
            format!(
                "0 of 1 proxies serve config revision {}; 1 unreachable",
                config.revision
            )
        );
    });
    let report = propagation.pass(&[Arc::new(summarizer)], &pods).await;
    finished(scenario).await;
    assert_eq!(
        report,
        PassReport {
            asked: 1,
            written: 1,
            failed: 0
        }
    );
}
