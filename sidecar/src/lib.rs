//! aiflags-sidecar: the per-pod LLM proxy that applies compiled aiflags config.
//!
//! A request's path, in order: `server` accepts it, `proxy` reads it and asks
//! `evaluate` for the flag and variant (`bucketing` does the sticky split),
//! `rewrite` edits the body, `fallback` and `circuit` drive the attempts that
//! `upstream` sends, and `sse` watches streamed responses for usage.

// Pure request evaluation: no I/O below this line.
pub mod bucketing;
pub mod circuit;
pub mod evaluate;
pub mod fallback;
pub mod pricing;
pub mod rewrite;
pub mod sse;
pub mod usage;

// The I/O shell.
pub mod attempts;
pub mod body;
pub mod config_source;
pub mod error;
pub mod metrics;
pub mod proxy;
mod respond;
pub mod server;
pub mod settings;
pub mod snapshot;
pub mod stream;
pub mod telemetry;
pub mod upstream;
