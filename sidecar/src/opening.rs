//! A stream's opening: what the attempt loop reads before it commits a
//! streamed response to the client. Until then the attempt may still fail
//! and fall back; after, nothing can be taken back.
//!
//! Without judging answers the opening is the stream's first data, as it
//! always was. When the flag's `fallback.on` names `empty` or
//! `contentFilter`, role-only and empty chunks are held back until the first
//! chunk that carries something the client would see (text, a tool call, a
//! refusal, reasoning), which then goes out with them — so the client's first
//! token comes when it would have anyway, and a stream that ends (or is
//! filtered) before saying anything is judged whole and can still fall back.
//! What is held is bounded by a size and by the memory budget; past either
//! the stream is let go unjudged rather than buffered.

use std::fmt::Display;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;
use hyper::body::Body;
use tokio::time::Instant;

use crate::budget::{Budget, Reservation};
use crate::stream::StreamReader;
use crate::verdict::Verdict;

/// The most of a silent opening held back: far more than the role and
/// metadata chunks (even a Responses `response.created` echoing long
/// instructions) that come before an answer's first content.
pub(crate) const MAX_HELD: usize = 256 * 1024;

/// Holding back a stream's silent opening.
pub(crate) struct Hold {
    pub budget: Arc<Budget>,
    pub limit: usize,
}

/// How the opening ended.
#[derive(Debug)]
pub(crate) enum Opened {
    /// Commit: these bytes (decoded and filtered) go to the client first.
    Commit {
        bytes: Bytes,
        held: Option<Reservation>,
    },
    /// The stream ended before it carried anything to show: its whole
    /// answer, judged, and its bytes.
    Ended {
        verdict: Verdict,
        bytes: Bytes,
        held: Option<Reservation>,
    },
}

/// Why no opening could be read; nothing has reached the client.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum OpenError {
    /// `by` passed first. `data`: some bytes had come (only while holding).
    Timeout { data: bool },
    /// The stream ended (without its end marker) or broke first.
    Cut { data: bool, detail: Option<String> },
    /// The upstream's encoding could not be undone.
    Undecodable(String),
}

/// Reads `body`'s opening through `reader` by `by`; `hold` when the flag
/// judges answers.
pub(crate) async fn open_stream<B>(
    body: &mut B,
    reader: &mut StreamReader,
    hold: Option<&Hold>,
    by: Instant,
) -> Result<Opened, OpenError>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Display,
{
    let mut out = BytesMut::new();
    let mut held = hold.map(|h| h.budget.reserve_none());
    let mut data = false;
    loop {
        let frame = match tokio::time::timeout_at(by, body.frame()).await {
            Err(_) => return Err(OpenError::Timeout { data }),
            Ok(None) => break,
            Ok(Some(Err(e))) => {
                let detail = Some(e.to_string());
                return Err(OpenError::Cut { data, detail });
            }
            Ok(Some(Ok(frame))) => frame,
        };
        let Some(chunk) = frame.into_data().ok().filter(|d| !d.is_empty()) else {
            continue;
        };
        data = true;
        out.extend_from_slice(&reader.feed(chunk).map_err(OpenError::Undecodable)?);
        let Some(hold) = hold else {
            return Ok(commit(out, held));
        };
        let filter = reader.filter();
        // Something to show, or the upstream's own error event: the client's.
        if filter.judge().opened() || filter.saw_error() {
            return Ok(commit(out, held));
        }
        if reader.ended_naturally() {
            return Ok(ended(reader, out, held));
        }
        let fits = out.len() <= hold.limit && held.as_mut().is_none_or(|r| r.resize(out.len()));
        if !fits {
            tracing::debug!(
                held = out.len(),
                "a stream's silent opening outgrew what may be held; sent on unjudged"
            );
            return Ok(commit(out, held));
        }
    }
    // The upstream closed the stream while it was held.
    if !data {
        return Err(OpenError::Cut { data, detail: None });
    }
    let (rest, error) = reader.finish();
    out.extend_from_slice(&rest);
    if let Some(error) = error {
        return Err(OpenError::Undecodable(error));
    }
    match reader.ended_naturally() {
        true => Ok(ended(reader, out, held)),
        false if reader.filter().saw_error() => Ok(commit(out, held)),
        false => Err(OpenError::Cut { data, detail: None }),
    }
}

fn commit(out: BytesMut, held: Option<Reservation>) -> Opened {
    Opened::Commit {
        bytes: out.freeze(),
        held,
    }
}

fn ended(reader: &StreamReader, out: BytesMut, held: Option<Reservation>) -> Opened {
    Opened::Ended {
        verdict: reader.filter().judge().facts().verdict(),
        bytes: out.freeze(),
        held,
    }
}

#[cfg(test)]
#[path = "opening_tests.rs"]
mod tests;
