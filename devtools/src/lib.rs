//! aiflags-devtools: what developers, tests and the benchmark run beside the
//! sidecar, kept out of the sidecar's binary.
//!
//! - [`mock_upstream`]: a deterministic OpenAI/Anthropic-compatible upstream
//!   whose behaviour the model name picks.
//! - [`demo`]: the sidecar on the example flags in front of the mock, driven
//!   by simulated users (the README's main job).
//! - [`bare_proxy`]: a reverse proxy on the sidecar's stack that only
//!   forwards, the benchmark's floor for what hyper and tokio cost.
//! - [`raw_proxy`]: HTTP/1.1 forwarding without hyper, the benchmark's
//!   measure of what an HTTP layer of the sidecar's own could cost.
//! - [`rollout_harness`]: the operator's part in a progressive rollout
//!   (propagation, engine, analysis, compile) without a Kubernetes API
//!   server, writing the sidecars' config file.

pub mod bare_proxy;
pub mod demo;
pub mod mock_upstream;
pub mod raw_proxy;
pub mod rollout_harness;
mod serve;

pub use serve::shutdown_signal;
