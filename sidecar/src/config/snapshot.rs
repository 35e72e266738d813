//! The config a request is evaluated against: swapped whole, read cheaply.
//! A request clones the `Arc` once and keeps it, so a reload never changes a
//! request half-way.

use std::sync::{Arc, RwLock};
use std::time::SystemTime;

use crate::flags::Flags;

#[derive(Debug)]
pub(crate) struct Snapshot {
    /// The config's revision (the content hash of its flags).
    pub revision: String,
    /// Its flags whose podSelector matches this pod, resolved and indexed
    /// for the request path; each keeps its compiled form (for `/config`),
    /// the only copy the snapshot holds.
    pub flags: Flags,
    /// Where it came from, e.g. `file:/etc/aiflags/config.json`.
    pub source: String,
    pub loaded_at: SystemTime,
}

/// Holds the current snapshot; `None` until the first config loads.
#[derive(Debug, Default)]
pub(crate) struct SnapshotCell {
    current: RwLock<Option<Arc<Snapshot>>>,
}

impl SnapshotCell {
    pub(crate) fn current(&self) -> Option<Arc<Snapshot>> {
        // A poisoned lock still holds a whole Arc: the swap cannot tear.
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub(crate) fn swap(&self, snapshot: Snapshot) {
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(snapshot));
    }
}
