//! The compiled config document the operator writes to the ConfigMap
//! `aiflags-config` (key `config.json`) and every sidecar reads.
//!
//! Everything a sidecar needs is resolved here: weights are integer basis
//! points in variant order, durations are milliseconds, references are
//! checked. The format is documented in `docs/config-format.md`.
//!
//! One submodule per part of the document: `document` (schema, revision,
//! checks), `encoding` (compact JSON or gzip, as stored), `flag` (a compiled flag, its variants and targeting), `sticky`,
//! `fallback`, `selector`.

mod document;
mod encoding;
mod fallback;
mod flag;
mod selector;
mod sticky;

pub use self::document::{ConfigError, SidecarConfig, revision_of};
pub use self::encoding::{
    CONFIG_MAP_GZIP_KEY, EncodedConfig, GZIP_ABOVE_BYTES, MAX_CONFIG_MAP_BYTES, MAX_DECODED_BYTES,
    decode_config, encode_config,
};
pub use self::fallback::{
    CompiledFallback, DEFAULT_DEADLINE_MS, DEFAULT_PER_ATTEMPT_TIMEOUT_MS, FAILURE_CLASSES,
    Failure, FailureClass, MAX_RETRIES, MAX_TIMEOUT_MS,
};
pub use self::flag::{CompiledFlag, CompiledTargeting, CompiledVariant, is_secret_key};
pub use self::selector::{Selector, SelectorOperator, SelectorRequirement};
pub use self::sticky::StickySource;
pub(crate) use self::sticky::http_token;

/// The only document schema this build understands.
pub const CONFIG_SCHEMA: &str = "aiflags.dev/config/v1";
/// ConfigMap name the operator writes in every namespace with flags.
pub const CONFIG_MAP_NAME: &str = "aiflags-config";
/// `data` key of the document stored as plain JSON ([`CONFIG_MAP_GZIP_KEY`]
/// holds it when compressed).
pub const CONFIG_MAP_KEY: &str = "config.json";
/// Total of a flag's weights.
pub const TOTAL_BP: u32 = 10_000;
