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
use tokio::sync::{mpsc, watch};

use super::labels::parse_pod_labels;
use super::local::LocalFlags;
use super::snapshot::{Snapshot, SnapshotCell};
use super::watch::WatchUpdate;
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
pub(crate) struct ConfigLoader {
    source: ConfigSource,
    pod_labels: Option<PathBuf>,
    upstreams: Upstreams,
    /// What the last applied (or failed) poll read; unchanged means no work.
    applied: Option<u64>,
    /// Local mode: a fingerprint seen once, waiting to be seen again.
    settling: Option<u64>,
    local: LocalFlags,
    /// The pod's labels as last read (empty without a labels file).
    labels: BTreeMap<String, String>,
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct LoadError(String);

/// What one poll looks at: the files (as resolved through symlinks) and
/// the pod's labels.
struct Inputs {
    files: Vec<PathBuf>,
    labels: BTreeMap<String, String>,
}

impl ConfigLoader {
    pub(crate) fn new(
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
            labels: BTreeMap::new(),
        }
    }

    /// `Ok(None)` when nothing (new) is to be applied.
    pub(crate) fn poll(&mut self) -> Result<Option<Snapshot>, LoadError> {
        let inputs = self.locate()?;
        // The files are hashed as they stream by; their content is held
        // only when it is to be applied (a poll of an unchanged 1 MB file
        // allocates nothing for it).
        let mut fingerprint = Fingerprint::new(&inputs.labels);
        for path in &inputs.files {
            fingerprint.add_file(path)?;
        }
        let fingerprint = fingerprint.finish();
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
        let files: Vec<(PathBuf, Vec<u8>)> = inputs
            .files
            .into_iter()
            .map(|path| read_file(&path).map(|bytes| (path, bytes)))
            .collect::<Result<_, _>>()?;
        let mut read = Fingerprint::new(&inputs.labels);
        for (path, bytes) in &files {
            read.add(path, bytes);
        }
        if read.finish() != fingerprint {
            // Changed between the two reads: a write under way. The next
            // poll sees how it ends.
            self.settling = None;
            return Ok(None);
        }
        self.settling = None;
        // Remember failures too: a broken document is reported once, not every poll.
        self.applied = Some(fingerprint);
        let (config, source) = match &self.source {
            ConfigSource::None => (SidecarConfig::empty(None), "none".to_string()),
            ConfigSource::File(path) => {
                let config = match files.first() {
                    Some((resolved, bytes)) => aiflags_api::decode_config(bytes)
                        .map_err(|e| LoadError(format!("{}: {e}", resolved.display())))?,
                    None => SidecarConfig::empty(None),
                };
                (config, format!("file:{}", path.display()))
            }
            ConfigSource::Flags(path) => (
                self.local.compile(&files),
                format!("flags:{}", path.display()),
            ),
        };
        drop(files);
        self.labels = inputs.labels;
        Ok(Some(self.snapshot(config, source)))
    }

    /// A snapshot of `config` for this pod: only the flags its labels
    /// select, resolved against the upstreams. Used for the file's configs
    /// and the watch's alike.
    pub(crate) fn snapshot(&self, config: SidecarConfig, source: String) -> Snapshot {
        // Without a labels file (a laptop, a plain process) there is no pod to
        // select: every flag applies, as the manifests on disk say.
        let config = match &self.pod_labels {
            Some(_) => config.for_pod(&self.labels),
            None => config,
        };
        Snapshot {
            revision: config.revision,
            flags: Flags::new(config.flags, &self.upstreams),
            source,
            loaded_at: SystemTime::now(),
        }
    }

    fn locate(&self) -> Result<Inputs, LoadError> {
        let files = match &self.source {
            ConfigSource::None => Vec::new(),
            // No file at all: the namespace has no flags yet, so its
            // ConfigMap (mounted optional) does not exist. That is an empty
            // config, not an error: the sidecar is ready and passes through.
            ConfigSource::File(path) => locate_config_file(path)?.into_iter().collect(),
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
                paths.iter().map(|p| resolve(p)).collect::<Result<_, _>>()?
            }
            ConfigSource::Flags(path) => vec![resolve(path)?],
        };
        let labels = match &self.pod_labels {
            None => BTreeMap::new(),
            Some(path) => {
                let bytes = read_file(&resolve(path)?)?;
                parse_pod_labels(&String::from_utf8_lossy(&bytes))
            }
        };
        Ok(Inputs { files, labels })
    }
}

/// A poll's fingerprint: the pod's labels, then per file its resolved path,
/// its bytes and their count. Built the same way whether the bytes stream
/// through or are held.
struct Fingerprint(DefaultHasher);

impl Fingerprint {
    fn new(labels: &BTreeMap<String, String>) -> Self {
        let mut hasher = DefaultHasher::new();
        labels.hash(&mut hasher);
        Fingerprint(hasher)
    }

    fn add(&mut self, path: &Path, bytes: &[u8]) {
        path.hash(&mut self.0);
        self.0.write(bytes);
        self.0.write_u64(bytes.len() as u64);
    }

    /// [`Fingerprint::add`] for a file read in pieces.
    fn add_file(&mut self, path: &Path) -> Result<(), LoadError> {
        let failed = |e: std::io::Error| LoadError(format!("{}: {e}", path.display()));
        path.hash(&mut self.0);
        let mut file = std::fs::File::open(path).map_err(failed)?;
        let mut piece = [0u8; 16 * 1024];
        let mut total: u64 = 0;
        loop {
            let n = file.read(&mut piece).map_err(failed)?;
            if n == 0 {
                break;
            }
            total += n as u64;
            if total > MAX_CONFIG_BYTES {
                return Err(too_large(path));
            }
            self.0.write(&piece[..n]);
        }
        self.0.write_u64(total);
        Ok(())
    }

    fn finish(self) -> u64 {
        self.0.finish()
    }
}

fn too_large(path: &Path) -> LoadError {
    LoadError(format!(
        "{}: larger than {MAX_CONFIG_BYTES} bytes",
        path.display()
    ))
}

/// The mounted config: `config.json`, else the gzip form beside it; `None`
/// when neither exists.
fn locate_config_file(path: &Path) -> Result<Option<PathBuf>, LoadError> {
    let mut gz = path.as_os_str().to_owned();
    gz.push(".gz");
    let gz = PathBuf::from(gz);
    for candidate in [path, gz.as_path()] {
        if std::fs::metadata(candidate).is_ok() {
            return resolve(candidate).map(Some);
        }
    }
    Ok(None)
}

/// The final path through symlinks, so a `..data` swap to an identical
/// document still counts as seen.
fn resolve(path: &Path) -> Result<PathBuf, LoadError> {
    std::fs::canonicalize(path).map_err(|e| LoadError(format!("{}: {e}", path.display())))
}

/// A file's bytes, at most [`MAX_CONFIG_BYTES`].
fn read_file(path: &Path) -> Result<Vec<u8>, LoadError> {
    let failed = |e: std::io::Error| LoadError(format!("{}: {e}", path.display()));
    let mut file = std::fs::File::open(path).map_err(failed)?;
    let size = file.metadata().map_or(0, |m| m.len()).min(MAX_CONFIG_BYTES);
    let mut bytes = Vec::with_capacity(usize::try_from(size).unwrap_or(0) + 1);
    (&mut file)
        .take(MAX_CONFIG_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(failed)?;
    if bytes.len() as u64 > MAX_CONFIG_BYTES {
        return Err(too_large(path));
    }
    Ok(bytes)
}

/// Loads once from the files, then keeps polling them and listening to the
/// watch (if any) until `stop` flips. Returns after the first load attempt
/// so the caller can start serving.
///
/// While the watch is healthy it decides what serves; the files are still
/// polled (for the pod's labels, and as the fallback). When the watch is
/// lost, what it said last keeps serving, and a change to the mounted file
/// applies, until the watch is back.
pub(crate) fn spawn_reloader(
    mut loader: ConfigLoader,
    cell: Arc<SnapshotCell>,
    telemetry: SharedTelemetry,
    interval: Duration,
    watch_updates: Option<(String, mpsc::Receiver<WatchUpdate>)>,
    mut stop: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    let (watch_label, watch_updates) = match watch_updates {
        Some((label, updates)) => (label, Some(updates)),
        None => (String::new(), None),
    };
    let mut state = Serving {
        watch_label,
        ..Serving::default()
    };
    let first = loader.poll();
    state.file_polled(first, &loader, &cell, &telemetry);
    tokio::spawn(async move {
        let mut updates = watch_updates;
        // An interval, not a sleep per turn: a busy watch cannot starve the
        // file poll (it also reads the pod's labels).
        let mut ticks = tokio::time::interval(interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticks.tick().await;
        loop {
            let update = tokio::select! {
                _ = ticks.tick() => None,
                update = next_update(&mut updates) => update,
                _ = stop.changed() => return,
            };
            // File reads, local-mode compiles and resolving a config (its
            // model globs compile) block: keep them off the (by default
            // single) thread that serves requests.
            let (cell, telemetry) = (cell.clone(), telemetry.clone());
            let handled = tokio::task::spawn_blocking(move || {
                match update {
                    Some(update) => state.watched(update, &loader, &cell, &telemetry),
                    None => {
                        let polled = loader.poll();
                        state.file_polled(polled, &loader, &cell, &telemetry);
                    }
                }
                (loader, state)
            });
            match handled.await {
                Ok((back, serving)) => {
                    loader = back;
                    state = serving;
                }
                Err(e) => {
                    tracing::error!(error = %e, "config reload task failed; reloading stops");
                    return;
                }
            }
        }
    })
}

/// The next watch update; pending forever without a watch (or once it ended).
async fn next_update(updates: &mut Option<mpsc::Receiver<WatchUpdate>>) -> Option<WatchUpdate> {
    match updates {
        Some(receiver) => match receiver.recv().await {
            Some(update) => Some(update),
            None => {
                *updates = None;
                std::future::pending().await
            }
        },
        None => std::future::pending().await,
    }
}

/// Which source serves, and what each last said.
#[derive(Default)]
struct Serving {
    /// The watch's config while the watch is healthy.
    watched: Option<SidecarConfig>,
    /// (revision, labels) of what serves, so an identical relist is no reload.
    serving: Option<(String, BTreeMap<String, String>)>,
    /// `watch:namespace/name`, the source the watch's snapshots name.
    watch_label: String,
}

impl Serving {
    fn file_polled(
        &mut self,
        polled: Result<Option<Snapshot>, LoadError>,
        loader: &ConfigLoader,
        cell: &SnapshotCell,
        telemetry: &SharedTelemetry,
    ) {
        match polled {
            Ok(None) => {}
            Ok(Some(snapshot)) => {
                match &self.watched {
                    // The watch serves; the poll may have brought new labels.
                    Some(config) => {
                        let rebuilt = loader.snapshot(config.clone(), self.watch_label.clone());
                        self.apply(rebuilt, loader, cell, telemetry);
                    }
                    None => self.apply(snapshot, loader, cell, telemetry),
                }
            }
            Err(e) if self.watched.is_some() => {
                tracing::debug!(error = %e, "mounted config not loaded; the watch serves");
            }
            Err(e) => {
                let serving = cell.current().map(|s| s.revision.clone());
                tracing::warn!(error = %e, serving = ?serving, "config not loaded; the last good config keeps serving");
                telemetry.config_failed(serving.as_deref());
            }
        }
    }

    fn watched(
        &mut self,
        update: WatchUpdate,
        loader: &ConfigLoader,
        cell: &SnapshotCell,
        telemetry: &SharedTelemetry,
    ) {
        match update {
            WatchUpdate::Config(config) => {
                if self.watched.is_none() {
                    telemetry.config_watch(true);
                }
                self.watched = Some(config.clone());
                let snapshot = loader.snapshot(config, self.watch_label.clone());
                self.apply(snapshot, loader, cell, telemetry);
            }
            WatchUpdate::Invalid(message) => {
                let serving = cell.current().map(|s| s.revision.clone());
                tracing::warn!(error = %message, serving = ?serving, "watched config not loaded; the last good config keeps serving");
                telemetry.config_failed(serving.as_deref());
            }
            WatchUpdate::Lost(message) => {
                // What the watch last said stays: it is newer than the file,
                // which kubelet updates a minute or two late. A change to
                // the file while the watch is down does apply.
                self.watched = None;
                telemetry.config_watch(false);
                tracing::warn!(error = %message, "config watch lost; the last config keeps serving, and changes to the mounted file apply until the watch is back");
            }
        }
    }

    fn apply(
        &mut self,
        snapshot: Snapshot,
        loader: &ConfigLoader,
        cell: &SnapshotCell,
        telemetry: &SharedTelemetry,
    ) {
        let key = (snapshot.revision.clone(), loader.labels.clone());
        if self.serving.as_ref() == Some(&key) {
            return;
        }
        self.serving = Some(key);
        let revision = snapshot.revision.clone();
        tracing::info!(
            revision = %revision,
            source = %snapshot.source,
            flags = snapshot.flags.len(),
            "config loaded"
        );
        let infos = flag_infos(&snapshot.flags);
        cell.swap(snapshot);
        telemetry.config_loaded(&revision, infos);
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
