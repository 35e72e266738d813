//! How a document is stored in the ConfigMap: compact JSON under
//! `data["config.json"]`, or, once that grows past [`GZIP_ABOVE_BYTES`], the
//! gzip of the same JSON under `binaryData["config.json.gz"]`. Exactly one of
//! the two keys is present. [`decode_config`] reads either form, so the
//! operator and the sidecar share one reader.

use std::io::{Read, Write};

use flate2::Compression;
use flate2::read::MultiGzDecoder;
use flate2::write::GzEncoder;

use super::{ConfigError, SidecarConfig};

/// `binaryData` key of the gzip-compressed document.
pub const CONFIG_MAP_GZIP_KEY: &str = "config.json.gz";
/// Compact JSON up to this size is stored as text, readable with `kubectl get
/// configmap -o yaml`; larger documents are compressed, which also shrinks
/// every watch event the namespace's sidecars receive (about 10x for flags).
pub const GZIP_ABOVE_BYTES: usize = 128 * 1024;
/// The API server refuses a ConfigMap whose `data` and `binaryData` values
/// add up to more than 1 MiB.
pub const MAX_CONFIG_MAP_BYTES: usize = 1024 * 1024;
/// Most bytes a compressed document may expand to. Guards sidecars against a
/// gzip bomb in a ConfigMap, and bounds the JSON a sidecar ever parses.
pub const MAX_DECODED_BYTES: usize = 16 * 1024 * 1024;

/// gzip streams start with these two bytes (RFC 1952); JSON never does.
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// A document as stored: the ConfigMap holds exactly one of the two forms.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EncodedConfig {
    /// Compact JSON, for `data["config.json"]`.
    Json(String),
    /// gzip of the compact JSON, for `binaryData["config.json.gz"]`.
    Gzip {
        bytes: Vec<u8>,
        /// Length of the JSON it holds.
        json_len: usize,
    },
}

impl EncodedConfig {
    /// Bytes the value adds to the ConfigMap's size.
    pub fn stored_len(&self) -> usize {
        match self {
            EncodedConfig::Json(json) => json.len(),
            EncodedConfig::Gzip { bytes, .. } => bytes.len(),
        }
    }

    /// Length of the JSON document a reader parses.
    pub fn json_len(&self) -> usize {
        match self {
            EncodedConfig::Json(json) => json.len(),
            EncodedConfig::Gzip { json_len, .. } => *json_len,
        }
    }

    /// Whether the API server accepts it and every reader decodes it.
    pub fn fits(&self) -> bool {
        self.stored_len() <= MAX_CONFIG_MAP_BYTES && self.json_len() <= MAX_DECODED_BYTES
    }

    /// `"json"` or `"gzip"`: a name for logs and metrics.
    pub fn format(&self) -> &'static str {
        match self {
            EncodedConfig::Json(_) => "json",
            EncodedConfig::Gzip { .. } => "gzip",
        }
    }
}

/// Compact JSON, gzip-compressed when larger than [`GZIP_ABOVE_BYTES`]. The
/// same document always gives the same bytes, so rewriting an unchanged
/// config is a no-op for the API server.
pub fn encode_config(config: &SidecarConfig) -> EncodedConfig {
    let json = config.to_compact_json();
    if json.len() <= GZIP_ABOVE_BYTES {
        return EncodedConfig::Json(json);
    }
    // The builder's header carries no file name and mtime 0: deterministic.
    let mut encoder = GzEncoder::new(Vec::with_capacity(json.len() / 8), Compression::default());
    // Writing to a Vec cannot fail.
    let bytes = encoder
        .write_all(json.as_bytes())
        .and_then(|()| encoder.finish())
        .unwrap_or_default();
    EncodedConfig::Gzip {
        bytes,
        json_len: json.len(),
    }
}

/// Reads a stored document, plain JSON or gzip (told apart by gzip's magic
/// bytes), and checks it as [`SidecarConfig::from_json`] does.
pub fn decode_config(bytes: &[u8]) -> Result<SidecarConfig, ConfigError> {
    if !bytes.starts_with(&GZIP_MAGIC) {
        return SidecarConfig::from_json(bytes);
    }
    let mut json = Vec::with_capacity(bytes.len().saturating_mul(8).min(MAX_DECODED_BYTES));
    // One byte past the limit tells "exactly at the limit" from "over it".
    let limit = u64::try_from(MAX_DECODED_BYTES).unwrap_or(u64::MAX) + 1;
    MultiGzDecoder::new(bytes)
        .take(limit)
        .read_to_end(&mut json)
        .map_err(|e| ConfigError::Gzip(e.to_string()))?;
    if json.len() > MAX_DECODED_BYTES {
        return Err(ConfigError::TooLarge {
            limit: MAX_DECODED_BYTES,
        });
    }
    SidecarConfig::from_json(&json)
}
