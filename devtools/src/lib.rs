//! aiflags-devtools: what developers, tests and the benchmark run beside the
//! sidecar, kept out of the sidecar's binary.
//!
//! - [`mock_upstream`]: a deterministic OpenAI/Anthropic-compatible upstream
//!   whose behaviour the model name picks.
//! - [`demo`]: the sidecar on the example flags in front of the mock, driven
//!   by simulated users (the README's main job).

pub mod demo;
pub mod mock_upstream;
mod serve;

pub use serve::shutdown_signal;
