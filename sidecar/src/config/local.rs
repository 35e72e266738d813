//! Local mode: AIFeatureFlag manifests compiled in the sidecar, with the same
//! last-valid rule the operator's compiled path has. A flag whose document
//! does not parse, or does not compile, keeps serving its last valid version;
//! a file with a document the parser cannot read at all (a YAML syntax
//! error, a half-saved edit) keeps every flag it had. A file must also read
//! the same on two polls in a row before it is applied (see
//! [`super::source`]), so a save caught mid-write is not a config.

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;

use aiflags_api::manifest::DEFAULT_NAMESPACE;
use aiflags_api::{Manifest, SidecarConfig, compile_manifests, parse_manifests};

/// What the last compile kept, to fall back on.
#[derive(Debug, Default)]
pub(crate) struct LocalFlags {
    /// Per file: the manifests in force after its last read.
    previous_files: HashMap<PathBuf, Vec<Manifest>>,
    previous_config: Option<SidecarConfig>,
}

impl LocalFlags {
    /// Compiles the files' flags, keeping last valid versions where needed.
    pub(crate) fn compile(&mut self, files: &[(PathBuf, Vec<u8>)]) -> SidecarConfig {
        let mut manifests = Vec::new();
        let mut in_force = HashMap::new();
        for (path, bytes) in files {
            let text = String::from_utf8_lossy(bytes);
            let (mut found, errors) = parse_manifests(&path.display().to_string(), &text);
            let mut unreadable = false;
            let mut invalid = BTreeSet::new();
            for e in errors {
                tracing::warn!(error = %e, "flag manifest not loaded; its last valid version keeps serving");
                match e.flag {
                    Some(name) => {
                        invalid.insert(name);
                    }
                    None => unreadable = true,
                }
            }
            if let Some(previous) = self.previous_files.get(path) {
                for manifest in previous {
                    let name = qualified_name(manifest);
                    let present = found.iter().any(|m| qualified_name(m) == name);
                    if !present && (unreadable || invalid.contains(&name)) {
                        found.push(manifest.clone());
                    }
                }
            }
            manifests.extend(found.iter().cloned());
            in_force.insert(path.clone(), found);
        }
        self.previous_files = in_force;
        let (config, errors) = compile_manifests(&manifests, self.previous_config.as_ref());
        for e in errors {
            tracing::warn!(error = %e, "flag does not compile; its last valid version keeps serving");
        }
        self.previous_config = Some(config.clone());
        config
    }
}

fn qualified_name(manifest: &Manifest) -> String {
    let meta = &manifest.flag.metadata;
    format!(
        "{}/{}",
        meta.namespace.as_deref().unwrap_or(DEFAULT_NAMESPACE),
        meta.name.as_deref().unwrap_or_default()
    )
}

#[cfg(test)]
#[path = "local_tests.rs"]
mod tests;
