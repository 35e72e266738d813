//! Responses compressed whatever the request asked for, as some upstreams
//! (or the CDN in front of them) do even on `accept-encoding: identity`.
//! A stream is compressed chunk by chunk with a sync flush after each, so
//! every chunk decodes as it arrives, as a real compressing server sends it.

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::AtomicI64;

use bytes::Bytes;
use flate2::Compression;
use flate2::write::GzEncoder;
use http::{HeaderValue, Response, StatusCode, header};

use super::{PACE, Reply, error, sse_then};
use crate::serve::{Body as ProxyBody, BoxError};

/// The chunks as one gzip stream, one compressed chunk per input chunk;
/// `finish` adds the gzip trailer as a last chunk (without it the stream is
/// cut short).
fn gzip_chunks(chunks: &[Bytes], finish: bool) -> std::io::Result<Vec<Bytes>> {
    let mut encoder = GzEncoder::new(Vec::new(), Compression::default());
    let mut out = Vec::with_capacity(chunks.len() + 1);
    for chunk in chunks {
        encoder.write_all(chunk)?;
        encoder.flush()?;
        out.push(Bytes::from(std::mem::take(encoder.get_mut())));
    }
    if finish {
        out.push(Bytes::from(encoder.finish()?));
    }
    Ok(out)
}

/// How a gzip model's stream ends.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum GzipEnd {
    /// With the gzip trailer.
    Finish,
    /// Without it: the connection is cut after a few chunks.
    Cut,
    /// Without it: after a few chunks the stream stays open, silent.
    Stall,
}

impl GzipEnd {
    pub(super) fn for_model(model: &str) -> Option<GzipEnd> {
        match model {
            "mock-gzip-stream" => Some(GzipEnd::Finish),
            "mock-gzip-cut-stream" => Some(GzipEnd::Cut),
            "mock-gzip-stall-stream" => Some(GzipEnd::Stall),
            _ => None,
        }
    }
}

/// The reply gzip-compressed: a whole body, or a stream chunk by chunk.
pub(super) fn gzipped(
    active: &Arc<AtomicI64>,
    stream: bool,
    reply: &Reply,
    end: GzipEnd,
) -> Response<ProxyBody> {
    let plain = if stream {
        let mut chunks = reply.stream();
        if end != GzipEnd::Finish {
            chunks.truncate(3);
        }
        chunks
    } else {
        vec![Bytes::from(reply.whole().to_string())]
    };
    let finish = end == GzipEnd::Finish || !stream;
    let compressed = match gzip_chunks(&plain, finish) {
        Ok(compressed) => compressed,
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    };
    let mut chunks: Vec<Result<Bytes, BoxError>> = compressed.into_iter().map(Ok).collect();
    if stream && end == GzipEnd::Cut {
        chunks.push(Err("mock cut the gzip stream".into()));
    }
    let mut response = sse_then(active, PACE, chunks, stream && end == GzipEnd::Stall);
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    if !stream {
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
    }
    response
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;

    #[test]
    fn each_chunk_decodes_as_it_arrives_and_the_whole_is_one_gzip_stream() {
        let chunks = [
            Bytes::from_static(b"data: 1\n\n"),
            Bytes::from_static(b"data: 2\n\n"),
        ];
        let gzipped = gzip_chunks(&chunks, true).unwrap();
        assert_eq!(gzipped.len(), 3);
        let mut first = flate2::write::GzDecoder::new(Vec::new());
        first.write_all(&gzipped[0]).unwrap();
        first.flush().unwrap();
        assert_eq!(first.get_ref().as_slice(), b"data: 1\n\n");
        let whole: Vec<u8> = gzipped.concat();
        let mut plain = String::new();
        flate2::read::GzDecoder::new(whole.as_slice())
            .read_to_string(&mut plain)
            .unwrap();
        assert_eq!(plain, "data: 1\n\ndata: 2\n\n");
        let cut = gzip_chunks(&chunks, false).unwrap();
        assert_eq!(cut.len(), 2, "no trailer");
    }
}
