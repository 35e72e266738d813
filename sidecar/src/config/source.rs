//! Where the config comes from: the mounted ConfigMap file or, in local mode,
//! AIFeatureFlag YAML compiled here; filtered by the pod's labels.
//!
//! Sources are polled. A poll fingerprints everything it reads (the resolved
//! path, so kubelet's atomic `..data` symlink swap is seen, plus the content),
//! and only a changed fingerprint reloads. A document that does not load is
//! logged and the last good snapshot keeps serving.

use std::collections::BTreeMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use aiflags_api::{SidecarConfig, compile_manifests, parse_manifests};
use tokio::sync::watch;

use crate::settings::ConfigSource;
use crate::snapshot::{Snapshot, SnapshotCell};
use crate::telemetry::SharedTelemetry;

/// Reads and re-reads the configured sources.
pub struct ConfigLoader {
    source: ConfigSource,
    pod_labels: Option<PathBuf>,
    /// What the last successful or failed poll read; unchanged means no work.
    fingerprint: Option<u64>,
    /// Local mode: the last compile, so an invalid flag keeps its last version.
    previous: Option<SidecarConfig>,
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct LoadError(String);

/// Raw inputs of one poll.
struct Inputs {
    /// (path as resolved, content) per file.
    files: Vec<(PathBuf, Vec<u8>)>,
    labels: BTreeMap<String, String>,
}

impl ConfigLoader {
    pub fn new(source: ConfigSource, pod_labels: Option<PathBuf>) -> ConfigLoader {
        ConfigLoader {
            source,
            pod_labels,
            fingerprint: None,
            previous: None,
        }
    }

    /// `Ok(None)` when nothing changed since the last poll.
    pub fn poll(&mut self) -> Result<Option<Snapshot>, LoadError> {
        let inputs = self.read()?;
        let mut hasher = DefaultHasher::new();
        inputs.files.hash(&mut hasher);
        inputs.labels.hash(&mut hasher);
        let fingerprint = hasher.finish();
        if self.fingerprint == Some(fingerprint) {
            return Ok(None);
        }
        // Remember failures too: a broken document is reported once, not every poll.
        self.fingerprint = Some(fingerprint);
        let source = match &self.source {
            ConfigSource::None => "none".to_string(),
            ConfigSource::File(path) => format!("file:{}", path.display()),
            ConfigSource::Flags(path) => format!("flags:{}", path.display()),
        };
        let config = match &self.source {
            ConfigSource::None => SidecarConfig::empty(None),
            ConfigSource::File(path) => {
                let (_, bytes) = inputs
                    .files
                    .first()
                    .ok_or_else(|| LoadError("no file".into()))?;
                SidecarConfig::from_json(bytes)
                    .map_err(|e| LoadError(format!("{}: {e}", path.display())))?
            }
            ConfigSource::Flags(_) => self.compile(&inputs.files),
        };
        // Without a labels file (a laptop, a plain process) there is no pod to
        // select: every flag applies, as the manifests on disk say.
        let config = match &self.pod_labels {
            Some(_) => config.for_pod(&inputs.labels),
            None => config,
        };
        Ok(Some(Snapshot {
            config,
            source,
            loaded_at: SystemTime::now(),
        }))
    }

    fn compile(&mut self, files: &[(PathBuf, Vec<u8>)]) -> SidecarConfig {
        let mut manifests = Vec::new();
        for (path, bytes) in files {
            let text = String::from_utf8_lossy(bytes);
            let (mut found, errors) = parse_manifests(&path.display().to_string(), &text);
            for e in errors {
                tracing::warn!(error = %e, "skipping an invalid flag manifest");
            }
            manifests.append(&mut found);
        }
        let (config, errors) = compile_manifests(&manifests, self.previous.as_ref());
        for e in errors {
            tracing::warn!(error = %e, "flag does not compile; its last valid version keeps serving");
        }
        self.previous = Some(config.clone());
        config
    }

    fn read(&self) -> Result<Inputs, LoadError> {
        let files = match &self.source {
            ConfigSource::None => Vec::new(),
            ConfigSource::File(path) => vec![read_resolved(path)?],
            ConfigSource::Flags(path) if path.is_dir() => {
                let mut paths: Vec<PathBuf> = std::fs::read_dir(path)
                    .map_err(|e| LoadError(format!("{}: {e}", path.display())))?
                    .filter_map(|entry| entry.ok().map(|e| e.path()))
                    .filter(|p| {
                        let ext = p.extension().and_then(|e| e.to_str());
                        matches!(ext, Some("yaml" | "yml"))
                    })
                    .collect();
                paths.sort();
                paths
                    .iter()
                    .map(|p| read_resolved(p))
                    .collect::<Result<_, _>>()?
            }
            ConfigSource::Flags(path) => vec![read_resolved(path)?],
        };
        let labels = match &self.pod_labels {
            None => BTreeMap::new(),
            Some(path) => {
                let (_, bytes) = read_resolved(path)?;
                parse_pod_labels(&String::from_utf8_lossy(&bytes))
            }
        };
        Ok(Inputs { files, labels })
    }
}

/// Reads through symlinks, returning the final path so a `..data` swap to an
/// identical document still counts as seen.
fn read_resolved(path: &Path) -> Result<(PathBuf, Vec<u8>), LoadError> {
    let failed = |e: std::io::Error| LoadError(format!("{}: {e}", path.display()));
    let resolved = std::fs::canonicalize(path).map_err(failed)?;
    let bytes = std::fs::read(&resolved).map_err(failed)?;
    Ok((resolved, bytes))
}

/// Loads once, then keeps polling until `stop` flips. Returns after the first
/// load attempt so the caller can start serving.
pub fn spawn_reloader(
    mut loader: ConfigLoader,
    cell: Arc<SnapshotCell>,
    telemetry: SharedTelemetry,
    interval: Duration,
    mut stop: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    reload_once(&mut loader, &cell, &telemetry);
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(interval) => {}
                _ = stop.changed() => return,
            }
            // File reads and local-mode compiles block: keep them off the
            // (by default single) thread that serves requests.
            let (cell, telemetry) = (cell.clone(), telemetry.clone());
            let polled = tokio::task::spawn_blocking(move || {
                reload_once(&mut loader, &cell, &telemetry);
                loader
            });
            match polled.await {
                Ok(back) => loader = back,
                Err(e) => {
                    tracing::error!(error = %e, "config reload task failed; reloading stops");
                    return;
                }
            }
        }
    })
}

fn reload_once(loader: &mut ConfigLoader, cell: &SnapshotCell, telemetry: &SharedTelemetry) {
    match loader.poll() {
        Ok(None) => {}
        Ok(Some(snapshot)) => {
            let revision = snapshot.config.revision.clone();
            tracing::info!(
                revision = %revision,
                source = %snapshot.source,
                flags = snapshot.config.flags.len(),
                "config loaded"
            );
            cell.swap(snapshot);
            telemetry.config_reloaded("ok", Some(&revision));
        }
        Err(e) => {
            let serving = cell.current().map(|s| s.config.revision.clone());
            tracing::warn!(error = %e, serving = ?serving, "config not loaded; the last good config keeps serving");
            telemetry.config_reloaded("error", serving.as_deref());
        }
    }
}

/// The downward-API labels file: `key="value"` lines, values quoted as Go's
/// `%q` writes them. Lines that do not parse are skipped.
pub fn parse_pod_labels(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|line| {
            let (key, quoted) = line.split_once('=')?;
            Some((key.trim().to_string(), unquote(quoted.trim())?))
        })
        .collect()
}

/// Go `strconv.Unquote` for double-quoted strings.
fn unquote(s: &str) -> Option<String> {
    let inner = s.strip_prefix('"')?.strip_suffix('"')?;
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        let escaped = match chars.next()? {
            'n' => '\n',
            't' => '\t',
            'r' => '\r',
            'a' => '\x07',
            'b' => '\x08',
            'f' => '\x0c',
            'v' => '\x0b',
            c @ ('\\' | '"' | '\'') => c,
            'x' => hex_char(&mut chars, 2)?,
            'u' => hex_char(&mut chars, 4)?,
            'U' => hex_char(&mut chars, 8)?,
            _ => return None,
        };
        out.push(escaped);
    }
    Some(out)
}

fn hex_char(chars: &mut std::str::Chars<'_>, digits: usize) -> Option<char> {
    let hex: String = chars.by_ref().take(digits).collect();
    char::from_u32(u32::from_str_radix(&hex, 16).ok()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pod_labels_as_kubelet_writes_them() {
        let labels = parse_pod_labels(
            "app=\"summarizer\"\npod-template-hash=\"7d9f\"\nnote=\"a \\\"quoted\\\" \\u00e9\\n\"\nbroken\n",
        );
        assert_eq!(labels["app"], "summarizer");
        assert_eq!(labels["pod-template-hash"], "7d9f");
        assert_eq!(labels["note"], "a \"quoted\" é\n");
        assert_eq!(labels.len(), 3);
    }

    #[test]
    fn unchanged_sources_do_not_reload_and_bad_documents_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        std::fs::write(&path, SidecarConfig::empty(None).to_json()).unwrap();
        let mut loader = ConfigLoader::new(ConfigSource::File(path.clone()), None);
        assert!(loader.poll().unwrap().is_some());
        assert!(loader.poll().unwrap().is_none());
        std::fs::write(&path, r#"{"schema": "aiflags.dev/config/v9", "flags": []}"#).unwrap();
        let err = loader.poll().unwrap_err().to_string();
        assert!(err.contains("not supported"), "{err}");
    }

    #[test]
    fn pod_selectors_apply_only_when_the_pod_labels_are_known() {
        let dir = tempfile::tempdir().unwrap();
        let examples = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
        let keys = |labels: Option<PathBuf>| -> Vec<String> {
            let mut loader = ConfigLoader::new(ConfigSource::Flags(examples.clone()), labels);
            let snapshot = loader.poll().unwrap().unwrap();
            snapshot.config.flags.into_iter().map(|f| f.key).collect()
        };
        // Every example selects pods by label; on a laptop all of them apply.
        assert_eq!(keys(None).len(), 3);
        let labels = dir.path().join("labels");
        std::fs::write(&labels, "app=\"summarizer\"\n").unwrap();
        assert_eq!(keys(Some(labels)), ["summarizer-model"]);
    }
}
