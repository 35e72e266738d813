//! aiflags-operator: reconciles `AIFeatureFlag`s into each namespace's
//! `aiflags-config` ConfigMap, and the offline commands `crdgen` and `render`.
//!
//! The decisions (what the ConfigMap and a flag's status should say, which
//! Event to publish, how long to back off) are pure functions; the
//! Kubernetes and HTTP shells around them stay thin.

pub mod cli;
pub mod controller;
pub mod crdgen;
pub mod injection;
pub mod leader;
pub mod metrics;
pub mod notice;
pub mod propagation;
pub mod render;
pub mod restart;
pub mod rollout;
pub mod run;
pub mod server;
pub mod telemetry;
pub mod webhook;
pub mod written;
