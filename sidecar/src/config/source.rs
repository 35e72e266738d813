//! Where the config comes from: the mounted ConfigMap file or, in local mode,
//! AIFeatureFlag YAML compiled here; filtered by the pod's labels.
//!
//! Sources are polled. A poll fingerprints everything it reads (the resolved
//! path, so kubelet's atomic `..data` symlink swap is seen, plus the content),
//! and only a changed fingerprint reloads. A document that does not load is
//! logged and the last good snapshot keeps serving. In local mode a changed
//! file must read the same on two polls in a row before it is applied: an
//! editor's save caught half-way is not a config.

use std::collections::BTreeMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use aiflags_api::SidecarConfig;
use tokio::sync::watch;

use super::labels::parse_pod_labels;
use super::local::LocalFlags;
use super::snapshot::{Snapshot, SnapshotCell};
use crate::flags::Flags;
use crate::telemetry::{FlagInfo, SharedTelemetry};
use crate::upstream::target::Upstreams;

/// Where the sidecar's flags come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigSource {
    /// The ConfigMap mounted as a volume: `config.json`, or `config.json.gz`
    /// beside it when the operator compressed a large config.
    File(PathBuf),
    /// Local mode: a manifest file or a directory of them.
    Flags(PathBuf),
    /// No flags: everything passes through.
    None,
}

/// The largest config document accepted, compressed or not.
const MAX_CONFIG_BYTES: u64 = 64 << 20;

/// Reads and re-reads the configured sources.
pub struct ConfigLoader {
    source: ConfigSource,
    pod_labels: Option<PathBuf>,
    upstreams: Upstreams,
    /// What the last applied (or failed) poll read; unchanged means no work.
    applied: Option<u64>,
    /// Local mode: a fingerprint seen once, waiting to be seen again.
    settling: Option<u64>,
    local: LocalFlags,
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
    pub fn new(
        source: ConfigSource,
        pod_labels: Option<PathBuf>,
        upstreams: Upstreams,
    ) -> ConfigLoader {
        ConfigLoader {
            source,
            pod_labels,
            upstreams,
            applied: None,
            settling: None,
            local: LocalFlags::default(),
        }
    }

    /// `Ok(None)` when nothing (new) is to be applied.
    pub fn poll(&mut self) -> Result<Option<Snapshot>, LoadError> {
        let inputs = self.read()?;
        let mut hasher = DefaultHasher::new();
        inputs.files.hash(&mut hasher);
        inputs.labels.hash(&mut hasher);
        let fingerprint = hasher.finish();
        if self.applied == Some(fingerprint) {
            self.settling = None;
            return Ok(None);
        }
        let first_load = self.applied.is_none();
        if matches!(self.source, ConfigSource::Flags(_))
            && !first_load
            && self.settling != Some(fingerprint)
        {
            self.settling = Some(fingerprint);
            return Ok(None);
        }
        self.settling = None;
        // Remember failures too: a broken document is reported once, not every poll.
        self.applied = Some(fingerprint);
        let (config, source) = match &self.source {
            ConfigSource::None => (SidecarConfig::empty(None), "none".to_string()),
            ConfigSource::File(path) => {
                let config = match inputs.files.first() {
                    Some((resolved, bytes)) => decode_document(resolved, bytes)
                        .map_err(|e| LoadError(format!("{}: {e}", resolved.display())))?,
                    None => SidecarConfig::empty(None),
                };
                (config, format!("file:{}", path.display()))
            }
            ConfigSource::Flags(path) => (
                self.local.compile(&inputs.files),
                format!("flags:{}", path.display()),
            ),
        };
        // Without a labels file (a laptop, a plain process) there is no pod to
        // select: every flag applies, as the manifests on disk say.
        let config = match &self.pod_labels {
            Some(_) => config.for_pod(&inputs.labels),
            None => config,
        };
        let flags = Flags::new(&config, &self.upstreams);
        Ok(Some(Snapshot {
            config,
            flags,
            source,
            loaded_at: SystemTime::now(),
        }))
    }

    fn read(&self) -> Result<Inputs, LoadError> {
        let files = match &self.source {
            ConfigSource::None => Vec::new(),
            // No file at all: the namespace has no flags yet, so its
            // ConfigMap (mounted optional) does not exist. That is an empty
            // config, not an error: the sidecar is ready and passes through.
            ConfigSource::File(path) => read_config_file(path)?.into_iter().collect(),
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

/// The mounted config: `config.json`, else the gzip form beside it; `None`
/// when neither exists.
fn read_config_file(path: &Path) -> Result<Option<(PathBuf, Vec<u8>)>, LoadError> {
    let mut gz = path.as_os_str().to_owned();
    gz.push(".gz");
    let gz = PathBuf::from(gz);
    for candidate in [path, gz.as_path()] {
        if std::fs::metadata(candidate).is_ok() {
            return read_resolved(candidate).map(Some);
        }
    }
    Ok(None)
}

/// A config document, plain JSON or gzip-compressed JSON.
fn decode_document(path: &Path, bytes: &[u8]) -> Result<SidecarConfig, String> {
    let gzip = bytes.starts_with(&[0x1f, 0x8b]) || path.extension().is_some_and(|e| e == "gz");
    if !gzip {
        return SidecarConfig::from_json(bytes).map_err(|e| e.to_string());
    }
    let mut plain = Vec::new();
    flate2::read::MultiGzDecoder::new(bytes)
        .take(MAX_CONFIG_BYTES + 1)
        .read_to_end(&mut plain)
        .map_err(|e| format!("the gzip config does not decode: {e}"))?;
    if plain.len() as u64 > MAX_CONFIG_BYTES {
        return Err(format!(
            "the config decodes to more than {MAX_CONFIG_BYTES} bytes"
        ));
    }
    SidecarConfig::from_json(&plain).map_err(|e| e.to_string())
}

/// Reads through symlinks, returning the final path so a `..data` swap to an
/// identical document still counts as seen.
fn read_resolved(path: &Path) -> Result<(PathBuf, Vec<u8>), LoadError> {
    let failed = |e: std::io::Error| LoadError(format!("{}: {e}", path.display()));
    let resolved = std::fs::canonicalize(path).map_err(failed)?;
    let mut bytes = Vec::new();
    std::fs::File::open(&resolved)
        .and_then(|f| f.take(MAX_CONFIG_BYTES + 1).read_to_end(&mut bytes))
        .map_err(failed)?;
    if bytes.len() as u64 > MAX_CONFIG_BYTES {
        return Err(LoadError(format!(
            "{}: larger than {MAX_CONFIG_BYTES} bytes",
            path.display()
        )));
    }
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
                flags = snapshot.flags.len(),
                "config loaded"
            );
            let infos = flag_infos(&snapshot.flags);
            cell.swap(snapshot);
            telemetry.config_loaded(&revision, &infos);
        }
        Err(e) => {
            let serving = cell.current().map(|s| s.config.revision.clone());
            tracing::warn!(error = %e, serving = ?serving, "config not loaded; the last good config keeps serving");
            telemetry.config_failed(serving.as_deref());
        }
    }
}

/// What the configured-state metrics show of each flag.
fn flag_infos(flags: &Flags) -> Vec<FlagInfo> {
    flags
        .iter()
        .map(|flag| FlagInfo {
            key: flag.key.clone(),
            enabled: flag.compiled.enabled,
            default_variant: flag.compiled.default_variant.as_str().into(),
            weights: flag
                .variants
                .iter()
                .zip(&flag.weights)
                .map(|(v, bp)| (v.name.clone(), *bp))
                .collect(),
        })
        .collect()
}

#[cfg(test)]
#[path = "source_tests.rs"]
mod tests;
