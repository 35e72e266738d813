//! The restart offer against the mock API server: every request asserted,
//! and no request at all where none is due.

use std::time::Duration;

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use kube::runtime::controller::Action;
use serde_json::{Value, json};

use super::decide::{Budget, Plan, plan};
use super::fixtures::{SPACING, context, meta_of, namespace, pod, workload};
use super::{RECHECK, RECHECK_SOON, reconcile};

fn restart_on() -> Value {
    json!({"aiflags.dev/restart-to-inject": "enabled"})
}

#[tokio::test]
async fn an_opted_in_namespace_gets_its_deployment_restarted_once() {
    let (ctx, mut api) = context(&[namespace(restart_on())]);
    let deployment = workload("Deployment", "summarizer", json!({}));
    let task = tokio::spawn(reconcile::<Deployment>(meta_of(&deployment), ctx.clone()));
    api.workload_read(&deployment).await;
    api.pods_listed(
        "summarizer",
        vec![pod("summarizer", false), pod("summarizer", true)],
    )
    .await;
    let patch = api.restart_patched(&deployment, 200).await;
    assert_eq!(
        patch["metadata"],
        json!({"resourceVersion": "41", "annotations": {"aiflags.dev/restarted-for-injection": "3"}})
    );
    let restarted_at =
        patch["spec"]["template"]["metadata"]["annotations"]["kubectl.kubernetes.io/restartedAt"]
            .as_str()
            .expect("restartedAt");
    assert!(
        restarted_at.parse::<k8s_openapi::jiff::Timestamp>().is_ok() && restarted_at.ends_with('Z'),
        "{restarted_at}"
    );
    assert_eq!(
        patch.as_object().map(|o| o.len()),
        Some(2),
        "only metadata and the template: {patch}"
    );
    let event = api.event_posted(&deployment).await;
    assert_eq!(event["type"], "Normal");
    assert_eq!(event["reason"], "RestartedForInjection");
    assert!(
        event["note"]
            .as_str()
            .is_some_and(|n| n.starts_with("1 pod(s) ran without the aiflags proxy"))
    );
    assert_eq!(
        task.await.expect("task").expect("reconciled"),
        Action::requeue(RECHECK)
    );
    let metrics = prometheus::TextEncoder::new()
        .encode_to_string(&api.registry.gather())
        .expect("encode");
    assert!(
        metrics.contains("aiflags_operator_workload_restarts_total{kind=\"Deployment\"} 1"),
        "{metrics}"
    );

    // Its own restart raised the generation to 4: nothing more to do.
    let mut restarted = deployment.clone();
    restarted["metadata"]["generation"] = json!(4);
    restarted["metadata"]["annotations"] = json!({"aiflags.dev/restarted-for-injection": "3"});
    let action = reconcile::<Deployment>(meta_of(&restarted), ctx.clone())
        .await
        .expect("reconciled");
    assert_eq!(action, Action::await_change());
    drop(ctx);
    api.no_more_requests().await;
}

#[tokio::test]
async fn without_an_opt_in_nothing_is_read_or_written() {
    let (ctx, api) = context(&[namespace(json!({}))]);
    let deployment = workload("Deployment", "summarizer", json!({}));
    let action = reconcile::<Deployment>(meta_of(&deployment), ctx.clone())
        .await
        .expect("reconciled");
    assert_eq!(action, Action::await_change());
    let opted_out = workload(
        "Deployment",
        "summarizer",
        json!({"aiflags.dev/restart-to-inject": "disabled"}),
    );
    let (ctx2, api2) = context(&[namespace(restart_on())]);
    let action = reconcile::<Deployment>(meta_of(&opted_out), ctx2.clone())
        .await
        .expect("reconciled");
    assert_eq!(
        action,
        Action::await_change(),
        "the workload's disabled beats its namespace's enabled"
    );
    drop((ctx, ctx2));
    api.no_more_requests().await;
    api2.no_more_requests().await;
}

#[tokio::test]
async fn injected_pods_need_no_restart_and_are_checked_again_later() {
    let (ctx, mut api) = context(&[namespace(json!({}))]);
    let daemon_set = workload("DaemonSet", "collector", restart_on());
    let task = tokio::spawn(reconcile::<DaemonSet>(meta_of(&daemon_set), ctx.clone()));
    api.workload_read(&daemon_set).await;
    let terminating = pod("collector", false);
    let mut terminating = terminating;
    terminating["metadata"]["deletionTimestamp"] = json!("2025-01-01T00:00:00Z");
    api.pods_listed("collector", vec![pod("collector", true), terminating])
        .await;
    assert_eq!(
        task.await.expect("task").expect("reconciled"),
        Action::requeue(RECHECK)
    );
    drop(ctx);
    api.no_more_requests().await;
}

#[tokio::test]
async fn a_workload_whose_pods_would_not_be_injected_is_left_alone() {
    let mut ns = namespace(restart_on());
    ns.metadata.labels = None;
    let (ctx, mut api) = context(&[ns]);
    let deployment = workload("Deployment", "summarizer", json!({}));
    let task = tokio::spawn(reconcile::<Deployment>(meta_of(&deployment), ctx.clone()));
    api.workload_read(&deployment).await;
    assert_eq!(
        task.await.expect("task").expect("reconciled"),
        Action::await_change()
    );
    drop(ctx);
    api.no_more_requests().await;
}

#[tokio::test]
async fn a_rollout_in_progress_or_on_delete_updates_block_the_restart() {
    let (ctx, mut api) = context(&[namespace(restart_on())]);
    let mut rolling = workload("Deployment", "summarizer", json!({}));
    rolling["status"]["observedGeneration"] = json!(2);
    let task = tokio::spawn(reconcile::<Deployment>(meta_of(&rolling), ctx.clone()));
    api.workload_read(&rolling).await;
    assert_eq!(
        task.await.expect("task").expect("reconciled"),
        Action::requeue(RECHECK_SOON)
    );

    let mut on_delete = workload("StatefulSet", "ledger", json!({}));
    on_delete["spec"]["updateStrategy"] = json!({"type": "OnDelete"});
    let task = tokio::spawn(reconcile::<StatefulSet>(meta_of(&on_delete), ctx.clone()));
    api.workload_read(&on_delete).await;
    assert_eq!(
        task.await.expect("task").expect("reconciled"),
        Action::await_change()
    );
    drop(ctx);
    api.no_more_requests().await;
}

#[tokio::test]
async fn restarts_are_spaced_and_a_failed_one_gives_its_turn_back() {
    let (ctx, mut api) = context(&[namespace(restart_on())]);
    let first = workload("Deployment", "first", json!({}));
    let second = workload("StatefulSet", "second", json!({}));

    // The first restart is refused (someone changed the Deployment meanwhile).
    let task = tokio::spawn(reconcile::<Deployment>(meta_of(&first), ctx.clone()));
    api.workload_read(&first).await;
    api.pods_listed("first", vec![pod("first", false)]).await;
    api.restart_patched(&first, 409).await;
    assert!(task.await.expect("task").is_err());

    // So the second may go at once, and then the budget is spent.
    let task = tokio::spawn(reconcile::<StatefulSet>(meta_of(&second), ctx.clone()));
    api.workload_read(&second).await;
    api.pods_listed("second", vec![pod("second", false)]).await;
    api.restart_patched(&second, 200).await;
    api.event_posted(&second).await;
    assert_eq!(
        task.await.expect("task").expect("reconciled"),
        Action::requeue(RECHECK)
    );

    let task = tokio::spawn(reconcile::<Deployment>(meta_of(&first), ctx.clone()));
    api.workload_read(&first).await;
    api.pods_listed("first", vec![pod("first", false)]).await;
    let action = task.await.expect("task").expect("reconciled");
    let wait = action_delay(&action);
    assert!(wait > Duration::ZERO && wait <= SPACING, "{action:?}");
    drop(ctx);
    api.no_more_requests().await;
}

/// Action keeps its delay private, so it is found by comparison.
fn action_delay(action: &Action) -> Duration {
    (1..=SPACING.as_secs())
        .map(Duration::from_secs)
        .find(|delay| action == &Action::requeue(*delay))
        .unwrap_or_else(|| panic!("not a requeue of whole seconds within the spacing: {action:?}"))
}

#[test]
fn the_plan_reads_opt_ins_and_the_restart_record() {
    let map = |pairs: &[(&str, &str)]| {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    let on = [("aiflags.dev/restart-to-inject", "enabled")];
    assert_eq!(plan(&map(&[]), Some(1), &map(&[])), Plan::NotOptedIn);
    assert_eq!(plan(&map(&on), Some(1), &map(&[])), Plan::Check);
    assert_eq!(plan(&map(&[]), Some(1), &map(&on)), Plan::Check);
    let record = |g: &'static str| [on[0], ("aiflags.dev/restarted-for-injection", g)];
    assert_eq!(
        plan(&map(&record("5")), Some(5), &map(&[])),
        Plan::AlreadyRestarted
    );
    assert_eq!(
        plan(&map(&record("5")), Some(6), &map(&[])),
        Plan::AlreadyRestarted
    );
    assert_eq!(
        plan(&map(&record("5")), Some(7), &map(&[])),
        Plan::Check,
        "changed since: a new generation"
    );
    assert_eq!(plan(&map(&record("junk")), Some(5), &map(&[])), Plan::Check);
}

#[test]
fn the_budget_spaces_restarts() {
    let start = std::time::Instant::now();
    let mut budget = Budget::new(Duration::from_secs(30));
    assert_eq!(budget.take(start), Ok(()));
    assert_eq!(
        budget.take(start + Duration::from_secs(10)),
        Err(Duration::from_secs(20))
    );
    assert_eq!(budget.take(start + Duration::from_secs(30)), Ok(()));
    budget.give_back(start + Duration::from_secs(31));
    assert_eq!(budget.take(start + Duration::from_secs(31)), Ok(()));
}
