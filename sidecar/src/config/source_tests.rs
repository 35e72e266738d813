use std::io::Write;

use super::*;

fn upstreams() -> Upstreams {
    Upstreams {
        openai: "http://127.0.0.1:1".parse().unwrap(),
        anthropic: "http://127.0.0.1:2".parse().unwrap(),
    }
}

const FLAG: &str = "apiVersion: aiflags.dev/v1alpha1\nkind: AIFeatureFlag\nmetadata: {name: f}\nspec:\n  defaultVariant: a\n  variants: [{name: a, model: m}]\n";

#[test]
fn unchanged_sources_do_not_reload_and_bad_documents_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.json");
    std::fs::write(&path, SidecarConfig::empty(None).to_json()).unwrap();
    let mut loader = ConfigLoader::new(ConfigSource::File(path.clone()), None, upstreams());
    assert!(loader.poll().unwrap().is_some());
    assert!(loader.poll().unwrap().is_none());
    std::fs::write(&path, r#"{"schema": "aiflags.dev/config/v9", "flags": []}"#).unwrap();
    let err = loader.poll().unwrap_err().to_string();
    assert!(err.contains("not supported"), "{err}");
}

#[test]
fn a_gzip_config_beside_the_plain_name_loads() {
    let dir = tempfile::tempdir().unwrap();
    let (manifests, _) = aiflags_api::parse_manifests("t", FLAG);
    let (config, _) = aiflags_api::compile_manifests(&manifests, None);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(config.to_json().as_bytes()).unwrap();
    std::fs::write(dir.path().join("config.json.gz"), gz.finish().unwrap()).unwrap();
    let mut loader = ConfigLoader::new(
        ConfigSource::File(dir.path().join("config.json")),
        None,
        upstreams(),
    );
    let snapshot = loader.poll().unwrap().unwrap();
    assert_eq!(snapshot.revision, config.revision);
    assert_eq!(snapshot.flags.len(), 1);
}

#[test]
fn local_mode_applies_a_change_once_it_reads_the_same_twice() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("flags.yaml");
    std::fs::write(&path, FLAG).unwrap();
    let mut loader = ConfigLoader::new(ConfigSource::Flags(path.clone()), None, upstreams());
    assert_eq!(
        loader.poll().unwrap().unwrap().flags.len(),
        1,
        "the first load is at once"
    );
    // A save caught half-way (here: truncated to nothing) is not applied…
    std::fs::write(&path, "").unwrap();
    assert!(loader.poll().unwrap().is_none());
    // …and once the file reads whole again there is nothing to undo.
    std::fs::write(&path, FLAG.replace("model: m", "model: m2")).unwrap();
    assert!(
        loader.poll().unwrap().is_none(),
        "changed since the last poll: settling"
    );
    let snapshot = loader.poll().unwrap().unwrap();
    assert_eq!(
        snapshot.flags.iter().next().unwrap().compiled.variants[0].model,
        "m2"
    );
    assert!(loader.poll().unwrap().is_none());
}

#[test]
fn pod_selectors_apply_only_when_the_pod_labels_are_known() {
    let dir = tempfile::tempdir().unwrap();
    let examples = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    let keys = |labels: Option<PathBuf>| -> Vec<String> {
        let mut loader =
            ConfigLoader::new(ConfigSource::Flags(examples.clone()), labels, upstreams());
        let snapshot = loader.poll().unwrap().unwrap();
        snapshot
            .flags
            .iter()
            .map(|f| f.compiled.key.clone())
            .collect()
    };
    // Every example selects pods by label; on a laptop all of them apply.
    assert_eq!(keys(None).len(), 3);
    let labels = dir.path().join("labels");
    std::fs::write(&labels, "app=\"summarizer\"\n").unwrap();
    assert_eq!(keys(Some(labels)), ["summarizer-model"]);
}

#[test]
fn no_config_map_yet_is_an_empty_config_not_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.json");
    let mut loader = ConfigLoader::new(ConfigSource::File(path.clone()), None, upstreams());
    let snapshot = loader.poll().unwrap().unwrap();
    assert!(snapshot.flags.is_empty());
    assert_eq!(snapshot.revision, SidecarConfig::empty(None).revision);
    // The operator writes the first flag: it loads.
    let (manifests, _) = aiflags_api::parse_manifests("t", FLAG);
    let (config, _) = aiflags_api::compile_manifests(&manifests, None);
    std::fs::write(&path, config.to_json()).unwrap();
    assert_eq!(loader.poll().unwrap().unwrap().flags.len(), 1);
}
