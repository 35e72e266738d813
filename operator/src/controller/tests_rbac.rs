//! The Role and RoleBinding that let a namespace's sidecars read its
//! ConfigMap, against a mock API server: applied once per namespace per
//! resync period, retried when refused, deleted with the last flag.

use std::sync::Arc;
use std::time::{Duration, Instant};

use aiflags_api::{AIFeatureFlag, FlagInput, compile};
use kube::runtime::controller::Action;

use super::fixtures::{CacheBuilder, FlagBuilder, NAMESPACE};
use super::mock_api::finished;
use super::scenarios::Scenario;
use super::tests::{compiled, reconciled};
use super::{Context, RESYNC, reconcile};

#[tokio::test]
async fn the_reader_is_due_once_per_resync_period_per_namespace() {
    let (ctx, _server, _cache) = Context::test();
    let start = Instant::now();
    assert!(ctx.reader_due(NAMESPACE, start));
    ctx.reader_applied(NAMESPACE, Some(start));
    assert!(!ctx.reader_due(NAMESPACE, start + Duration::from_secs(1)));
    assert!(ctx.reader_due("other", start));
    assert!(ctx.reader_due(NAMESPACE, start + RESYNC));
    ctx.reader_applied(NAMESPACE, None);
    assert!(ctx.reader_due(NAMESPACE, start));
}

#[tokio::test]
async fn a_refused_reader_fails_the_reconcile_after_the_status_and_is_retried() {
    let (ctx, server, mut cache) = Context::test();
    let flag = AIFeatureFlag::test().finalized();
    let served = compiled(&[&flag]);
    let flag = reconciled(flag, &served);
    cache.holds(&[&flag]);
    let scenario = tokio::spawn(async move {
        let server = server.config_map_read(Some(&served)).await;
        let (server, _) = server.config_map_applied().await;
        let server = server.reader_refused(403).await;
        // The next reconcile applies it again.
        let server = server.config_map_read(Some(&served)).await;
        let (server, _) = server.config_map_applied().await;
        server.reader_applied().await;
    });

    let refused = reconcile(Arc::new(flag.clone()), ctx.clone()).await;
    let retried = reconcile(Arc::new(flag), ctx.clone()).await;
    finished(scenario).await;
    let error = refused.expect_err("the Role was refused");
    assert_eq!(error.metric_reason(), "forbidden");
    assert_eq!(
        retried.expect("applied"),
        Action::requeue(Duration::from_secs(300))
    );
}

#[tokio::test]
async fn a_reader_already_gone_does_not_hold_the_last_flag() {
    let (ctx, server, mut cache) = Context::test();
    let deleted = AIFeatureFlag::test().finalized();
    let served = compile(Some(NAMESPACE), &[FlagInput::from_resource(&deleted)], None).config;
    let deleted = deleted.deleting();
    let scenario = server.run(Scenario::DeleteLast {
        deleted: deleted.clone(),
        served,
        reader_code: 404,
    });

    cache.holds(&[&deleted]);
    let result = reconcile(Arc::new(deleted), ctx).await;
    finished(scenario).await;
    assert_eq!(result.expect("cleaned up"), Action::await_change());
}
