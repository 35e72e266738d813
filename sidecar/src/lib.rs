//! aiflags-sidecar: the per-pod LLM proxy that applies compiled aiflags config.
//!
//! A request's path, in order — each module calls only those below it:
//!
//! 1. [`server`] accepts the connection (caps, timeouts, drain) and hands
//!    each request to
//! 2. [`route`], which checks its target, reads its body ([`request`]:
//!    bounded by the [`budget`], decoded, scanned), finds its flag and
//!    variant ([`flags`]), and runs
//! 3. [`attempts`]: the [`fallback`] state machine's steps, each spliced
//!    ([`request::splice`]) and sent [`upstream`] behind a [`circuit`]
//!    breaker; then
//! 4. [`respond`] builds the client's response — whole, or a [`stream`]
//!    filtered by [`sse`] — whose body carries the request's [`record`] to
//!    [`telemetry`] when it ends.
//!
//! Around it: [`settings`] (parsed from a source), [`config`] (where flags
//! come from, swapped atomically), [`usage`] (token counts).

pub mod attempts;
pub mod body;
pub mod budget;
pub mod circuit;
pub mod config;
pub mod error;
pub mod fallback;
pub mod flags;
pub mod random;
pub mod record;
pub mod request;
pub mod respond;
pub mod route;
pub mod server;
pub mod settings;
pub mod sse;
pub mod stream;
pub mod telemetry;
pub mod text;
pub mod upstream;
pub mod usage;
