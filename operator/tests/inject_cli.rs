//! `aiflags-operator inject`, as a user previews what the webhook does.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)] // test helpers may fail loudly

use std::io::Write;
use std::process::{Command, Output, Stdio};

use k8s_openapi::api::core::v1::Pod;

const POD: &str = "\
apiVersion: v1
kind: Pod
metadata: {name: app, namespace: shop, labels: {app: summarizer}}
spec:
  containers:
    - {name: app, image: python:3.12}
";

/// Runs `aiflags-operator inject -f - ARGS...` with `manifest` on stdin.
fn inject(manifest: &str, args: &[&str]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_aiflags-operator"))
        .args(["inject", "-f", "-"])
        .args(args)
        .env_remove("AIFLAGS_INJECTION_CONFIG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary runs");
    // A refusal of the arguments can exit before reading stdin: the pipe
    // closing under the write is then expected, and the output says why.
    match child
        .stdin
        .take()
        .expect("stdin")
        .write_all(manifest.as_bytes())
    {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
        written => written.expect("write"),
    }
    child.wait_with_output().expect("exits")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8(bytes.to_vec()).expect("utf-8")
}

#[test]
fn prints_the_injected_pod_for_an_opted_in_namespace() {
    let out = inject(POD, &["--namespace-label", "aiflags.dev/inject=enabled"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let pod: Pod = serde_yaml::from_slice(&out.stdout).expect("a Pod on stdout");
    let init = pod
        .spec
        .and_then(|s| s.init_containers)
        .expect("init containers");
    assert_eq!(init[0].name, "aiflags-proxy");
    assert_eq!(text(&out.stderr), "");
}

#[test]
fn says_why_a_pod_is_left_alone() {
    let out = inject(POD, &[]);
    assert!(out.status.success());
    assert_eq!(
        text(&out.stderr),
        "not injected: neither the pod nor its namespace is labelled aiflags.dev/inject=enabled\n"
    );
    let pod: Pod = serde_yaml::from_slice(&out.stdout).expect("a Pod on stdout");
    assert_eq!(pod.spec.expect("spec").init_containers, None);
}

#[test]
fn a_pod_that_would_go_without_the_sidecar_fails_with_every_reason() {
    let annotated = POD.replace(
        "labels: {app: summarizer}",
        "labels: {app: summarizer, aiflags.dev/inject: enabled}, \
         annotations: {proxy.aiflags.dev/workers: \"0\", proxy.aiflags.dev/image: \"\"}",
    );
    let out = inject(&annotated, &[]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(out.stdout, b"");
    assert_eq!(
        text(&out.stderr),
        "the webhook would admit this pod without the aiflags proxy:\n  \
         annotation proxy.aiflags.dev/image: \"\" is not an image reference\n  \
         annotation proxy.aiflags.dev/workers: 0 is not between 1 and 64\n"
    );
}

#[test]
fn rejects_what_is_not_a_pod_and_a_bad_label() {
    let out = inject("kind: Deployment\n", &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("the manifest is not a Pod"));
    let out = inject(POD, &["--namespace-label", "novalue"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stderr),
        "--namespace-label \"novalue\": expected key=value\n"
    );
}
