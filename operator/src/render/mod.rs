//! `render`: compile AIFeatureFlag manifests offline into the config the
//! operator would write, or list every problem with its file and field path.
//!
//! [`render`] is pure (text in, JSON or errors out); [`read_sources`] is the
//! only part that touches the file system.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use aiflags_api::manifest::DEFAULT_NAMESPACE;
use aiflags_api::{FlagInput, Manifest, ManifestError, SidecarConfig, compile, parse_manifests};

/// The text of one manifest file and the name errors refer to it by.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Source {
    pub name: String,
    pub text: String,
}

impl Source {
    pub fn new(name: impl Into<String>, text: impl Into<String>) -> Self {
        Source {
            name: name.into(),
            text: text.into(),
        }
    }
}

/// Compiles every flag of `sources`, one config per namespace.
///
/// Success is the JSON to print: the config itself when all flags share a
/// namespace, else an object from namespace to config. Failure is every
/// problem found, one line each, grouped by file in the order given:
/// `FILE (document N): NAMESPACE/NAME: spec.path: message`.
pub fn render(sources: &[Source]) -> Result<String, Vec<String>> {
    // (file index, message): errors are reported file by file.
    let mut errors: Vec<(usize, String)> = Vec::new();
    let mut by_namespace: BTreeMap<String, Vec<(usize, Manifest)>> = BTreeMap::new();
    for (file, source) in sources.iter().enumerate() {
        let (manifests, parse_errors) = parse_manifests(&source.name, &source.text);
        errors.extend(parse_errors.iter().map(|e| (file, e.to_string())));
        for manifest in manifests {
            let namespace = manifest
                .flag
                .metadata
                .namespace
                .clone()
                .unwrap_or_else(|| DEFAULT_NAMESPACE.to_string());
            by_namespace
                .entry(namespace)
                .or_default()
                .push((file, manifest));
        }
    }

    let mut configs = BTreeMap::new();
    for (namespace, manifests) in &by_namespace {
        let (config, compile_errors) = compile_namespace(namespace, manifests);
        errors.extend(compile_errors);
        configs.insert(namespace.clone(), config);
    }

    if !errors.is_empty() {
        errors.sort_by_key(|(file, _)| *file);
        return Err(errors.into_iter().map(|(_, message)| message).collect());
    }
    match configs.len() {
        0 => Err(vec!["no AIFeatureFlag manifests found".to_string()]),
        1 => Ok(configs
            .into_values()
            .map(|c| c.to_json())
            .collect::<String>()),
        _ => serde_json::to_string_pretty(&configs).map_err(|e| vec![e.to_string()]),
    }
}

/// Compiles one namespace's flags as the operator would, with no previous
/// config: offline there is no "last valid version" to fall back to.
fn compile_namespace(
    namespace: &str,
    manifests: &[(usize, Manifest)],
) -> (SidecarConfig, Vec<(usize, String)>) {
    let mut errors = Vec::new();
    // Flag name → (file index, source) of its first definition.
    let mut origin: BTreeMap<&str, (usize, &str)> = BTreeMap::new();
    let mut inputs = Vec::with_capacity(manifests.len());
    for (file, manifest) in manifests {
        let name = manifest.flag.metadata.name.as_deref().unwrap_or_default();
        if origin.contains_key(name) {
            let error = ManifestError {
                source: manifest.source.clone(),
                flag: Some(format!("{namespace}/{name}")),
                message: "defined more than once".into(),
            };
            errors.push((*file, error.to_string()));
            continue;
        }
        origin.insert(name, (*file, &manifest.source));
        inputs.push(FlagInput::from_resource(&manifest.flag));
    }
    let compilation = compile(Some(namespace), &inputs, None);
    for (name, outcome) in &compilation.flags {
        let Some((file, source)) = origin.get(name.as_str()) else {
            continue;
        };
        for field_error in &outcome.errors {
            let error = ManifestError {
                source: source.to_string(),
                flag: Some(format!("{namespace}/{name}")),
                message: field_error.to_string(),
            };
            errors.push((*file, error.to_string()));
        }
    }
    (compilation.config, errors)
}

/// Reads each path: a file as is, a directory as every `*.yaml`/`*.yml`
/// directly inside it, sorted by name. Unreadable paths become errors.
pub fn read_sources(paths: &[PathBuf]) -> (Vec<Source>, Vec<String>) {
    let mut sources = Vec::new();
    let mut errors = Vec::new();
    for path in paths {
        let files = if path.is_dir() {
            match manifest_files(path) {
                Ok(files) if files.is_empty() => {
                    errors.push(format!("{}: no .yaml or .yml files", path.display()));
                    continue;
                }
                Ok(files) => files,
                Err(e) => {
                    errors.push(format!("{}: {e}", path.display()));
                    continue;
                }
            }
        } else {
            vec![path.clone()]
        };
        for file in files {
            match std::fs::read_to_string(&file) {
                Ok(text) => sources.push(Source::new(file.display().to_string(), text)),
                Err(e) => errors.push(format!("{}: {e}", file.display())),
            }
        }
    }
    (sources, errors)
}

fn manifest_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let yaml = path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| e == "yaml" || e == "yml");
        if yaml && path.is_file() {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

#[cfg(test)]
mod tests;
