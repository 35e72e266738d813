//! The reconciler with a progressive rollout, against the mock API server:
//! the engine's status goes first, the config follows it, commands given by
//! annotation are acted on and removed.

use std::sync::Arc;
use std::time::Duration;

use aiflags_api::{AIFeatureFlag, SidecarConfig};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::runtime::controller::Action;
use serde_json::{Value, json};

use super::fixtures::{CacheBuilder, FlagBuilder};
use super::mock_api::{ApiServer, finished};
use super::tests::compiled;
use super::{Context, reconcile};
use crate::rollout::commands::{ABORT, PROMOTE};
use crate::rollout::engine::{Input, Proxies, decide};
use crate::rollout::view::with_engine_part;

/// 10% for a minute, then 100%.
fn canary() -> AIFeatureFlag {
    AIFeatureFlag::test()
        .canary(&[(10.0, Some("1m")), (100.0, None)], None)
        .finalized()
}

/// `flag` with its rollout started and served `seconds` ago.
fn rolled_out(flag: AIFeatureFlag, seconds: i64) -> AIFeatureFlag {
    let then = Timestamp::now()
        .checked_sub(SignedDuration::from_secs(seconds))
        .expect("in range");
    let mut flag = flag;
    for proxies in [Proxies::Behind("new".into()), Proxies::Serving(10.0)] {
        let input = Input {
            spec: &flag.spec,
            status: flag.status.as_ref(),
            generation: 1,
            now: then,
            proxies,
            command: None,
        };
        let decision = decide(&input, None);
        flag.status = Some(with_engine_part(flag.status.clone(), &decision.status));
    }
    flag
}

fn weights(config: &SidecarConfig, flag: &str) -> Vec<u32> {
    config
        .flag(flag)
        .map(|f| f.weights.clone())
        .unwrap_or_default()
}

/// What follows the engine's write of `updated` in a reconcile: the config
/// (read back as `served`, applied with the canary at `canary` basis
/// points), the reconciler's status, its `Compiled` Event and the reader
/// Role. Returns the server, the config and the status applied.
async fn compiled_after_engine(
    server: ApiServer,
    updated: &AIFeatureFlag,
    served: Option<&SidecarConfig>,
    canary: u32,
) -> (ApiServer, SidecarConfig, Value) {
    let server = server.config_map_read(served).await;
    let (server, config) = server.config_map_applied().await;
    assert_eq!(weights(&config, "summarizer"), [10_000 - canary, canary]);
    let (server, status) = server
        .flag_read(updated)
        .await
        .status_applied(updated)
        .await;
    let (server, _) = server.event_posted(updated, "Normal", "Compiled").await;
    (server.reader_applied().await, config, status)
}

#[tokio::test]
async fn a_new_canary_starts_at_step_one_and_the_config_follows_the_engine() {
    let (ctx, server, mut cache) = Context::test();
    let flag = canary();
    cache.holds(&[&flag]);
    let expected = flag.clone();
    let scenario = tokio::spawn(async move {
        let (server, updated, engine) = server.engine_applied(&expected).await;
        assert_eq!(engine["currentStep"], 1);
        assert_eq!(engine["failedChecks"], 0);
        assert_eq!(engine["rollout"]["state"], "Progressing");
        assert_eq!(engine["rollout"]["canaryWeight"], 10.0);
        assert_eq!(engine["rollout"]["stepSummary"], "1/2");
        assert_eq!(engine["conditions"][0]["reason"], "WaitingForProxies");
        assert_eq!(
            engine["conditions"][0]["message"],
            "step 1 (10%): waiting for the proxies to serve it: the operator has not written the namespace's config since it started"
        );
        let (server, note) = server
            .event_posted(&expected, "Normal", "RolloutStarted")
            .await;
        assert_eq!(note, "the rollout starts at step 1 (10%)");
        let (_, _, status) = compiled_after_engine(server, &updated, None, 1000).await;
        assert_eq!(status["phase"], "Progressing");
        assert_eq!(status["split"], "stable=90 candidate=10");
        assert_eq!(
            status["conditions"].as_array().map(Vec::len),
            Some(1),
            "Ready only"
        );
    });

    let result = reconcile(Arc::new(flag), ctx.clone()).await;
    finished(scenario).await;
    // Back soon: the proxies are to serve the step.
    assert_eq!(
        result.expect("reconciled"),
        Action::requeue(Duration::from_secs(5))
    );
    let metrics = ctx.metrics.encode();
    assert!(
        metrics.contains(r#"aiflags_operator_rollout_step{flag="summarizer",namespace="shop"} 1"#),
        "{metrics}"
    );
    assert!(metrics.contains(
        r#"aiflags_operator_flag_phase{flag="summarizer",namespace="shop",phase="Progressing"} 1"#
    ));
}

#[tokio::test]
async fn promote_by_annotation_is_acted_on_removed_and_kept_by_other_flags_reconciles() {
    let (ctx, server, mut cache) = Context::test();
    let before = rolled_out(canary(), 10);
    let served = compiled(&[&before]);
    assert_eq!(weights(&served, "summarizer"), [9000, 1000]);
    let flag = before.clone().annotated(PROMOTE);
    let other = AIFeatureFlag::test().named("assistant").finalized();
    // The cache does not see the promotion before the second reconcile.
    cache.holds(&[&flag, &other]);
    let (expected, expected_other) = (flag.clone(), other.clone());
    let scenario = tokio::spawn(async move {
        let (server, updated, engine) = server.engine_applied(&expected).await;
        assert_eq!(engine["rollout"]["state"], "Completed");
        assert_eq!(engine["rollout"]["canaryWeight"], 100.0);
        assert_eq!(engine["conditions"][0]["reason"], "Completed");
        let (server, note) = server
            .event_posted(&expected, "Normal", "RolloutPromoted")
            .await;
        assert_eq!(
            note,
            "promoted by hand (aiflags.dev/promote): the canary gets 100%"
        );
        let server = server.commands_removed(&expected, &[PROMOTE]).await;
        let (server, config, status) =
            compiled_after_engine(server, &updated, Some(&served), 10_000).await;
        assert_eq!(status["phase"], "Healthy");
        assert_eq!(status["split"], "stable=0 candidate=100");

        // The other flag's reconcile compiles the canary at 100% too.
        let server = server.config_map_read(Some(&config)).await;
        let (server, again) = server.config_map_applied().await;
        assert_eq!(weights(&again, "summarizer"), [0, 10_000]);
        let (server, _) = server
            .flag_read(&expected_other)
            .await
            .status_applied(&expected_other)
            .await;
        server
            .event_posted(&expected_other, "Normal", "Compiled")
            .await;
    });

    let first = reconcile(Arc::new(flag), ctx.clone()).await;
    let second = reconcile(Arc::new(other), ctx.clone()).await;
    finished(scenario).await;
    assert!(first.is_ok() && second.is_ok(), "{first:?} {second:?}");
}

#[tokio::test]
async fn abort_by_annotation_sends_everything_to_stable_and_counts() {
    let (ctx, server, mut cache) = Context::test();
    let before = rolled_out(canary(), 10);
    let served = compiled(&[&before]);
    let flag = before.annotated(ABORT);
    cache.holds(&[&flag]);
    let expected = flag.clone();
    let scenario = tokio::spawn(async move {
        let (server, updated, engine) = server.engine_applied(&expected).await;
        assert_eq!(engine["rollout"]["state"], "Aborted");
        assert_eq!(engine["rollout"]["canaryWeight"], 0.0);
        assert_eq!(engine["conditions"][1]["status"], "True");
        assert_eq!(engine["conditions"][1]["reason"], "AbortedByHand");
        let (server, _) = server
            .event_posted(&expected, "Warning", "RolloutAborted")
            .await;
        let server = server.commands_removed(&expected, &[ABORT]).await;
        let (_, _, status) = compiled_after_engine(server, &updated, Some(&served), 0).await;
        assert_eq!(status["phase"], "Degraded");
    });

    let result = reconcile(Arc::new(flag), ctx.clone()).await;
    finished(scenario).await;
    assert_eq!(
        result.expect("reconciled"),
        Action::requeue(Duration::from_secs(300))
    );
    let metrics = ctx.metrics.encode();
    assert!(
        metrics.contains(
            r#"aiflags_operator_rollout_aborts_total{flag="summarizer",namespace="shop"} 1"#
        ),
        "{metrics}"
    );
}

#[tokio::test]
async fn without_prometheus_a_due_check_is_inconclusive_and_the_step_holds() {
    let (ctx, server, mut cache) = Context::test();
    let analysis = json!({"interval": "30s", "maxErrorRate": 0.05});
    let flag = rolled_out(
        AIFeatureFlag::test()
            .canary(&[(10.0, Some("1m")), (100.0, None)], Some(analysis))
            .finalized(),
        120,
    );
    let served = compiled(&[&flag]);
    cache.holds(&[&flag]);
    let expected = flag.clone();
    let scenario = tokio::spawn(async move {
        let (server, updated, engine) = server.engine_applied(&expected).await;
        assert_eq!(
            engine["currentStep"], 1,
            "the pause is over, but nothing passed"
        );
        let check = &engine["rollout"]["checks"][0];
        assert_eq!(check["result"], "Inconclusive");
        assert!(
            check["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("no Prometheus is configured")),
            "{check}"
        );
        assert_eq!(engine["conditions"][0]["status"], "True");
        assert_eq!(engine["conditions"][0]["reason"], "AnalysisInconclusive");
        let (server, _) = server
            .event_posted(&expected, "Warning", "AnalysisInconclusive")
            .await;
        compiled_after_engine(server, &updated, Some(&served), 1000).await;
    });

    let result = reconcile(Arc::new(flag), ctx.clone()).await;
    finished(scenario).await;
    assert_eq!(
        result.expect("reconciled"),
        Action::requeue(Duration::from_secs(30))
    );
    let metrics = ctx.metrics.encode();
    assert!(metrics.contains(r#"aiflags_operator_analysis_checks_total{flag="summarizer",namespace="shop",result="inconclusive"} 1"#), "{metrics}");
}

#[tokio::test]
async fn a_conflicting_engine_write_is_decided_again_on_the_fresh_flag() {
    let (ctx, server, mut cache) = Context::test();
    let flag = canary();
    cache.holds(&[&flag]);
    // Meanwhile another writer changed the flag (resourceVersion 2).
    let mut fresh = flag.clone();
    fresh.metadata.resource_version = Some("2".into());
    let (expected, fresh_copy) = (flag.clone(), fresh.clone());
    let scenario = tokio::spawn(async move {
        let server = server.engine_rejected(&expected, 409).await;
        let server = server.flag_read(&fresh_copy).await;
        let (server, updated, engine) = server.engine_applied(&fresh_copy).await;
        assert_eq!(engine["rollout"]["canaryWeight"], 10.0);
        let (server, _) = server
            .event_posted(&fresh_copy, "Normal", "RolloutStarted")
            .await;
        let (_, _, status) = compiled_after_engine(server, &updated, None, 1000).await;
        assert_eq!(status["phase"], "Progressing");
    });

    let result = reconcile(Arc::new(flag), ctx.clone()).await;
    finished(scenario).await;
    assert!(result.is_ok(), "{result:?}");
}

#[tokio::test]
async fn a_second_conflict_fails_the_reconcile_before_any_config_write() {
    let (ctx, server, mut cache) = Context::test();
    let flag = canary();
    cache.holds(&[&flag]);
    let expected = flag.clone();
    let scenario = tokio::spawn(async move {
        let server = server.engine_rejected(&expected, 409).await;
        let server = server.flag_read(&expected).await;
        server.engine_rejected(&expected, 409).await;
    });

    let result = reconcile(Arc::new(flag), ctx.clone()).await;
    finished(scenario).await;
    assert_eq!(result.expect_err("a conflict").metric_reason(), "conflict");
    assert!(
        !ctx.metrics
            .encode()
            .contains("aiflags_operator_rollout_step{"),
        "nothing recorded"
    );
}

#[tokio::test]
async fn a_command_on_a_flag_without_steps_is_removed_with_a_warning() {
    let (ctx, server, mut cache) = Context::test();
    let flag = AIFeatureFlag::test().finalized().annotated(PROMOTE);
    cache.holds(&[&flag]);
    let expected = flag.clone();
    let scenario = tokio::spawn(async move {
        let (server, note) = server
            .event_posted(&expected, "Warning", "CommandIgnored")
            .await;
        assert_eq!(
            note,
            "aiflags.dev/promote ignored: the flag has no rollout.steps to control"
        );
        let server = server.commands_removed(&expected, &[PROMOTE]).await;
        server.first_compile(&expected).await;
    });

    let result = reconcile(Arc::new(flag), ctx.clone()).await;
    finished(scenario).await;
    assert!(result.is_ok(), "{result:?}");
}
