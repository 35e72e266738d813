//! The Kubernetes watch config source, against a stand-in API server: the
//! sidecar follows updates and deletes, relists after a watch error and a
//! `410 Gone`, keeps serving while the API is down (the mounted file takes
//! over), and comes back to the watch. The kill switch's way from the API to
//! traffic is timed (printed; docs/install.md records it).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::support;

use std::time::{Duration, Instant};

use support::fake_api::{FakeApi, NextWatch};
use support::{Stack, compile, within};

fn flag(state: &str, candidate: u32) -> String {
    format!(
        r#"
apiVersion: aiflags.dev/v1alpha1
kind: AIFeatureFlag
metadata: {{name: summarizer, namespace: shop}}
spec:
  state: {state}
  match: {{models: ["gpt-4o-mini"]}}
  defaultVariant: stable
  variants:
    - {{name: stable, model: gpt-4o-mini}}
    - {{name: candidate, model: gpt-4.1-mini}}
  rollout:
    weights: {{stable: {}, candidate: {candidate}}}
"#,
        100 - candidate
    )
}

fn config(state: &str, candidate: u32) -> String {
    compile(&flag(state, candidate)).to_json()
}

fn revision(state: &str, candidate: u32) -> String {
    compile(&flag(state, candidate)).revision
}

/// Waits until the sidecar serves `expected`.
async fn serving(stack: &Stack, expected: &str) {
    within(&format!("revision {expected}"), async {
        loop {
            if stack.admin("/config").await.json()["revision"] == expected {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
}

async fn variant(stack: &Stack) -> String {
    stack.chat("gpt-4o-mini").send().await.variant().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_watch_follows_the_config_map_through_errors_and_outages() {
    let mut api = FakeApi::start("shop", "aiflags-config", Some(config("Enabled", 100))).await;
    // The mounted file lags behind (kubelet's minute): it still holds 0%.
    let stack = Stack::config_map(&flag("Enabled", 0))
        .arg("--watch-config-map=aiflags-config")
        .arg("--namespace=shop")
        .arg(&format!("--kube-api-url={}", api.url()))
        .start()
        .await;
    serving(&stack, &revision("Enabled", 100)).await;
    assert_eq!(variant(&stack).await, "candidate");
    let source = stack.admin("/config").await.json()["source"].clone();
    assert_eq!(source, "watch:shop/aiflags-config");

    // The kill switch, from the API server to traffic.
    let started = Instant::now();
    api.set(Some(config("Disabled", 100)));
    serving(&stack, &revision("Disabled", 100)).await;
    let elapsed = started.elapsed();
    assert_eq!(variant(&stack).await, "stable");
    eprintln!("kill switch: API event to the sidecar serving the default in {elapsed:?}");

    // A watch that fails, then one that answers 410 Gone: the watcher lists
    // again and converges on what the API holds.
    let lists = api.lists();
    api.next_watch(NextWatch::Fail);
    api.end_watches();
    api.set(Some(config("Enabled", 30)));
    serving(&stack, &revision("Enabled", 30)).await;
    api.next_watch(NextWatch::Gone);
    api.end_watches();
    api.set(Some(config("Enabled", 60)));
    serving(&stack, &revision("Enabled", 60)).await;
    assert!(api.lists() > lists, "relisted after the errors");

    // The API goes away: what the watch said last keeps serving — the
    // mounted file, a minute behind, must not undo it — and a change to the
    // file applies.
    api.stop();
    within("the watch to be reported lost", async {
        while !stack
            .admin("/metrics")
            .await
            .text()
            .contains("aiflags_config_watch_up 0")
        {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert_eq!(
        stack.admin("/config").await.json()["revision"],
        revision("Enabled", 60).as_str()
    );
    assert_eq!(stack.chat("gpt-4o-mini").send().await.status, 200);
    stack.swap_config(&config("Enabled", 10));
    serving(&stack, &revision("Enabled", 10)).await;
    let source = stack.admin("/config").await.json()["source"].clone();
    assert!(source.as_str().unwrap().starts_with("file:"), "{source}");

    // Back: the watch serves again, and a deleted ConfigMap is no flags.
    api.set(Some(config("Enabled", 90)));
    api.restart().await;
    serving(&stack, &revision("Enabled", 90)).await;
    assert!(
        stack
            .admin("/metrics")
            .await
            .text()
            .contains("aiflags_config_watch_up 1")
    );
    api.set(None);
    let empty = aiflags_api::SidecarConfig::empty(None).revision;
    serving(&stack, &empty).await;
    let reply = stack.chat("gpt-4o-mini").send().await;
    assert_eq!(reply.status, 200);
    assert_eq!(
        reply.header("x-aiflags-flag"),
        "",
        "no flag: passed through"
    );
}

#[tokio::test]
async fn a_namespace_without_the_config_map_serves_no_flags_and_is_ready() {
    let api = FakeApi::start("shop", "aiflags-config", None).await;
    let stack = Stack::bare()
        .arg("--watch-config-map=aiflags-config")
        .arg("--namespace=shop")
        .arg(&format!("--kube-api-url={}", api.url()))
        .start()
        .await;
    assert_eq!(stack.admin("/readyz").await.status, 200);
    api.set(Some(config("Enabled", 100)));
    serving(&stack, &revision("Enabled", 100)).await;
    assert_eq!(variant(&stack).await, "candidate");
}
