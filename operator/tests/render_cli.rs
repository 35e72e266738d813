//! `aiflags-operator render` on the project's own examples, as a user runs it.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)] // test helpers may fail loudly

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use aiflags_api::{SidecarConfig, parse_manifests};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Runs `aiflags-operator render -f PATH...` from the workspace root.
fn render(paths: &[&str]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_aiflags-operator"));
    command.current_dir(workspace()).arg("render");
    for path in paths {
        command.args(["-f", path]);
    }
    command.output().expect("the binary runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8(bytes.to_vec()).expect("utf-8")
}

/// `examples/*.yaml` (relative to the workspace), sorted.
fn yaml_files(dir: &str) -> Vec<String> {
    let mut files: Vec<String> = std::fs::read_dir(workspace().join(dir))
        .expect("the directory exists")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        .map(|p| {
            format!(
                "{dir}/{}",
                p.file_name().and_then(|n| n.to_str()).unwrap_or_default()
            )
        })
        .collect();
    files.sort();
    files
}

/// The printed JSON as namespace → config, whether one or several namespaces.
fn configs(stdout: &str) -> BTreeMap<String, SidecarConfig> {
    let value: serde_json::Value = serde_json::from_str(stdout).expect("JSON on stdout");
    let parse = |v: &serde_json::Value| {
        SidecarConfig::from_json(v.to_string().as_bytes()).expect("a valid config document")
    };
    if value.get("schema").is_some() {
        let config = parse(&value);
        BTreeMap::from([(config.namespace.clone().unwrap_or_default(), config)])
    } else {
        let object = value.as_object().expect("namespace → config");
        object
            .iter()
            .map(|(ns, v)| (ns.clone(), parse(v)))
            .collect()
    }
}

#[test]
fn the_valid_examples_render_to_a_config_holding_every_flag() {
    let files = yaml_files("examples");
    for required in ["summarizer-split", "support-canary", "assistant-fallback"] {
        assert!(
            files.contains(&format!("examples/{required}.yaml")),
            "examples/{required}.yaml is missing: {files:?}"
        );
    }
    let output = render(&["examples/"]);
    assert!(output.status.success(), "stderr: {}", text(&output.stderr));
    assert_eq!(text(&output.stderr), "");
    let configs = configs(&text(&output.stdout));

    let mut expected = 0;
    for file in &files {
        let source = std::fs::read_to_string(workspace().join(file)).expect("readable");
        let (manifests, errors) = parse_manifests(file, &source);
        assert!(errors.is_empty(), "{errors:?}");
        for manifest in manifests {
            let meta = &manifest.flag.metadata;
            let namespace = meta.namespace.as_deref().unwrap_or("default");
            let name = meta.name.as_deref().unwrap_or_default();
            let flag = configs
                .get(namespace)
                .and_then(|c| c.flag(name))
                .unwrap_or_else(|| panic!("{file}: {namespace}/{name} is not in the output"));
            assert_eq!(flag.generation, 1);
            expected += 1;
        }
    }
    let rendered: usize = configs.values().map(|c| c.flags.len()).sum();
    assert_eq!(rendered, expected, "exactly the example flags are rendered");
}

#[test]
fn one_file_renders_to_that_namespace_config() {
    let output = render(&["examples/summarizer-split.yaml"]);
    assert!(output.status.success(), "stderr: {}", text(&output.stderr));
    let value: serde_json::Value = serde_json::from_slice(&output.stdout).expect("JSON");
    assert_eq!(value["schema"], "aiflags.dev/config/v1");
    let configs = configs(&text(&output.stdout));
    assert_eq!(configs.values().map(|c| c.flags.len()).sum::<usize>(), 1);
}

#[test]
fn the_invalid_examples_fail_with_every_expected_message() {
    let output = render(&["examples/invalid"]);
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "stderr: {stderr}");
    assert_eq!(text(&output.stdout), "", "nothing is rendered");

    let files = yaml_files("examples/invalid");
    assert!(!files.is_empty());
    for file in files {
        let source = std::fs::read_to_string(workspace().join(&file)).expect("readable");
        let expected: Vec<&str> = source
            .lines()
            .filter_map(|l| l.trim().strip_prefix("# expect:"))
            .map(str::trim)
            .collect();
        assert!(!expected.is_empty(), "{file} has no `# expect:` line");
        for message in expected {
            let reported = stderr.lines().any(|line| {
                line.starts_with(&format!("{file} (document ")) && line.ends_with(message)
            });
            assert!(reported, "{file}: expected `{message}` in:\n{stderr}");
        }
    }
}

#[test]
fn a_missing_file_is_reported_and_fails() {
    let output = render(&["examples/no-such-flag.yaml"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(text(&output.stderr).starts_with("examples/no-such-flag.yaml: "));
}

#[test]
fn render_requires_a_file() {
    let output = render(&[]);
    assert!(!output.status.success());
    assert!(text(&output.stderr).contains("--filename"));
}
