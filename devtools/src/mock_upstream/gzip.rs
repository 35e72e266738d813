//! Responses compressed whatever the request asked for, as some upstreams
//! (or the CDN in front of them) do even on `accept-encoding: identity`.
//! A stream is compressed chunk by chunk with a sync flush after each, so
//! every chunk decodes as it arrives, as a real compressing server sends it.

use std::io::Write;

use bytes::Bytes;
use flate2::Compression;
use flate2::write::GzEncoder;

/// The chunks as one gzip stream, one compressed chunk per input chunk;
/// `finish` adds the gzip trailer as a last chunk (without it the stream is
/// cut short).
pub(super) fn gzip_chunks(chunks: &[Bytes], finish: bool) -> std::io::Result<Vec<Bytes>> {
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
