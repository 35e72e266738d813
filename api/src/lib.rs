//! aiflags-api: the `AIFeatureFlag` resource, the compiled sidecar config, and
//! the pure compiler between them. No I/O lives here.

pub mod compile;
pub mod config;
// `KubeSchema` re-emits each deriving struct behind a private shim, which trips the lint.
#[allow(unreachable_pub)]
pub mod crd;
pub mod duration;
pub mod manifest;
mod schema;
pub mod status;

pub use compile::{
    Compilation, FieldError, FlagInput, FlagOutcome, compile, compile_flag, rollout_identity,
};
pub use config::*;
pub use crd::*;
pub use manifest::{
    Manifest, ManifestCompiler, ManifestError, compile_manifests, for_each_manifest,
    parse_manifests,
};
