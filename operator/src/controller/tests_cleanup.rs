//! The finalizer's cleanup against a mock API server, where the namespace
//! itself may be going away.

use std::sync::Arc;

use aiflags_api::{AIFeatureFlag, FlagInput, compile};
use kube::runtime::controller::Action;

use super::fixtures::{CacheBuilder, FlagBuilder, NAMESPACE};
use super::mock_api::finished;
use super::scenarios::Scenario;
use super::{Context, reconcile};

#[tokio::test]
async fn delete_in_a_terminating_namespace_still_removes_the_finalizer() {
    // 403: the namespace refuses to create the ConfigMap again;
    // 404: the namespace is already gone.
    for code in [403, 404] {
        let (ctx, server, mut cache) = Context::test();
        let deleted = AIFeatureFlag::test().finalized().deleting();
        let scenario = server.run(Scenario::DeleteInTerminatingNamespace {
            deleted: deleted.clone(),
            code,
        });

        cache.holds(&[&deleted]);
        let result = reconcile(Arc::new(deleted), ctx.clone()).await;
        finished(scenario).await;
        assert_eq!(
            result.expect("cleaned up"),
            Action::await_change(),
            "{code}"
        );
        assert!(!ctx.metrics.encode().contains("flag=\"summarizer\""));
        assert!(!ctx.has_namespace_lock(NAMESPACE), "{code}");
    }
}

#[tokio::test]
async fn deleting_the_last_flag_forgets_its_namespace_lock() {
    let (ctx, server, mut cache) = Context::test();
    let deleted = AIFeatureFlag::test().finalized();
    let served = compile(Some(NAMESPACE), &[FlagInput::from_resource(&deleted)], None).config;
    let deleted = deleted.deleting();
    let scenario = server.run(Scenario::DeleteLast {
        deleted: deleted.clone(),
        served,
        reader_code: 200,
    });

    cache.holds(&[&deleted]);
    let result = reconcile(Arc::new(deleted), ctx.clone()).await;
    finished(scenario).await;
    assert_eq!(result.expect("cleaned up"), Action::await_change());
    assert!(!ctx.has_namespace_lock(NAMESPACE));
}

#[tokio::test]
async fn a_namespace_lock_someone_holds_or_awaits_is_kept() {
    let (ctx, _server, _cache) = Context::test();
    let waiting = ctx.namespace_lock(NAMESPACE);
    let mine = ctx.namespace_lock(NAMESPACE);
    let _guard = mine.lock().await;
    ctx.forget_namespace_lock(NAMESPACE, &mine);
    assert!(ctx.has_namespace_lock(NAMESPACE));
    // The waiter still serializes with the holder: same mutex.
    assert!(Arc::ptr_eq(&waiting, &ctx.namespace_lock(NAMESPACE)));

    drop(waiting);
    ctx.forget_namespace_lock(NAMESPACE, &mine);
    assert!(!ctx.has_namespace_lock(NAMESPACE));
    // A forgotten lock never removes the entry that replaced it, even when
    // its own count looks unshared.
    let _newer = ctx.namespace_lock(NAMESPACE);
    let _second_handle = mine.clone();
    ctx.forget_namespace_lock(NAMESPACE, &mine);
    assert!(ctx.has_namespace_lock(NAMESPACE));
}

#[tokio::test]
async fn a_forbidden_update_of_an_existing_config_keeps_the_finalizer() {
    let (ctx, server, mut cache) = Context::test();
    let deleted = AIFeatureFlag::test().finalized();
    let served = compile(Some(NAMESPACE), &[FlagInput::from_resource(&deleted)], None).config;
    let deleted = deleted.deleting();
    let scenario = server.run(Scenario::DeleteForbidden(served));

    cache.holds(&[&deleted]);
    let result = reconcile(Arc::new(deleted), ctx.clone()).await;
    // The scenario ends without the finalizer's removal: the config still
    // serves the flag.
    finished(scenario).await;
    let error = result.expect_err("the flag is still served");
    assert_eq!(error.metric_reason(), "forbidden");
}
