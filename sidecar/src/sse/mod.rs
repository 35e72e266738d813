//! Server-Sent Events from upstreams: the WHATWG event parser ([`parser`])
//! and the filter that forwards a stream while reading its usage ([`filter`]).

pub mod filter;
pub mod parser;

pub use filter::StreamFilter;
pub use parser::{SseEvent, SseParser};

#[cfg(test)]
#[path = "tests.rs"]
mod tests;
