//! Progressive delivery: the rollout engine (a pure state machine), the
//! analysis that judges the canary from Prometheus, and the manual
//! commands given by annotation.

pub mod analysis;
pub mod commands;
pub mod conditions;
pub mod engine;
pub mod metrics;
pub mod view;

use aiflags_api::{CheckResult, VariantMeasurements};

/// A manual command, given by annotation (`aiflags.dev/promote`, ...).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Command {
    Promote,
    Abort,
    Pause,
    Resume,
}

/// What one analysis check found.
#[derive(Clone, Debug, PartialEq)]
pub struct Verdict {
    pub result: CheckResult,
    pub message: String,
    pub canary: Option<VariantMeasurements>,
    pub stable: Option<VariantMeasurements>,
}

#[cfg(test)]
mod proptests;
#[cfg(test)]
pub(crate) mod sim;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_commands;
