//! Server-Sent Events from upstreams: the WHATWG event parser ([`parser`])
//! and the filter that forwards a stream while reading its usage ([`filter`]).

pub(crate) mod filter;
pub(crate) mod parser;

pub(crate) use filter::StreamFilter;

#[cfg(test)]
#[path = "tests.rs"]
mod tests;
