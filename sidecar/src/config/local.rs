//! Local mode: AIFeatureFlag manifests compiled in the sidecar, with the same
//! last-valid rule the operator's compiled path has. A flag whose document
//! does not parse, or does not compile, keeps serving its last valid version;
//! a file with a document the parser cannot read at all (a YAML syntax
//! error, a half-saved edit) keeps every flag it had. A file must also read
//! the same on two polls in a row before it is applied (see
//! [`super::source`]), so a save caught mid-write is not a config.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::PathBuf;

use aiflags_api::manifest::{qualified, qualified_name};
use aiflags_api::{CompiledFlag, ManifestCompiler, SidecarConfig, for_each_manifest};

/// What the last compile kept, to fall back on: the compiled config and,
/// per file, the names of the flags it had in force (not the manifests: a
/// flag carried over is its last compiled version, as the compiled path does).
#[derive(Debug, Default)]
pub(crate) struct LocalFlags {
    previous_files: HashMap<PathBuf, Vec<String>>,
    previous_config: Option<SidecarConfig>,
}

impl LocalFlags {
    /// Compiles the files' flags, keeping last valid versions where needed.
    pub(crate) fn compile(&mut self, files: &[(PathBuf, Vec<u8>)]) -> SidecarConfig {
        // Each manifest is compiled as it is read and then dropped: a large
        // file's manifests are never all held at once.
        let mut compiler = ManifestCompiler::new(self.previous_config.as_ref());
        let mut carried = Vec::new();
        let mut in_force = HashMap::new();
        for (path, bytes) in files {
            let text = String::from_utf8_lossy(bytes);
            let mut unreadable = false;
            let mut invalid = BTreeSet::new();
            let mut names = Vec::new();
            for_each_manifest(&path.display().to_string(), &text, |parsed| match parsed {
                Ok(manifest) => {
                    names.push(qualified_name(&manifest.flag));
                    compiler.add(&manifest);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "flag manifest not loaded; its last valid version keeps serving");
                    match e.flag {
                        Some(name) => {
                            invalid.insert(name);
                        }
                        None => unreadable = true,
                    }
                }
            });
            if let Some(previous) = self.previous_files.get(path) {
                // The cheap test first: with no error in the file nothing
                // is carried, and the list is not searched.
                for name in previous {
                    if (unreadable || invalid.contains(name)) && !names.contains(name) {
                        carried.push(name.clone());
                        names.push(name.clone());
                    }
                }
            }
            in_force.insert(path.clone(), names);
        }
        self.previous_files = in_force;
        let (config, errors) = compiler.finish();
        for e in errors {
            tracing::warn!(error = %e, "flag does not compile; its last valid version keeps serving");
        }
        let config = match (&self.previous_config, carried.is_empty()) {
            (Some(previous), false) => carry_over(config, previous, &carried),
            _ => config,
        };
        self.previous_config = Some(config.clone());
        config
    }
}

/// `config` plus the flags of `previous` named in `names` that it lacks.
fn carry_over(config: SidecarConfig, previous: &SidecarConfig, names: &[String]) -> SidecarConfig {
    let name = |f: &CompiledFlag| qualified(f.namespace.as_deref(), &f.key);
    let wanted: HashSet<&str> = names.iter().map(String::as_str).collect();
    let present: HashSet<String> = config.flags.iter().map(|f| name(f)).collect();
    let mut flags = config.flags;
    for flag in &previous.flags {
        let name = name(flag);
        if wanted.contains(name.as_str()) && !present.contains(&name) {
            flags.push(flag.clone());
        }
    }
    SidecarConfig::new(config.namespace, flags)
}

#[cfg(test)]
#[path = "local_tests.rs"]
mod tests;
