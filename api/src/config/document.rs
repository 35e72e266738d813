//! The document: schema, revision, and the checks a sidecar makes before
//! swapping it in.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{CONFIG_SCHEMA, CompiledFlag};

/// One namespace's compiled flags.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SidecarConfig {
    /// Always [`CONFIG_SCHEMA`]; sidecars reject any other.
    pub schema: String,
    /// Content hash of `flags`; what sidecars report and the operator waits for.
    pub revision: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Sorted by `key`. Shared, not copied, between a config and the next
    /// one that keeps a flag's last valid version, and with what a sidecar
    /// serves from it.
    pub flags: Vec<Arc<CompiledFlag>>,
}

/// Why a document is not a usable config.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ConfigError {
    #[error("config is not valid JSON: {0}")]
    Json(String),
    #[error("config schema {found:?} is not supported (expected {CONFIG_SCHEMA:?})")]
    UnknownSchema { found: String },
    #[error("config revision {found:?} does not match its content (expected {expected:?})")]
    RevisionMismatch { found: String, expected: String },
    #[error("flags[{index}] ({key}): {message}")]
    InvalidFlag {
        index: usize,
        key: String,
        message: String,
    },
    #[error("config.json.gz is not a readable gzip stream: {0}")]
    Gzip(String),
    #[error("config.json.gz expands to more than {limit} bytes")]
    TooLarge { limit: usize },
}

impl SidecarConfig {
    /// Builds a document from compiled flags, sorting them and computing the revision.
    pub fn new(namespace: Option<String>, mut flags: Vec<Arc<CompiledFlag>>) -> Self {
        flags.sort_by(|a, b| (&a.namespace, &a.key).cmp(&(&b.namespace, &b.key)));
        let revision = revision_of(&flags);
        SidecarConfig {
            schema: CONFIG_SCHEMA.to_string(),
            revision,
            namespace,
            flags,
        }
    }

    /// An empty config: what a namespace with no valid flag serves.
    pub fn empty(namespace: Option<String>) -> Self {
        Self::new(namespace, Vec::new())
    }

    /// Parses and checks a document as a sidecar must before swapping it in:
    /// known schema, honest revision, internally consistent flags.
    pub fn from_json(bytes: &[u8]) -> Result<Self, ConfigError> {
        // Look at the schema first, so a future document gets the clear error
        // rather than a field-level one.
        let raw: serde_json::Value =
            serde_json::from_slice(bytes).map_err(|e| ConfigError::Json(e.to_string()))?;
        let found = raw.get("schema").and_then(|s| s.as_str()).unwrap_or("");
        if found != CONFIG_SCHEMA {
            return Err(ConfigError::UnknownSchema {
                found: found.to_string(),
            });
        }
        let config: SidecarConfig =
            serde_json::from_value(raw).map_err(|e| ConfigError::Json(e.to_string()))?;
        let expected = revision_of(&config.flags);
        if config.revision != expected {
            return Err(ConfigError::RevisionMismatch {
                found: config.revision,
                expected,
            });
        }
        for (index, flag) in config.flags.iter().enumerate() {
            flag.check().map_err(|message| ConfigError::InvalidFlag {
                index,
                key: flag.key.clone(),
                message,
            })?;
        }
        Ok(config)
    }

    /// Pretty JSON, for people (`aiflags-operator render`).
    pub fn to_json(&self) -> String {
        // Serialising plain data with string keys cannot fail.
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    /// Compact JSON, as stored in the ConfigMap (see [`super::encode_config`]).
    pub fn to_compact_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Keeps only the flags whose pod selector matches these pod labels.
    pub fn for_pod(&self, labels: &BTreeMap<String, String>) -> SidecarConfig {
        let flags = self
            .flags
            .iter()
            .filter(|f| f.pod_selector.as_ref().is_none_or(|s| s.matches(labels)))
            .cloned()
            .collect();
        SidecarConfig {
            schema: self.schema.clone(),
            revision: self.revision.clone(),
            namespace: self.namespace.clone(),
            flags,
        }
    }

    pub fn flag(&self, key: &str) -> Option<&CompiledFlag> {
        self.flags.iter().find(|f| f.key == key).map(|f| &**f)
    }
}

/// `sha256` of the canonical JSON of the flags, first 16 hex digits.
pub fn revision_of(flags: &[Arc<CompiledFlag>]) -> String {
    // Hashed as it is written: a large config is not held twice for it.
    struct Hashing(Sha256);
    impl std::io::Write for Hashing {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.update(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut hashing = Hashing(Sha256::new());
    // Serialising plain data with string keys into memory cannot fail.
    let _ = serde_json::to_writer(&mut hashing, flags);
    hex::encode(&hashing.0.finalize()[..8])
}
