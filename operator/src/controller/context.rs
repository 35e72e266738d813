//! What every reconcile shares: the API client, the flag cache, metrics,
//! and the per-namespace bookkeeping (one writer at a time, when the reader
//! Role was last applied, the config last written).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use std::borrow::Cow;

use aiflags_api::{AIFeatureFlag, AIFeatureFlagStatus};
use kube::Client;
use kube::runtime::events::Reporter;
use kube::runtime::reflector::Store;

use super::RESYNC;
use super::backoff::Backoff;
use super::config_map::MANAGER;
use crate::metrics::Metrics;
use crate::rollout::analysis::prometheus::Prometheus;
use crate::rollout::conditions::engine_part;
use crate::rollout::view::with_engine_part;
use crate::written::WrittenConfigs;

/// What every reconcile shares.
pub struct Context {
    pub client: Client,
    /// Who the Events say published them.
    pub reporter: Reporter,
    pub metrics: Arc<Metrics>,
    /// The config last written per namespace, for the propagation pass.
    pub written: Arc<WrittenConfigs>,
    /// The controller's cache of every flag: a reconcile reads its
    /// namespace's flags here instead of listing them from the API.
    pub(super) flags: Store<AIFeatureFlag>,
    pub(super) backoff: Backoff,
    /// One writer per namespace, so two flags reconciled at once cannot
    /// overwrite each other's view of the shared ConfigMap.
    pub(super) namespace_locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// When each namespace's Role and RoleBinding were last applied: once
    /// per resync period is enough to repair them, not once per flag.
    pub(super) readers_applied: Mutex<HashMap<String, Instant>>,
    /// Where the rollout analysis asks; `None`: analysis is inconclusive.
    pub prometheus: Option<Arc<Prometheus>>,
    /// The engine's part of each flag's status as this operator last wrote
    /// it, by `namespace/name`, with the flag's UID: fresher than the
    /// cache right after a write, so another flag's reconcile never
    /// compiles this one at its previous canary weight.
    engine_records: Mutex<HashMap<String, (String, AIFeatureFlagStatus)>>,
}

impl Context {
    /// `flags` is the reflector store of the controller that runs the
    /// reconciles (`Controller::store`).
    pub fn new(client: Client, metrics: Arc<Metrics>, flags: Store<AIFeatureFlag>) -> Self {
        Context {
            client,
            reporter: MANAGER.into(),
            metrics,
            written: Arc::default(),
            flags,
            backoff: Backoff::default(),
            namespace_locks: Mutex::default(),
            readers_applied: Mutex::default(),
            prometheus: None,
            engine_records: Mutex::default(),
        }
    }

    /// Remembers the engine's part of `flag`'s status, just written.
    pub(crate) fn engine_written(&self, flag: &AIFeatureFlag) {
        let Some(uid) = flag.metadata.uid.clone() else {
            return;
        };
        self.engine_records
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(record_key(flag), (uid, engine_part(flag.status.as_ref())));
    }

    pub(super) fn forget_engine_record(&self, flag: &AIFeatureFlag) {
        self.engine_records
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&record_key(flag));
    }

    /// `flag` with the engine's part of its status as last written, when
    /// this operator wrote it (for this very object).
    pub(super) fn with_engine_record<'a>(&self, flag: &'a AIFeatureFlag) -> Cow<'a, AIFeatureFlag> {
        let records = self
            .engine_records
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        match records.get(&record_key(flag)) {
            Some((uid, part))
                if flag.metadata.uid.as_ref() == Some(uid)
                    && engine_part(flag.status.as_ref()) != *part =>
            {
                let mut overlaid = flag.clone();
                overlaid.status = Some(with_engine_part(flag.status.clone(), part));
                Cow::Owned(overlaid)
            }
            _ => Cow::Borrowed(flag),
        }
    }

    /// Whether `namespace`'s Role and RoleBinding are due to be applied.
    pub(super) fn reader_due(&self, namespace: &str, now: Instant) -> bool {
        self.readers_applied
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(namespace)
            .is_none_or(|at| now.duration_since(*at) >= RESYNC)
    }

    pub(super) fn reader_applied(&self, namespace: &str, at: Option<Instant>) {
        let mut applied = self
            .readers_applied
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        match at {
            Some(at) => applied.insert(namespace.to_string(), at),
            None => applied.remove(namespace),
        };
    }

    /// The cached flags of `namespace`. The cache is at least as fresh as
    /// the flag being reconciled (the controller takes it from there), and
    /// any flag that changes later is reconciled again itself.
    pub(super) fn flags_in(&self, namespace: &str) -> Vec<Arc<AIFeatureFlag>> {
        self.flags
            .state_filter(|f| f.metadata.namespace.as_deref() == Some(namespace))
    }

    pub(super) fn namespace_lock(&self, namespace: &str) -> Arc<tokio::sync::Mutex<()>> {
        self.namespace_locks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(namespace.to_string())
            .or_default()
            .clone()
    }

    /// Drops `namespace`'s entry once its last flag is gone, so the map does
    /// not grow with every namespace that ever had a flag. Only if no other
    /// reconcile holds or awaits `lock`: each of those owns a clone, taken
    /// under the map's lock, so under it the count cannot rise meanwhile.
    /// A reconcile that comes later creates a fresh entry; the caller must
    /// not touch the config after this.
    pub(super) fn forget_namespace_lock(
        &self,
        namespace: &str,
        lock: &Arc<tokio::sync::Mutex<()>>,
    ) {
        let mut locks = self
            .namespace_locks
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        // One in the map, one the caller's.
        let unshared = Arc::strong_count(lock) == 2;
        if unshared && locks.get(namespace).is_some_and(|l| Arc::ptr_eq(l, lock)) {
            locks.remove(namespace);
        }
    }
}

fn record_key(flag: &AIFeatureFlag) -> String {
    format!(
        "{}/{}",
        flag.metadata.namespace.as_deref().unwrap_or_default(),
        flag.metadata.name.as_deref().unwrap_or_default()
    )
}
