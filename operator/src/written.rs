//! The config the operator last wrote in each namespace, shared with the
//! propagation pass: it tells which revision the sidecars should serve and
//! which pods each served flag applies to.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};

use aiflags_api::SidecarConfig;

#[derive(Debug, Default)]
pub struct WrittenConfigs {
    by_namespace: RwLock<HashMap<String, Arc<SidecarConfig>>>,
}

impl WrittenConfigs {
    pub fn set(&self, namespace: &str, config: SidecarConfig) {
        self.by_namespace
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(namespace.to_string(), Arc::new(config));
    }

    /// The namespace has no flags left.
    pub fn remove(&self, namespace: &str) {
        self.by_namespace
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(namespace);
    }

    pub fn get(&self, namespace: &str) -> Option<Arc<SidecarConfig>> {
        self.by_namespace
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(namespace)
            .cloned()
    }

    /// Every namespace's config, as of now.
    pub fn snapshot(&self) -> HashMap<String, Arc<SidecarConfig>> {
        self.by_namespace
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}
