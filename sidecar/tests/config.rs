//! Config reloads through the mounted ConfigMap file.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use support::{Stack, compile, eventually, within};

fn split(candidate: u32) -> String {
    format!(
        r#"
apiVersion: aiflags.dev/v1alpha1
kind: AIFeatureFlag
metadata: {{name: summarizer, namespace: shop}}
spec:
  match: {{models: ["gpt-4o-mini"]}}
  defaultVariant: stable
  variants:
    - {{name: stable, model: gpt-4o-mini}}
    - {{name: candidate, model: gpt-4.1-mini}}
  rollout:
    stickyBy: ["header:x-user-id"]
    weights: {{stable: {}, candidate: {candidate}}}
"#,
        100 - candidate
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_symlink_swap_under_load_loses_no_request_and_changes_the_split() {
    let stack = Stack::config_map(&split(0)).start().await;
    let stop = Arc::new(AtomicBool::new(false));
    let (sent, failed, candidates) = (
        Arc::new(AtomicU32::new(0)),
        Arc::new(AtomicU32::new(0)),
        Arc::new(AtomicU32::new(0)),
    );
    let mut load = Vec::new();
    for worker in 0..4 {
        let (client, stop) = (stack.client.clone(), stop.clone());
        let (sent, failed, candidates) = (sent.clone(), failed.clone(), candidates.clone());
        load.push(tokio::spawn(async move {
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                let reply = client
                    .chat("gpt-4o-mini")
                    .user(&format!("u{worker}-{i}"))
                    .send()
                    .await;
                sent.fetch_add(1, Ordering::Relaxed);
                if reply.status != 200 {
                    failed.fetch_add(1, Ordering::Relaxed);
                }
                if reply.variant() == "candidate" {
                    candidates.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    // Traffic under the old config first: a split with no candidate.
    eventually("requests served before the swap", || {
        let sent = sent.clone();
        async move { sent.load(Ordering::Relaxed) >= 40 }
    })
    .await;
    assert_eq!(candidates.load(Ordering::Relaxed), 0);
    let reloads = stack
        .metric("aiflags_config_reloads_total", &[("result", "ok")])
        .await;
    stack.swap_config(&compile(&split(100)).to_json());
    eventually("the new split", || {
        let candidates = candidates.clone();
        async move { candidates.load(Ordering::Relaxed) >= 50 }
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    for worker in load {
        within("load worker", worker).await.unwrap();
    }
    assert_eq!(failed.load(Ordering::Relaxed), 0);
    let config = stack.admin("/config").await.json();
    assert_eq!(config["revision"], compile(&split(100)).revision);
    let after = stack
        .metric("aiflags_config_reloads_total", &[("result", "ok")])
        .await;
    assert_eq!(after, reloads + 1.0, "one swap, one reload");
}

#[tokio::test]
async fn an_invalid_document_leaves_the_old_config_serving() {
    let stack = Stack::config_map(&split(100)).start().await;
    let revision = stack.admin("/config").await.json()["revision"].clone();
    let failed = |n: f64| {
        let stack = &stack;
        move || async move {
            stack
                .metric("aiflags_config_reloads_total", &[("result", "error")])
                .await
                >= n
        }
    };
    stack.swap_config(r#"{"schema": "aiflags.dev/config/v2", "revision": "x", "flags": []}"#);
    eventually("the unknown schema to be refused", failed(1.0)).await;
    stack.swap_config("{ not json");
    eventually("the broken document to be refused", failed(2.0)).await;
    assert_eq!(
        stack.chat("gpt-4o-mini").user("a").send().await.variant(),
        "candidate"
    );
    assert_eq!(stack.admin("/config").await.json()["revision"], revision);
    assert_eq!(stack.admin("/readyz").await.status, 200);
}

#[tokio::test]
async fn local_flag_file_changes_are_picked_up() {
    let stack = Stack::flags(&split(0)).start().await;
    assert_eq!(stack.admin("/readyz").await.status, 200);
    assert_eq!(stack.admin("/healthz").await.status, 200);
    std::fs::write(stack.dir.path().join("flags.yaml"), split(100)).unwrap();
    eventually("the local flags reload", || async {
        stack.chat("gpt-4o-mini").user("a").send().await.variant() == "candidate"
    })
    .await;
}
