//! Content codings the proxy undoes so that how a body was encoded never
//! decides whether a flag applies: gzip, deflate, br and zstd request bodies,
//! a UTF-8 byte order mark, and upstream streams compressed despite being
//! asked for `identity`.
//!
//! Decoding is bounded: output past the caller's limit is an error, so a
//! small compressed body cannot expand into gigabytes.

use std::io::{Read, Write};

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, header};

/// A content coding this proxy can undo.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Coding {
    Gzip,
    /// HTTP's `deflate` is zlib-wrapped; raw deflate, which some clients
    /// send instead, is accepted too.
    Deflate,
    Brotli,
    Zstd,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("content-encoding {0:?} is not one the proxy can decode (gzip, deflate, br, zstd)")]
    Unsupported(String),
    #[error("the {coding} body decodes to more than {limit} bytes")]
    TooLarge { coding: &'static str, limit: usize },
    #[error("the {coding} body does not decode: {message}")]
    Corrupt {
        coding: &'static str,
        message: String,
    },
}

impl Coding {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Coding::Gzip => "gzip",
            Coding::Deflate => "deflate",
            Coding::Brotli => "br",
            Coding::Zstd => "zstd",
        }
    }

    fn parse(token: &str) -> Result<Option<Coding>, DecodeError> {
        match token.trim().to_ascii_lowercase().as_str() {
            "" | "identity" => Ok(None),
            "gzip" | "x-gzip" => Ok(Some(Coding::Gzip)),
            "deflate" => Ok(Some(Coding::Deflate)),
            "br" => Ok(Some(Coding::Brotli)),
            "zstd" => Ok(Some(Coding::Zstd)),
            other => Err(DecodeError::Unsupported(other.to_string())),
        }
    }
}

/// The codings of a message, in the order they were applied.
pub(crate) fn codings(headers: &HeaderMap) -> Result<Vec<Coding>, DecodeError> {
    let mut out = Vec::new();
    for value in headers.get_all(header::CONTENT_ENCODING) {
        let text = value.to_str().map_err(|_| {
            DecodeError::Unsupported(String::from_utf8_lossy(value.as_bytes()).into())
        })?;
        for token in text.split(',') {
            out.extend(Coding::parse(token)?);
        }
    }
    Ok(out)
}

/// Undoes `codings` (last applied first), producing at most `limit` bytes.
pub fn decode_whole(bytes: Bytes, codings: &[Coding], limit: usize) -> Result<Bytes, DecodeError> {
    let mut current = bytes;
    for coding in codings.iter().rev() {
        current = match coding {
            Coding::Zstd => decode_zstd(&current, limit)?,
            other => {
                let mut decoder = StreamDecoder::new(*other, &current, limit);
                let mut out = decoder.push(&current)?;
                let rest = decoder.finish()?;
                if !rest.is_empty() {
                    let mut joined = BytesMut::from(out);
                    joined.extend_from_slice(&rest);
                    out = joined.freeze();
                }
                out
            }
        };
    }
    Ok(current)
}

/// A zstd body: one or more frames (RFC 8878 §3), skippable ones skipped.
fn decode_zstd(bytes: &[u8], limit: usize) -> Result<Bytes, DecodeError> {
    let corrupt = |message: String| DecodeError::Corrupt {
        coding: "zstd",
        message,
    };
    if bytes.is_empty() {
        return Err(corrupt("no frame".into()));
    }
    let mut input = bytes;
    let mut out = Vec::new();
    while !input.is_empty() {
        let magic = input
            .get(..4)
            .map(|m| u32::from_le_bytes([m[0], m[1], m[2], m[3]]))
            .ok_or_else(|| corrupt("a frame is cut short".into()))?;
        if magic & 0xFFFF_FFF0 == 0x184D_2A50 {
            let length = input
                .get(4..8)
                .map(|l| u32::from_le_bytes([l[0], l[1], l[2], l[3]]) as usize)
                .ok_or_else(|| corrupt("a skippable frame is cut short".into()))?;
            input = input
                .get(8usize.saturating_add(length)..)
                .ok_or_else(|| corrupt("a skippable frame is cut short".into()))?;
            continue;
        }
        let room = (limit + 1).saturating_sub(out.len()) as u64;
        let decoder = ruzstd::decoding::StreamingDecoder::new(&mut input)
            .map_err(|e| corrupt(e.to_string()))?;
        decoder
            .take(room)
            .read_to_end(&mut out)
            .map_err(|e| corrupt(e.to_string()))?;
        if out.len() > limit {
            return Err(DecodeError::TooLarge {
                coding: "zstd",
                limit,
            });
        }
    }
    Ok(Bytes::from(out))
}

/// Drops a leading UTF-8 byte order mark, which JSON forbids but some
/// clients write.
pub(crate) fn strip_bom(bytes: Bytes) -> Bytes {
    const BOM: &[u8] = b"\xEF\xBB\xBF";
    if bytes.starts_with(BOM) {
        bytes.slice(BOM.len()..)
    } else {
        bytes
    }
}

/// Incremental decoding of one coding: feed chunks as they arrive, get the
/// decoded bytes so far. zstd is decoded whole only (see [`decode_whole`]).
pub struct StreamDecoder {
    inner: Writer,
    coding: &'static str,
}

enum Writer {
    Gzip(flate2::write::MultiGzDecoder<Sink>),
    Zlib(flate2::write::ZlibDecoder<Sink>),
    RawDeflate(flate2::write::DeflateDecoder<Sink>),
    Brotli(Box<brotli_decompressor::DecompressorWriter<Sink>>),
    /// Not decodable as a stream; every push fails.
    Unsupported,
}

/// Collects decoded output, refusing more than `limit` bytes in all.
struct Sink {
    out: BytesMut,
    total: usize,
    limit: usize,
}

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.total = self.total.saturating_add(buf.len());
        if self.total > self.limit {
            return Err(std::io::Error::other(LIMIT_PASSED));
        }
        self.out.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

const LIMIT_PASSED: &str = "decoded size limit passed";

impl StreamDecoder {
    /// `first` is the start of the encoded bytes, used to tell zlib-wrapped
    /// deflate from raw deflate.
    pub fn new(coding: Coding, first: &[u8], limit: usize) -> StreamDecoder {
        let sink = Sink {
            out: BytesMut::new(),
            total: 0,
            limit,
        };
        let inner = match coding {
            Coding::Gzip => Writer::Gzip(flate2::write::MultiGzDecoder::new(sink)),
            // A zlib header's first byte names deflate with a window of at most 32K.
            Coding::Deflate if first.first().is_some_and(|b| b & 0x0F == 8 && b >> 4 <= 7) => {
                Writer::Zlib(flate2::write::ZlibDecoder::new(sink))
            }
            Coding::Deflate => Writer::RawDeflate(flate2::write::DeflateDecoder::new(sink)),
            Coding::Brotli => Writer::Brotli(Box::new(
                brotli_decompressor::DecompressorWriter::new(sink, 4096),
            )),
            Coding::Zstd => Writer::Unsupported,
        };
        StreamDecoder {
            inner,
            coding: coding.name(),
        }
    }

    /// Decodes a chunk; returns what it decoded to so far.
    pub fn push(&mut self, chunk: &[u8]) -> Result<Bytes, DecodeError> {
        // Flushed after every chunk: a write-side decoder otherwise keeps a
        // chunk's output until the next write, a chunk late on a live stream
        // and lost when the stream ends early.
        let written = match &mut self.inner {
            Writer::Gzip(w) => w.write_all(chunk).and_then(|()| w.flush()),
            Writer::Zlib(w) => w.write_all(chunk).and_then(|()| w.flush()),
            Writer::RawDeflate(w) => w.write_all(chunk).and_then(|()| w.flush()),
            Writer::Brotli(w) => w.write_all(chunk).and_then(|()| w.flush()),
            Writer::Unsupported => Err(std::io::Error::other("not decodable as a stream")),
        };
        written.map_err(|e| self.error(&e))?;
        Ok(self.take())
    }

    /// The end of the encoded bytes: the rest of the output, or an error if
    /// the encoding was cut short.
    pub fn finish(&mut self) -> Result<Bytes, DecodeError> {
        let finished = match &mut self.inner {
            Writer::Gzip(w) => w.try_finish(),
            Writer::Zlib(w) => w.try_finish(),
            Writer::RawDeflate(w) => w.try_finish(),
            Writer::Brotli(w) => w
                .close()
                .map_err(|e| std::io::Error::other(format!("{e:?}"))),
            Writer::Unsupported => Ok(()),
        };
        finished.map_err(|e| self.error(&e))?;
        Ok(self.take())
    }

    fn sink(&mut self) -> Option<&mut Sink> {
        match &mut self.inner {
            Writer::Gzip(w) => Some(w.get_mut()),
            Writer::Zlib(w) => Some(w.get_mut()),
            Writer::RawDeflate(w) => Some(w.get_mut()),
            Writer::Brotli(w) => Some(w.get_mut()),
            Writer::Unsupported => None,
        }
    }

    fn take(&mut self) -> Bytes {
        self.sink()
            .map(|sink| sink.out.split().freeze())
            .unwrap_or_default()
    }

    fn error(&mut self, e: &std::io::Error) -> DecodeError {
        let limit = self.sink().map_or(0, |s| s.limit);
        if e.to_string().contains(LIMIT_PASSED) {
            DecodeError::TooLarge {
                coding: self.coding,
                limit,
            }
        } else {
            DecodeError::Corrupt {
                coding: self.coding,
                message: e.to_string(),
            }
        }
    }
}

#[cfg(test)]
#[path = "decode_tests.rs"]
mod tests;
