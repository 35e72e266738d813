//! Large namespaces against a mock API server: the config is stored
//! gzipped when large, and flags that cannot fit even compressed are held
//! back with a clear status and Event while the rest keeps serving.

use std::sync::Arc;

use aiflags_api::{AIFeatureFlag, MAX_CONFIG_MAP_BYTES, SidecarConfig, encode_config};
use serde_json::json;

use super::fixtures::{CacheBuilder, FlagBuilder};
use super::mock_api::finished;
use super::scenarios::healthy_status;
use super::{Context, reconcile};

/// `count` flags, `flag-0000` the oldest, each with `padding` bytes of noise.
fn namespace(count: usize, padding: usize) -> Vec<AIFeatureFlag> {
    (0..count)
        .map(|i| {
            let flag = AIFeatureFlag::test()
                .named(&format!("flag-{i:04}"))
                .created(i as i64)
                .finalized();
            if padding > 0 {
                flag.padded(padding)
            } else {
                flag
            }
        })
        .collect()
}

fn refs(flags: &[AIFeatureFlag]) -> Vec<&AIFeatureFlag> {
    flags.iter().collect()
}

async fn a_namespace_of(count: usize) {
    let (ctx, server, mut cache) = Context::test();
    let flags = namespace(count, 0);
    let reconciled = flags[0].clone();
    cache.holds(&refs(&flags));
    let scenario = tokio::spawn(async move {
        let server = server.config_map_read(None).await;
        let (server, config) = server.config_map_applied().await;
        assert_eq!(config.flags.len(), count);
        assert_eq!(encode_config(&config).format(), "gzip");
        let (server, status) = server
            .flag_read(&reconciled)
            .await
            .status_applied(&reconciled)
            .await;
        assert_eq!(status, healthy_status(&config.revision));
        let (server, _) = server.event_posted(&reconciled, "Normal", "Compiled").await;
        server.reader_applied().await;
    });

    let result = reconcile(Arc::new(flags[0].clone()), ctx.clone()).await;
    finished(scenario).await;
    assert!(result.is_ok(), "{result:?}");
    let metrics = ctx.metrics.encode();
    assert!(metrics.contains(&format!(
        "aiflags_operator_config_flags{{namespace=\"shop\"}} {count}"
    )));
    assert!(metrics.contains("aiflags_operator_config_held_back_flags{namespace=\"shop\"} 0"));
}

#[tokio::test]
async fn a_thousand_flags_are_stored_gzipped() {
    a_namespace_of(1_000).await;
}

#[tokio::test]
async fn five_thousand_flags_are_stored_gzipped() {
    a_namespace_of(5_000).await;
}

#[tokio::test]
async fn flags_that_cannot_fit_are_held_back_and_say_so_while_the_rest_serves() {
    let (ctx, server, mut cache) = Context::test();
    // 600 bytes of noise each: about 1.5 MiB for the namespace, compressed.
    let flags = namespace(5_000, 600);
    let (oldest, newest) = (flags[0].clone(), flags[4_999].clone());
    cache.holds(&refs(&flags));
    let (served_tx, served_rx) = tokio::sync::oneshot::channel::<SidecarConfig>();
    let scenario = tokio::spawn(async move {
        // The newest flag's reconcile: what fits is written, oldest first.
        let server = server.config_map_read(None).await;
        let (server, config) = server.config_map_applied().await;
        let admitted = config.flags.len();
        assert!((1_000..5_000).contains(&admitted), "{admitted}");
        assert!(encode_config(&config).stored_len() <= MAX_CONFIG_MAP_BYTES);
        let names: Vec<&str> = config.flags.iter().map(|f| f.key.as_str()).collect();
        let oldest_names: Vec<String> = (0..admitted).map(|i| format!("flag-{i:04}")).collect();
        assert_eq!(names, oldest_names);

        let (server, status) = server
            .flag_read(&newest)
            .await
            .status_applied(&newest)
            .await;
        let ready = &status["conditions"][0];
        assert_eq!(
            (&ready["type"], &ready["status"], &ready["reason"]),
            (&json!("Ready"), &json!("False"), &json!("ConfigTooLarge"))
        );
        let message = ready["message"].as_str().unwrap_or_default();
        assert!(
            message.starts_with("generation 1 compiled but is left out of aiflags-config: with every flag the namespace's config would take "),
            "{message}"
        );
        assert!(
            message.contains("(gzip), over the ConfigMap limit of 1048576"),
            "{message}"
        );
        assert_eq!(status["phase"], "Degraded");
        assert!(status.get("servingGeneration").is_none(), "{status}");
        assert!(status.get("configRevision").is_none(), "{status}");
        assert_eq!(status["message"], format!("nothing is served: {message}"));
        let (server, note) = server
            .event_posted(&newest, "Warning", "ConfigTooLarge")
            .await;
        assert_eq!(note, format!("nothing is served: {message}"));
        let server = server.reader_applied().await;

        // The oldest flag's reconcile finds that config and keeps it as is.
        let server = server.config_map_read(Some(&config)).await;
        let (server, again) = server.config_map_applied().await;
        assert_eq!(again, config);
        let (server, status) = server
            .flag_read(&oldest)
            .await
            .status_applied(&oldest)
            .await;
        assert_eq!(status["conditions"][0]["reason"], "Compiled");
        assert_eq!(status["configRevision"], config.revision.as_str());
        server.event_posted(&oldest, "Normal", "Compiled").await;
        let _ = served_tx.send(config);
    });

    let held_back = reconcile(Arc::new(flags[4_999].clone()), ctx.clone()).await;
    let kept = reconcile(Arc::new(flags[0].clone()), ctx.clone()).await;
    finished(scenario).await;
    // Held back is a status, not an error to retry.
    assert!(held_back.is_ok() && kept.is_ok(), "{held_back:?} {kept:?}");
    let served = served_rx.await.expect("the scenario ran");
    let metrics = ctx.metrics.encode();
    assert!(metrics.contains(&format!(
        "aiflags_operator_config_held_back_flags{{namespace=\"shop\"}} {}",
        5_000 - served.flags.len()
    )));
    assert!(
        metrics.contains("aiflags_operator_flag_ready{flag=\"flag-4999\",namespace=\"shop\"} 0")
    );
}

#[tokio::test]
async fn switching_form_removes_the_other_key_when_someone_kept_it() {
    let (ctx, server, mut cache) = Context::test();
    let flags = namespace(1_000, 0);
    let small = super::tests::compiled(&[&flags[0]]);
    let reconciled = flags[0].clone();
    cache.holds(&refs(&flags));
    let scenario = tokio::spawn(async move {
        // Served as plain JSON, which a `kubectl edit` also claims.
        let kept = super::config_map::desired_config_map("shop", &encode_config(&small));
        let server = server.config_map_read(Some(&small)).await;
        let (server, config) = server.config_map_applied_beside(Some(&kept)).await;
        assert_eq!(encode_config(&config).format(), "gzip");
        let server = server
            .stale_key_removed(json!({"data": {"config.json": null}}))
            .await;
        let (server, _) = server
            .flag_read(&reconciled)
            .await
            .status_applied(&reconciled)
            .await;
        let (server, _) = server.event_posted(&reconciled, "Normal", "Compiled").await;
        server.reader_applied().await;
    });

    let result = reconcile(Arc::new(flags[0].clone()), ctx).await;
    finished(scenario).await;
    assert!(result.is_ok(), "{result:?}");
}

/// Server-side apply drops the key this operator applied before: no second
/// request.
#[tokio::test]
async fn a_plain_switch_needs_no_removal() {
    let (ctx, server, mut cache) = Context::test();
    let flags = namespace(1_000, 0);
    let small = super::tests::compiled(&[&flags[0]]);
    let reconciled = flags[0].clone();
    cache.holds(&refs(&flags));
    let scenario = tokio::spawn(async move {
        let server = server.config_map_read(Some(&small)).await;
        let (server, _) = server.config_map_applied().await;
        // Next comes the flag's GET, not a ConfigMap patch.
        let (server, _) = server
            .flag_read(&reconciled)
            .await
            .status_applied(&reconciled)
            .await;
        let (server, _) = server.event_posted(&reconciled, "Normal", "Compiled").await;
        server.reader_applied().await;
    });

    let result = reconcile(Arc::new(flags[0].clone()), ctx).await;
    finished(scenario).await;
    assert!(result.is_ok(), "{result:?}");
}
