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
//!    breaker; each answer judged by [`verdict`] (empty? filtered?), a
//!    stream's [`opening`] read (held back until its first content when the
//!    flag judges answers) before it is committed; then
//! 4. [`respond`] builds the client's response — whole, or a [`stream`]
//!    filtered by [`sse`] — whose body carries the request's [`record`] to
//!    [`telemetry`] when it ends.
//!
//! Around it: [`settings`] (parsed from a source), [`config`] (where flags
//! come from, swapped atomically), [`usage`] (token counts), [`skim`] (the
//! JSON reader that judges whole answers without building them),
//! [`sendmsg`] (plain TCP, client or upstream, whose gathered writes are one
//! `sendmsg(2)`), and [`ablation`] (the benchmark's switches, in a build
//! with that feature).

// `pub` inside the modules marked `allow(unreachable_pub)` is what the fuzz
// targets reach through `fuzzing`; without that feature nothing outside the
// crate can, and the rest of those modules is `pub(crate)`.
#[cfg_attr(not(feature = "ablation"), allow(dead_code))]
mod ablation;
mod attempts;
#[cfg_attr(not(feature = "fuzzing"), allow(unreachable_pub))]
mod body;
#[cfg_attr(not(feature = "fuzzing"), allow(unreachable_pub))]
mod budget;
mod circuit;
mod config;
#[cfg_attr(not(feature = "fuzzing"), allow(unreachable_pub))]
mod error;
mod fallback;
#[cfg_attr(not(feature = "fuzzing"), allow(unreachable_pub))]
mod flags;
mod keyhash;
mod opening;
mod random;
mod record;
#[cfg_attr(not(feature = "fuzzing"), allow(unreachable_pub))]
mod request;
mod respond;
mod route;
mod sendmsg;
mod server;
mod settings;
mod skim;
#[cfg_attr(not(feature = "fuzzing"), allow(unreachable_pub))]
mod sse;
#[cfg_attr(not(feature = "fuzzing"), allow(unreachable_pub))]
mod stream;
mod telemetry;
mod text;
mod upstream;
mod usage;
#[cfg_attr(not(feature = "fuzzing"), allow(unreachable_pub))]
mod verdict;

// The public surface: what the binary, the integration tests and the
// developer tools (`aiflags-dev`: demo, mock upstream, benchmark) use.
#[cfg(feature = "ablation")]
pub use ablation::init_ablation;
pub use config::source::ConfigSource;
pub use server::{Sidecar, shutdown_signal};
pub use settings::source::{Args, Env, Layered, Source};
pub use settings::{Cli, Settings};
pub use telemetry::access_log::{Format, Sink};
pub use telemetry::metrics::Metrics;
pub use telemetry::pricing::{cost_usd, price_for};
pub use upstream::target::Upstreams;
pub use usage::{Usage, usage_from_response};

/// The parsers of untrusted bytes and the flag decision, for the fuzz
/// targets in `sidecar/fuzz` (`--features fuzzing`); not an API.
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing {
    pub use crate::budget::Budget;
    pub use crate::error::ProxyError;
    pub use crate::flags::decide::{RequestView, decide};
    pub use crate::flags::resolved::{ResolvedFlag, ResolvedVariant};
    pub use crate::flags::{Flags, Selection};
    pub use crate::request::decode::{self, DecodeError, StreamDecoder};
    pub use crate::request::splice::{Edits, splice};
    pub use crate::request::{Readable, ScannedBody, make_readable};
    pub use crate::sse::filter::StreamFilter;
    pub use crate::sse::parser::{SseEvent, SseParser};
    pub use crate::stream::error_event;
    pub use crate::verdict::whole::Answer;
    pub use crate::verdict::{Verdict, read_answer};
}
