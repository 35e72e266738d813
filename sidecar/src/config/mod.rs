//! The config a sidecar serves: where it comes from ([`source`], [`local`],
//! [`watch`], [`labels`]) and the snapshot requests read ([`snapshot`]).

pub(crate) mod labels;
pub(crate) mod local;
pub(crate) mod snapshot;
pub(crate) mod source;
pub(crate) mod watch;
