//! The sidecar's integration tests, one binary: a mock upstream and the
//! sidecar in front of it (in-process, or the real binary as a child
//! process), driven through the request path from the outside.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

mod answers;
mod bad_input;
mod config;
mod fallback;
mod headers;
mod lifecycle;
mod routing;
mod split;
mod upstream_tls;
mod watch;
