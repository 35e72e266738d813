//! An Event the operator publishes about a flag, whether the reconciler or
//! the rollout engine decided it: a leaf both use, so neither reaches into
//! the other for it.

/// An Event to publish about a flag.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Notice {
    pub warning: bool,
    pub reason: &'static str,
    /// What the operator did: `Compile` or `Remove`.
    pub action: &'static str,
    pub note: String,
}
