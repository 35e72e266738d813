//! Reading `AIFeatureFlag` manifests from YAML text, as `render` and the
//! sidecar's local mode do. The callers read the files; this stays pure.

use std::collections::BTreeSet;
use std::fmt;
use std::sync::Arc;

use crate::compile::{FlagInput, compile};
use crate::config::{CompiledFlag, SidecarConfig};
use crate::crd::AIFeatureFlag;

/// A flag and where it came from.
#[derive(Clone, Debug)]
pub struct Manifest {
    /// File name (or other origin) for error messages.
    pub source: String,
    pub flag: AIFeatureFlag,
}

/// A problem in one document of a manifest file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ManifestError {
    pub source: String,
    /// `namespace/name` when the document got that far.
    pub flag: Option<String>,
    pub message: String,
}

impl fmt::Display for ManifestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.flag {
            Some(flag) => write!(f, "{}: {flag}: {}", self.source, self.message),
            None => write!(f, "{}: {}", self.source, self.message),
        }
    }
}

/// Namespace assumed for manifests that name none, as kubectl does.
pub const DEFAULT_NAMESPACE: &str = "default";

/// Parses every YAML document of `text`. Documents of other kinds are skipped,
/// so a file may hold a Deployment beside its flags. Each document is parsed
/// on its own: a syntax error costs that document, not the ones after it.
pub fn parse_manifests(source: &str, text: &str) -> (Vec<Manifest>, Vec<ManifestError>) {
    let mut flags = Vec::new();
    let mut errors = Vec::new();
    for_each_manifest(source, text, |parsed| match parsed {
        Ok(flag) => flags.push(flag),
        Err(e) => errors.push(e),
    });
    (flags, errors)
}

/// [`parse_manifests`] one document at a time: `each` gets every flag or
/// error as it is read, so a caller that compiles as it goes never holds
/// all of a large file's manifests at once.
pub fn for_each_manifest(
    source: &str,
    text: &str,
    mut each: impl FnMut(Result<Manifest, ManifestError>),
) {
    for (index, doc) in documents(text).into_iter().enumerate() {
        let origin = format!("{source} (document {})", index + 1);
        let value = match serde_yaml::from_str::<serde_yaml::Value>(doc) {
            Ok(serde_yaml::Value::Null) => continue,
            Ok(v) => v,
            Err(e) => {
                each(Err(ManifestError {
                    source: origin,
                    flag: None,
                    message: format!("invalid YAML: {e}"),
                }));
                continue;
            }
        };
        if value.get("kind").and_then(|k| k.as_str()) != Some("AIFeatureFlag") {
            continue;
        }
        let api_version = value
            .get("apiVersion")
            .and_then(|v| v.as_str())
            .unwrap_or_default();
        if api_version != "aiflags.dev/v1alpha1" {
            each(Err(ManifestError {
                source: origin,
                flag: None,
                message: format!("apiVersion: {api_version:?} is not aiflags.dev/v1alpha1"),
            }));
            continue;
        }
        let metadata = |key: &str| {
            value
                .get("metadata")?
                .get(key)?
                .as_str()
                .map(str::to_string)
        };
        let name = metadata("name").map(|n| {
            let namespace = metadata("namespace").unwrap_or_else(|| DEFAULT_NAMESPACE.into());
            format!("{namespace}/{n}")
        });
        // The path makes a type error name its field, like every other error here.
        match serde_path_to_error::deserialize::<_, AIFeatureFlag>(value) {
            Ok(mut flag) => {
                if flag.metadata.name.as_deref().unwrap_or_default().is_empty() {
                    each(Err(ManifestError {
                        source: origin,
                        flag: None,
                        message: "metadata.name: is required".into(),
                    }));
                    continue;
                }
                flag.metadata
                    .namespace
                    .get_or_insert_with(|| DEFAULT_NAMESPACE.to_string());
                flag.metadata.generation.get_or_insert(1);
                each(Ok(Manifest {
                    source: origin,
                    flag,
                }));
            }
            Err(e) => each(Err(ManifestError {
                source: origin,
                flag: name,
                message: e.to_string(),
            })),
        }
    }
}

/// The documents of a YAML stream: split at `---` marker lines (a marker at
/// the start of a line always begins a document, even after a block scalar)
/// and cut at `...` end markers. A blank preamble before the first marker is
/// not a document.
fn documents(text: &str) -> Vec<&str> {
    let mut docs = Vec::new();
    let mut start = 0;
    let mut offset = 0;
    let mut ended = false;
    for line in text.split_inclusive('\n') {
        let content = line.trim_end_matches(['\n', '\r']);
        let is_marker =
            content == "---" || content.starts_with("--- ") || content.starts_with("---\t");
        if is_marker {
            if offset > start || ended {
                docs.push(&text[start..offset]);
            }
            start = offset;
            ended = false;
        } else if content == "..." || content.starts_with("... ") {
            docs.push(&text[start..offset]);
            ended = true;
            start = offset + line.len();
        }
        offset += line.len();
    }
    if start < text.len() {
        docs.push(&text[start..]);
    }
    // A preamble of nothing but blank lines and comments before the first marker.
    if let Some(first) = docs.first()
        && docs.len() > 1
        && first
            .lines()
            .all(|l| l.trim().is_empty() || l.trim_start().starts_with('#'))
    {
        docs.remove(0);
    }
    docs
}

/// `namespace/name` of a flag, the default namespace where it names none.
pub fn qualified_name(flag: &AIFeatureFlag) -> String {
    qualified(
        flag.metadata.namespace.as_deref(),
        flag.metadata.name.as_deref().unwrap_or_default(),
    )
}

/// `namespace/name`, the default namespace for `None`: how local mode names
/// a flag, a manifest and a compiled flag alike.
pub fn qualified(namespace: Option<&str>, name: &str) -> String {
    format!("{}/{name}", namespace.unwrap_or(DEFAULT_NAMESPACE))
}

/// Compiles manifests from any namespaces into one config, as a sidecar in
/// local mode serves them. Invalid flags keep their version from `previous`.
pub fn compile_manifests(
    manifests: &[Manifest],
    previous: Option<&SidecarConfig>,
) -> (SidecarConfig, Vec<ManifestError>) {
    let mut compiler = ManifestCompiler::new(previous);
    for manifest in manifests {
        compiler.add(manifest);
    }
    compiler.finish()
}

/// [`compile_manifests`] a manifest at a time (see [`for_each_manifest`]).
pub struct ManifestCompiler<'p> {
    previous: Option<&'p SidecarConfig>,
    seen: BTreeSet<String>,
    flags: Vec<Arc<CompiledFlag>>,
    errors: Vec<ManifestError>,
}

impl<'p> ManifestCompiler<'p> {
    pub fn new(previous: Option<&'p SidecarConfig>) -> Self {
        ManifestCompiler {
            previous,
            seen: BTreeSet::new(),
            flags: Vec::new(),
            errors: Vec::new(),
        }
    }

    /// Compiles one manifest; the first of a name wins, a later one is an error.
    pub fn add(&mut self, manifest: &Manifest) {
        let name = qualified_name(&manifest.flag);
        if self.seen.contains(&name) {
            self.errors.push(ManifestError {
                source: manifest.source.clone(),
                flag: Some(name),
                message: "defined more than once".into(),
            });
            return;
        }
        // Compiled alone, so same-named flags of different namespaces stay apart.
        let input = FlagInput::from_resource(&manifest.flag);
        let result = compile(None, std::slice::from_ref(&input), self.previous);
        if let Some(outcome) = result.flags.get(input.name) {
            for e in &outcome.errors {
                self.errors.push(ManifestError {
                    source: manifest.source.clone(),
                    flag: Some(name.clone()),
                    message: e.to_string(),
                });
            }
        }
        self.flags.extend(result.config.flags);
        self.seen.insert(name);
    }

    pub fn finish(self) -> (SidecarConfig, Vec<ManifestError>) {
        (SidecarConfig::new(None, self.flags), self.errors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FLAG: &str = "apiVersion: aiflags.dev/v1alpha1\nkind: AIFeatureFlag\nmetadata: {name: f}\nspec:\n  defaultVariant: a\n  variants: [{name: a, model: m}]\n";

    #[test]
    fn skips_other_kinds_and_defaults_the_namespace() {
        let text =
            format!("apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: x}}\n---\n{FLAG}---\n");
        let (flags, errors) = parse_manifests("f.yaml", &text);
        assert_eq!(errors, vec![]);
        assert_eq!(flags.len(), 1);
        assert_eq!(flags[0].source, "f.yaml (document 2)");
        assert_eq!(flags[0].flag.metadata.namespace.as_deref(), Some("default"));
    }

    #[test]
    fn names_the_document_of_each_problem() {
        let wrong_version = FLAG.replace("v1alpha1", "v1");
        let no_name = FLAG.replace("{name: f}", "{}");
        let bad_field = FLAG.replace("defaultVariant: a", "defaultVariant: [a]");
        let text = format!("{wrong_version}---\n{no_name}---\n{bad_field}---\nkey: [unclosed\n");
        let (flags, errors) = parse_manifests("f.yaml", &text);
        assert!(flags.is_empty());
        let shown: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert_eq!(
            shown[0],
            "f.yaml (document 1): apiVersion: \"aiflags.dev/v1\" is not aiflags.dev/v1alpha1"
        );
        assert_eq!(shown[1], "f.yaml (document 2): metadata.name: is required");
        assert!(
            shown[2]
                .starts_with("f.yaml (document 3): default/f: spec.defaultVariant: invalid type"),
            "{}",
            shown[2]
        );
        assert!(
            shown[3].starts_with("f.yaml (document 4): invalid YAML"),
            "{}",
            shown[3]
        );
    }

    #[test]
    fn a_syntax_error_costs_only_its_own_document() {
        let second = FLAG.replace("{name: f}", "{name: g}");
        let text = format!("---\n{FLAG}---\nkey: [unclosed\n---\n{second}...\n");
        let (flags, errors) = parse_manifests("f.yaml", &text);
        let names: Vec<_> = flags
            .iter()
            .map(|m| m.flag.metadata.name.clone().unwrap())
            .collect();
        assert_eq!(names, ["f", "g"]);
        assert_eq!(errors.len(), 1);
        assert!(
            errors[0]
                .to_string()
                .starts_with("f.yaml (document 2): invalid YAML"),
            "{}",
            errors[0]
        );
        assert_eq!(flags[1].source, "f.yaml (document 3)");
    }

    #[test]
    fn block_scalars_and_markers_split_as_yaml_does() {
        let text = "a: |\n  --- not a marker\n---\nb: 1\n...\n# trailing comment\n";
        assert_eq!(
            documents(text),
            vec![
                "a: |\n  --- not a marker\n",
                "---\nb: 1\n",
                "# trailing comment\n"
            ]
        );
        assert_eq!(documents("# c\n---\na: 1\n"), vec!["---\na: 1\n"]);
        assert_eq!(documents(""), Vec::<&str>::new());
    }

    #[test]
    fn a_flag_defined_twice_is_an_error() {
        let (flags, _) = parse_manifests("f.yaml", &format!("{FLAG}---\n{FLAG}"));
        let (config, errors) = compile_manifests(&flags, None);
        assert_eq!(config.flags.len(), 1);
        assert_eq!(
            errors[0].to_string(),
            "f.yaml (document 2): default/f: defined more than once"
        );
    }
}
