//! The client's request body on its way in: read within the size limit and
//! the process-wide memory budget, decoded where it was encoded, scanned for
//! the few fields a flag needs — and, once a variant is chosen, spliced.

pub mod decode;
pub(crate) mod scan;
pub(crate) mod splice;

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use http::HeaderMap;
use http_body_util::BodyExt;
use hyper::body::Body;

use self::decode::{DecodeError, codings, decode_whole, strip_bom};
use self::scan::{ScanError, Scanned};
use crate::budget::{Budget, Reservation};
use crate::error::ProxyError;

/// A request body as the flag lookup sees it.
pub enum Readable {
    /// Decoded and scanned: its fields can be read and spliced.
    Scanned(ScannedBody),
    /// Could not be read as JSON; `reason` labels the unparsed-request metric.
    /// `bytes` are the bytes as the client sent them.
    Opaque {
        bytes: Bytes,
        reason: &'static str,
        detail: String,
    },
}

/// A body whose top-level JSON members are located.
pub struct ScannedBody {
    /// The decoded bytes (without a byte order mark).
    pub bytes: Bytes,
    pub scanned: Scanned,
    /// Whether the client's `content-encoding` was undone: the body then
    /// travels upstream decoded.
    pub decoded: bool,
}

/// Why a whole body could not be read.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ReadError {
    #[error("the body is larger than the limit")]
    TooLarge,
    #[error("the buffer budget is spent")]
    Budget,
    #[error("{0}")]
    Broken(String),
}

impl ReadError {
    /// The proxy's answer to a request body it could not read.
    pub(crate) fn into_proxy_error(self, limit: usize, budget: &Arc<Budget>) -> ProxyError {
        match self {
            ReadError::TooLarge => ProxyError::BodyTooLarge { limit },
            ReadError::Budget => ProxyError::budget(budget),
            ReadError::Broken(e) => ProxyError::ReadBody(e),
        }
    }
}

/// Reads a whole body (a request's, or a response's): refused past `limit`
/// bytes and past the budget, before a byte more is held.
pub(crate) async fn read_bounded<B>(
    mut body: B,
    limit: usize,
    budget: &Arc<Budget>,
) -> Result<(Bytes, Reservation), ReadError>
where
    B: Body<Data = Bytes, Error = hyper::Error> + Unpin,
{
    let declared = body.size_hint().lower();
    if declared > limit as u64 {
        return Err(ReadError::TooLarge);
    }
    // Held as the bytes arrive, not as declared: a client that declares a
    // large body and trickles it holds no more of the budget than it sent.
    let mut reservation = budget.reserve_none();
    // Most bodies arrive as one chunk: keep it without copying.
    let mut first: Option<Bytes> = None;
    let mut rest: Option<BytesMut> = None;
    let mut len = 0usize;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| ReadError::Broken(e.to_string()))?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        len = len.saturating_add(data.len());
        if len > limit {
            return Err(ReadError::TooLarge);
        }
        if len > reservation.bytes() && !reservation.resize(len) {
            return Err(ReadError::Budget);
        }
        match (&mut first, &mut rest) {
            (None, _) => first = Some(data),
            (Some(head), None) => {
                // Sized for the declared length at once: one buffer, no
                // copies as it grows. Pages not yet written cost no memory;
                // the budget counts what arrived.
                let mut joined = BytesMut::with_capacity((declared as usize).max(len));
                joined.extend_from_slice(head);
                joined.extend_from_slice(&data);
                rest = Some(joined);
            }
            (Some(_), Some(joined)) => joined.extend_from_slice(&data),
        }
    }
    let bytes = match (first, rest) {
        (_, Some(joined)) => joined.freeze(),
        (Some(head), None) => head,
        (None, None) => Bytes::new(),
    };
    reservation.resize(bytes.len());
    Ok((bytes, reservation))
}

/// Decodes and scans a body read by [`read_bounded`]; the reservation grows
/// to cover a decoded copy.
pub fn make_readable(
    bytes: Bytes,
    headers: &HeaderMap,
    limit: usize,
    reservation: &mut Reservation,
    budget: &Arc<Budget>,
) -> Result<Readable, ProxyError> {
    let codings = match codings(headers) {
        Ok(codings) => codings,
        Err(e) => return Ok(opaque(bytes, "encoding", e.to_string())),
    };
    let decoded = !codings.is_empty();
    let plain = if decoded {
        match decode_whole(bytes.clone(), &codings, limit) {
            Ok(plain) => {
                if !reservation.resize(bytes.len().saturating_add(plain.len())) {
                    return Err(ProxyError::budget(budget));
                }
                plain
            }
            Err(DecodeError::TooLarge { .. }) => return Err(ProxyError::BodyTooLarge { limit }),
            Err(e) => return Ok(opaque(bytes, "encoding", e.to_string())),
        }
    } else {
        bytes.clone()
    };
    let plain = strip_bom(plain);
    match Scanned::new(&plain) {
        Ok(scanned) => Ok(Readable::Scanned(ScannedBody {
            bytes: plain,
            scanned,
            decoded,
        })),
        Err(e) => Ok(opaque(
            bytes,
            e.reason(),
            format!("the body is {}", describe(e)),
        )),
    }
}

fn describe(e: ScanError) -> &'static str {
    match e {
        ScanError::NotJson => "not JSON",
        ScanError::NotObject => "JSON but not an object",
        ScanError::TooManyMembers => "an object of more members than any API request has",
    }
}

fn opaque(bytes: Bytes, reason: &'static str, detail: String) -> Readable {
    Readable::Opaque {
        bytes,
        reason,
        detail,
    }
}

impl ScannedBody {
    /// The raw JSON of the last top-level member named `name`.
    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.scanned.get(&self.bytes, name)
    }

    /// The raw JSON at a path of object keys.
    pub(crate) fn lookup(&self, path: &[impl AsRef<str>]) -> Option<&str> {
        scan::lookup(&self.bytes, &self.scanned, path)
    }

    /// The `model` member as text, if it is a string.
    pub fn model(&self) -> Option<std::borrow::Cow<'_, str>> {
        scan::string_value(self.get("model")?)
    }

    /// `stream: true`.
    pub(crate) fn streaming(&self) -> bool {
        self.get("stream") == Some("true")
    }

    /// The client asked for the usage chunk itself: `stream_options.include_usage: true`.
    pub(crate) fn wants_usage_chunk(&self) -> bool {
        self.lookup(&["stream_options", "include_usage"]) == Some("true")
    }
}
