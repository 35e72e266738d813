//! The config a sidecar serves: where it comes from ([`source`], [`local`],
//! [`watch`], [`labels`]) and the snapshot requests read ([`snapshot`]).

pub mod labels;
pub mod local;
pub mod snapshot;
pub mod source;
pub mod watch;
