//! Sticky splits through the real request path.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::support;
use crate::support::process;

use std::collections::{HashMap, HashSet};

use aiflags_devtools::mock_upstream::MockUpstream;
use futures::StreamExt;
use process::SidecarProcess;
use support::{Stack, TestClient};

fn three_way(weights: (u32, u32, u32)) -> String {
    format!(
        r#"
apiVersion: aiflags.dev/v1alpha1
kind: AIFeatureFlag
metadata: {{name: summarizer}}
spec:
  match: {{models: ["gpt-4o-mini"]}}
  defaultVariant: stable
  variants:
    - {{name: stable, model: gpt-4o-mini}}
    - {{name: candidate, model: gpt-4.1-mini}}
    - {{name: wild, model: gpt-5-nano}}
  rollout:
    stickyBy: ["header:x-user-id"]
    weights: {{stable: {}, candidate: {}, wild: {}}}
"#,
        weights.0, weights.1, weights.2
    )
}

/// The variant each user gets, asking `concurrency` at a time.
async fn variants_of(
    client: &TestClient,
    users: impl Iterator<Item = String>,
) -> HashMap<String, String> {
    futures::stream::iter(users)
        .map(|user| async move {
            let reply = client.chat("gpt-4o-mini").user(&user).send().await;
            assert_eq!(reply.status, 200, "{}", reply.text());
            (user, reply.variant().to_string())
        })
        .buffer_unordered(32)
        .collect()
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_users_land_within_one_and_a_half_points_of_each_weight() {
    let stack = Stack::flags(&three_way((50, 30, 20))).start().await;
    let users = (0..10_000).map(|i| format!("user-{i}"));
    let assigned = variants_of(&stack.client, users).await;
    let mut counts: HashMap<&str, u32> = HashMap::new();
    for variant in assigned.values() {
        *counts.entry(variant).or_default() += 1;
    }
    for (variant, weight) in [("stable", 50.0), ("candidate", 30.0), ("wild", 20.0)] {
        let share = f64::from(counts.get(variant).copied().unwrap_or(0)) / 100.0;
        assert!(
            (share - weight).abs() <= 1.5,
            "{variant}: {share}% for weight {weight}% ({counts:?})"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_gets_the_same_variant_from_two_separate_sidecar_processes() {
    let mock = MockUpstream::start("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let flags = dir.path().join("flags.yaml");
    std::fs::write(&flags, three_way((50, 30, 20))).unwrap();
    let first = SidecarProcess::flags(&flags, &mock.url()).start().await;
    let second = SidecarProcess::flags(&flags, &mock.url()).start().await;
    assert_ne!(first.addr, second.addr);

    let users = || (0..200).map(|i| format!("sticky-{i}"));
    let from_first = variants_of(&first.client, users()).await;
    let from_second = variants_of(&second.client, users()).await;

    assert_eq!(from_first.len(), 200);
    for (user, variant) in &from_first {
        assert_eq!(
            from_second.get(user),
            Some(variant),
            "{user} got {variant} from one sidecar process and {:?} from the other",
            from_second.get(user)
        );
    }
    let distinct: HashSet<&str> = from_first.values().map(String::as_str).collect();
    assert_eq!(
        distinct,
        HashSet::from(["stable", "candidate", "wild"]),
        "every variant should appear"
    );
}

#[tokio::test]
async fn raising_a_canary_from_ten_to_twenty_percent_keeps_every_earlier_canary_user() {
    let before = Stack::flags(&three_way((90, 10, 0))).start().await;
    let after = Stack::flags(&three_way((80, 20, 0))).start().await;
    let users = || (0..2_000).map(|i| format!("canary-{i}"));
    let at_ten = variants_of(&before.client, users()).await;
    let at_twenty = variants_of(&after.client, users()).await;
    let canary = |m: &HashMap<String, String>| m.values().filter(|v| *v == "candidate").count();
    for (user, variant) in &at_ten {
        if variant == "candidate" {
            assert_eq!(at_twenty[user], "candidate", "{user} left the canary");
        }
    }
    assert!(
        canary(&at_twenty) > canary(&at_ten) * 3 / 2,
        "{} vs {}",
        canary(&at_twenty),
        canary(&at_ten)
    );
}
