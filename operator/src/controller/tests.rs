//! The reconciler against a mock API server: one test per scenario.

use std::sync::Arc;
use std::time::Duration;

use aiflags_api::{AIFeatureFlag, FlagInput, ProxyCount, SidecarConfig, compile};
use k8s_openapi::jiff::Timestamp;
use kube::runtime::controller::Action;

use super::fixtures::{CacheBuilder, FlagBuilder, NAMESPACE};
use super::mock_api::finished;
use super::scenarios::Scenario;
use super::status::desired_status;
use super::{Context, error_policy, reconcile};

pub(super) fn compiled(flags: &[&AIFeatureFlag]) -> SidecarConfig {
    let inputs: Vec<FlagInput> = flags.iter().map(|f| FlagInput::from_resource(f)).collect();
    compile(Some(NAMESPACE), &inputs, None).config
}

/// `flag` as the operator left it after serving it in `config`.
pub(super) fn reconciled(flag: AIFeatureFlag, config: &SidecarConfig) -> AIFeatureFlag {
    let outcome = compile(Some(NAMESPACE), &[FlagInput::from_resource(&flag)], None)
        .flags
        .remove("summarizer")
        .unwrap_or_default();
    let status = desired_status(&flag, &outcome, None, config, Timestamp::UNIX_EPOCH);
    flag.with_status(status)
}

#[tokio::test]
async fn create_adds_the_finalizer_then_serves_the_flag() {
    let (ctx, server, mut cache) = Context::test();
    let flag = AIFeatureFlag::test();
    let scenario = server.run(Scenario::Create(flag.clone()));

    cache.holds(&[&flag]);
    let first = reconcile(Arc::new(flag.clone()), ctx.clone()).await;
    let flag = flag.finalized();
    cache.holds(&[&flag]);
    let second = reconcile(Arc::new(flag), ctx.clone()).await;
    finished(scenario).await;
    assert_eq!(first.expect("finalizer added"), Action::await_change());
    assert_eq!(
        second.expect("flag compiled"),
        Action::requeue(Duration::from_secs(300))
    );
    let metrics = ctx.metrics.encode();
    assert!(metrics.contains("aiflags_operator_reconciles_total{result=\"success\"} 2"));
    assert!(metrics.contains(
        "aiflags_operator_flag_phase{flag=\"summarizer\",namespace=\"shop\",phase=\"Healthy\"} 1"
    ));
}

#[tokio::test]
async fn a_valid_update_replaces_the_served_version() {
    let (ctx, server, mut cache) = Context::test();
    let first = AIFeatureFlag::test().finalized();
    let served = compiled(&[&first]);
    let second = reconciled(first.clone(), &served)
        .generation(2)
        .weights(&[("stable", 50.0), ("candidate", 50.0)]);
    let scenario = server.run(Scenario::Update {
        first: first.clone(),
        second: second.clone(),
    });

    cache.holds(&[&first]);
    let one = reconcile(Arc::new(first), ctx.clone()).await;
    cache.holds(&[&second]);
    let two = reconcile(Arc::new(second), ctx.clone()).await;
    finished(scenario).await;
    assert!(one.is_ok() && two.is_ok(), "{one:?} {two:?}");
}

#[tokio::test]
async fn invalid_update_keeps_the_previous_version_serving() {
    let (ctx, server, mut cache) = Context::test();
    let valid = AIFeatureFlag::test().finalized();
    let served = compiled(&[&valid]);
    let updated = reconciled(valid, &served)
        .generation(2)
        .weights(&[("stable", 90.0), ("candidate", 5.0)]);
    let scenario = server.run(Scenario::InvalidUpdate {
        updated: updated.clone(),
        served,
    });

    cache.holds(&[&updated]);
    let result = reconcile(Arc::new(updated), ctx.clone()).await;
    finished(scenario).await;
    // Invalid input is reported in the status, not retried as an error.
    assert_eq!(
        result.expect("reconciled"),
        Action::requeue(Duration::from_secs(300))
    );
    assert!(
        ctx.metrics
            .encode()
            .contains("aiflags_operator_flag_ready{flag=\"summarizer\",namespace=\"shop\"} 0")
    );
}

#[tokio::test]
async fn a_resync_without_change_writes_no_status_and_no_event() {
    let (ctx, server, mut cache) = Context::test();
    let flag = AIFeatureFlag::test().finalized();
    let served = compiled(&[&flag]);
    let flag = reconciled(flag, &served);
    let scenario = server.run(Scenario::Unchanged(served));
    cache.holds(&[&flag]);

    let result = reconcile(Arc::new(flag), ctx).await;
    finished(scenario).await;
    assert!(result.is_ok(), "{result:?}");
}

/// `flag`'s status with the fields a rollout engine owns filled in.
fn with_rollout_fields(flag: AIFeatureFlag) -> AIFeatureFlag {
    let mut status = flag.status.clone().unwrap_or_default();
    status.current_step = Some(1);
    status.proxies = Some(ProxyCount {
        total: 3,
        at_revision: 2,
        ..Default::default()
    });
    status.failed_checks = Some(1);
    flag.with_status(status)
}

#[tokio::test]
async fn the_status_apply_leaves_rollout_fields_to_their_owner() {
    let (ctx, server, mut cache) = Context::test();
    let flag = AIFeatureFlag::test().finalized();
    let served = compiled(&[&flag]);
    let older = compiled(&[&flag
        .clone()
        .weights(&[("stable", 50.0), ("candidate", 50.0)])]);
    let flag = with_rollout_fields(reconciled(flag, &older));
    let scenario = server.run(Scenario::StatusRefreshed {
        flag: flag.clone(),
        served,
    });
    cache.holds(&[&flag]);

    let result = reconcile(Arc::new(flag), ctx).await;
    finished(scenario).await;
    assert!(result.is_ok(), "{result:?}");
}

#[tokio::test]
async fn a_resync_does_not_count_other_owners_fields_as_drift() {
    let (ctx, server, mut cache) = Context::test();
    let flag = AIFeatureFlag::test().finalized();
    let served = compiled(&[&flag]);
    let flag = with_rollout_fields(reconciled(flag, &served));
    let scenario = server.run(Scenario::Unchanged(served));
    cache.holds(&[&flag]);

    let result = reconcile(Arc::new(flag), ctx).await;
    finished(scenario).await;
    assert!(result.is_ok(), "{result:?}");
}

#[tokio::test]
async fn a_status_the_cache_has_not_seen_yet_is_not_written_twice() {
    let (ctx, server, mut cache) = Context::test();
    let flag = AIFeatureFlag::test().finalized();
    let served = compiled(&[&flag]);
    let written = reconciled(flag.clone(), &served);
    let scenario = server.run(Scenario::StatusAlreadyWritten { written, served });

    cache.holds(&[&flag]);
    let result = reconcile(Arc::new(flag), ctx.clone()).await;
    finished(scenario).await;
    assert!(result.is_ok(), "{result:?}");
    assert!(
        ctx.metrics
            .encode()
            .contains("aiflags_operator_flag_ready{flag=\"summarizer\",namespace=\"shop\"} 1")
    );
}

#[tokio::test]
async fn a_flag_deleted_meanwhile_gets_no_status() {
    let (ctx, server, mut cache) = Context::test();
    let flag = AIFeatureFlag::test().finalized();
    let scenario = server.run(Scenario::DeletedMeanwhile);

    cache.holds(&[&flag.clone().deleting()]);
    let result = reconcile(Arc::new(flag), ctx).await;
    finished(scenario).await;
    assert_eq!(result.expect("reconciled"), Action::await_change());
}

#[tokio::test]
async fn delete_removes_the_flag_from_the_config_then_the_finalizer() {
    let (ctx, server, mut cache) = Context::test();
    let deleted = AIFeatureFlag::test().finalized();
    let remaining = AIFeatureFlag::test().named("other").finalized();
    let served = compiled(&[&deleted, &remaining]);
    let deleted = reconciled(deleted, &served).deleting();
    let scenario = server.run(Scenario::Delete {
        deleted: deleted.clone(),
        served,
    });

    cache.holds(&[&deleted, &remaining]);
    let result = reconcile(Arc::new(deleted), ctx.clone()).await;
    finished(scenario).await;
    assert_eq!(result.expect("cleaned up"), Action::await_change());
    assert!(!ctx.metrics.encode().contains("flag=\"summarizer\""));
    // Another flag still needs the namespace's lock.
    assert!(ctx.has_namespace_lock(NAMESPACE));
}

#[tokio::test]
async fn two_flags_in_one_namespace_share_one_config_map() {
    let (ctx, server, mut cache) = Context::test();
    let summarizer = AIFeatureFlag::test().finalized();
    let assistant = AIFeatureFlag::test()
        .named("assistant")
        .weights(&[("stable", 50.0), ("candidate", 50.0)])
        .finalized();
    let scenario = server.run(Scenario::TwoFlags(summarizer.clone(), assistant.clone()));
    cache.holds(&[&summarizer, &assistant]);

    let first = reconcile(Arc::new(summarizer), ctx.clone()).await;
    let second = reconcile(Arc::new(assistant), ctx.clone()).await;
    finished(scenario).await;
    assert!(first.is_ok() && second.is_ok(), "{first:?} {second:?}");
    assert!(
        ctx.metrics
            .encode()
            .contains("aiflags_operator_config_flags{namespace=\"shop\"} 2")
    );
}

#[tokio::test]
async fn api_errors_requeue_with_growing_backoff_until_success() {
    let (ctx, server, mut cache) = Context::test();
    let flag = Arc::new(AIFeatureFlag::test().finalized());
    cache.holds(&[&flag]);
    let scenario = server.run(Scenario::ConfigMapRejected {
        flag: (*flag).clone(),
        codes: vec![409, 500],
    });

    let conflict = reconcile(flag.clone(), ctx.clone()).await;
    let conflict = conflict.expect_err("409 fails the reconcile");
    assert_eq!(conflict.metric_reason(), "conflict");
    let first_retry = error_policy(flag.clone(), &conflict, ctx.clone());

    let server_error = reconcile(flag.clone(), ctx.clone()).await;
    let server_error = server_error.expect_err("500 fails the reconcile");
    assert_eq!(server_error.metric_reason(), "server_error");
    let second_retry = error_policy(flag.clone(), &server_error, ctx.clone());

    assert_eq!(first_retry, Action::requeue(Duration::from_secs(5)));
    assert_eq!(second_retry, Action::requeue(Duration::from_secs(10)));

    let success = reconcile(flag.clone(), ctx.clone()).await;
    finished(scenario).await;
    assert!(success.is_ok(), "{success:?}");
    // A success resets the backoff.
    assert_eq!(
        error_policy(flag, &server_error, ctx.clone()),
        Action::requeue(Duration::from_secs(5))
    );
    let metrics = ctx.metrics.encode();
    assert!(metrics.contains("aiflags_operator_reconcile_errors_total{reason=\"conflict\"} 1"));
    assert!(metrics.contains("aiflags_operator_reconcile_errors_total{reason=\"server_error\"} 1"));
}
