use super::*;

fn flag(namespace: &str, name: &str, weights: &str) -> String {
    format!(
        "apiVersion: aiflags.dev/v1alpha1
kind: AIFeatureFlag
metadata: {{name: {name}, namespace: {namespace}}}
spec:
  defaultVariant: stable
  variants:
    - {{name: stable, model: gpt-4o-mini}}
    - {{name: candidate, model: gpt-4.1-mini}}
  rollout:
    weights: {weights}
"
    )
}

fn config(json: &str) -> SidecarConfig {
    SidecarConfig::from_json(json.as_bytes()).expect("a valid config document")
}

#[test]
fn one_namespace_prints_its_config() {
    let sources = [Source::new(
        "a.yaml",
        flag("shop", "summarizer", "{stable: 90, candidate: 10}"),
    )];
    let config = config(&render(&sources).expect("renders"));
    assert_eq!(config.namespace.as_deref(), Some("shop"));
    let summarizer = config.flag("summarizer").expect("the flag");
    assert_eq!(summarizer.weights, vec![9000, 1000]);
    assert_eq!(summarizer.generation, 1);
}

#[test]
fn several_namespaces_print_an_object_by_namespace() {
    let text = format!(
        "{}---\n{}",
        flag("shop", "summarizer", "{stable: 50, candidate: 50}"),
        flag("support", "assistant", "{stable: 100}")
    );
    let out = render(&[Source::new("all.yaml", text)]).expect("renders");
    let by_namespace: BTreeMap<String, SidecarConfig> =
        serde_json::from_str(&out).expect("namespace → config");
    assert_eq!(by_namespace.keys().collect::<Vec<_>>(), ["shop", "support"]);
    assert!(by_namespace["shop"].flag("summarizer").is_some());
    assert!(by_namespace["support"].flag("assistant").is_some());
}

#[test]
fn flags_of_one_namespace_share_one_config() {
    let sources = [
        Source::new("a.yaml", flag("shop", "one", "{stable: 100}")),
        Source::new("b.yaml", flag("shop", "two", "{candidate: 100}")),
    ];
    let config = config(&render(&sources).expect("renders"));
    let keys: Vec<_> = config.flags.iter().map(|f| f.key.as_str()).collect();
    assert_eq!(keys, ["one", "two"]);
}

#[test]
fn a_manifest_without_namespace_lands_in_default() {
    let text = flag("x", "plain", "{stable: 100}").replace(", namespace: x", "");
    let config = config(&render(&[Source::new("a.yaml", text)]).expect("renders"));
    assert_eq!(config.namespace.as_deref(), Some("default"));
}

#[test]
fn every_error_names_file_document_flag_and_field() {
    let bad = format!(
        "kind: ConfigMap\napiVersion: v1\nmetadata: {{name: other}}\n---\n{}",
        flag("shop", "summarizer", "{stable: 90, candidate: 5}")
    );
    let also_bad = flag("shop", "second", "{stable: 100, ghost: 0}");
    let errors = render(&[
        Source::new("bad.yaml", bad),
        Source::new("also-bad.yaml", also_bad),
    ])
    .expect_err("invalid flags");
    assert_eq!(
        errors,
        [
            "bad.yaml (document 2): shop/summarizer: spec.rollout.weights: weights sum to 95, not 100",
            "also-bad.yaml (document 1): shop/second: spec.rollout.weights.ghost: unknown variant \"ghost\" (variants: stable, candidate)",
        ]
    );
}

#[test]
fn errors_are_reported_in_file_order_across_namespaces() {
    let errors = render(&[
        Source::new("1.yaml", flag("zeta", "a", "{stable: 1}")),
        Source::new("2.yaml", flag("alpha", "b", "{stable: 2}")),
    ])
    .expect_err("invalid flags");
    assert!(
        errors[0].starts_with("1.yaml (document 1): zeta/a: "),
        "{errors:?}"
    );
    assert!(
        errors[1].starts_with("2.yaml (document 1): alpha/b: "),
        "{errors:?}"
    );
}

#[test]
fn yaml_syntax_errors_are_reported_with_the_file() {
    let errors = render(&[Source::new("broken.yaml", "kind: [unclosed")]).expect_err("broken");
    assert_eq!(errors.len(), 1);
    assert!(
        errors[0].starts_with("broken.yaml (document 1): invalid YAML: "),
        "{errors:?}"
    );
}

#[test]
fn a_flag_defined_twice_in_a_namespace_is_an_error() {
    let errors = render(&[
        Source::new("a.yaml", flag("shop", "same", "{stable: 100}")),
        Source::new("b.yaml", flag("shop", "same", "{stable: 100}")),
    ])
    .expect_err("duplicate");
    assert_eq!(
        errors,
        ["b.yaml (document 1): shop/same: defined more than once"]
    );
}

#[test]
fn the_same_name_in_two_namespaces_is_fine() {
    let out = render(&[
        Source::new("a.yaml", flag("shop", "same", "{stable: 100}")),
        Source::new("b.yaml", flag("support", "same", "{stable: 100}")),
    ]);
    assert!(out.is_ok(), "{out:?}");
}

#[test]
fn no_flags_at_all_is_an_error() {
    let errors = render(&[Source::new("cm.yaml", "kind: ConfigMap\napiVersion: v1\n")])
        .expect_err("nothing to render");
    assert_eq!(errors, ["no AIFeatureFlag manifests found"]);
}

#[test]
fn read_sources_reports_missing_paths() {
    let missing = PathBuf::from("/nonexistent/aiflags/flag.yaml");
    let (sources, errors) = read_sources(std::slice::from_ref(&missing));
    assert!(sources.is_empty());
    assert_eq!(errors.len(), 1);
    assert!(
        errors[0].starts_with("/nonexistent/aiflags/flag.yaml: "),
        "{errors:?}"
    );
}
