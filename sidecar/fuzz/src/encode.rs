//! Content codings from the other side: encoders for the bodies and streams a
//! client or upstream may compress, and whole-body reference decoders written
//! from each format's definition (RFC 1952 gzip members, RFC 1950 zlib,
//! RFC 7932 brotli, RFC 8878 zstd frames) with the libraries' plain readers.

use std::io::{Read, Write};

/// A coding as the `content-encoding` header names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Coding {
    Gzip,
    /// RFC 9110's `deflate`: zlib-wrapped.
    Zlib,
    /// Raw deflate, which some clients send as `deflate`.
    RawDeflate,
    Brotli,
    Zstd,
}

pub const ALL: [Coding; 5] = [
    Coding::Gzip,
    Coding::Zlib,
    Coding::RawDeflate,
    Coding::Brotli,
    Coding::Zstd,
];

impl Coding {
    pub fn header(self) -> &'static str {
        match self {
            Coding::Gzip => "gzip",
            Coding::Zlib | Coding::RawDeflate => "deflate",
            Coding::Brotli => "br",
            Coding::Zstd => "zstd",
        }
    }

    pub fn encode(self, plain: &[u8]) -> Vec<u8> {
        let level = flate2::Compression::fast();
        let written = match self {
            Coding::Gzip => write_all(flate2::write::GzEncoder::new(Vec::new(), level), plain),
            Coding::Zlib => write_all(flate2::write::ZlibEncoder::new(Vec::new(), level), plain),
            Coding::RawDeflate => {
                write_all(flate2::write::DeflateEncoder::new(Vec::new(), level), plain)
            }
            Coding::Brotli => {
                let mut out = Vec::new();
                let mut writer = brotli::CompressorWriter::new(&mut out, 4096, 1, 16);
                let written = writer.write_all(plain).map_err(|e| e.to_string());
                drop(writer);
                written.map(|()| out)
            }
            Coding::Zstd => Ok(ruzstd::encoding::compress_to_vec(
                plain,
                ruzstd::encoding::CompressionLevel::Fastest,
            )),
        };
        match written {
            Ok(out) => out,
            Err(e) => panic!("encoding {self:?} into memory failed: {e}"),
        }
    }
}

fn write_all<W: Finish>(mut writer: W, plain: &[u8]) -> Result<Vec<u8>, String> {
    writer.write_all(plain).map_err(|e| e.to_string())?;
    writer.done().map_err(|e| e.to_string())
}

trait Finish: Write {
    fn done(self) -> std::io::Result<Vec<u8>>;
}

impl Finish for flate2::write::GzEncoder<Vec<u8>> {
    fn done(self) -> std::io::Result<Vec<u8>> {
        self.finish()
    }
}

impl Finish for flate2::write::ZlibEncoder<Vec<u8>> {
    fn done(self) -> std::io::Result<Vec<u8>> {
        self.finish()
    }
}

impl Finish for flate2::write::DeflateEncoder<Vec<u8>> {
    fn done(self) -> std::io::Result<Vec<u8>> {
        self.finish()
    }
}

/// What a whole-body decode came to.
#[derive(Debug, PartialEq, Eq)]
pub enum Decoded {
    Plain(Vec<u8>),
    /// More than the limit.
    TooLarge,
    Corrupt,
}

/// Decodes `encoded` completely with the format's reference reader, reading
/// at most `limit` bytes of output (one more tells it is too large). Bytes
/// after the end of the data make it corrupt: an encoded body is the
/// encoding and nothing else.
pub fn decode(coding: Coding, encoded: &[u8], limit: usize) -> Decoded {
    match coding {
        // A gzip body may be several members, one after the other.
        Coding::Gzip => read_all(flate2::bufread::MultiGzDecoder::new(encoded), limit),
        Coding::Zlib => read_all(flate2::bufread::ZlibDecoder::new(encoded), limit),
        Coding::RawDeflate => read_all(flate2::bufread::DeflateDecoder::new(encoded), limit),
        Coding::Brotli => decode_brotli(encoded, limit),
        Coding::Zstd => decode_zstd_frames(encoded, limit),
    }
}

/// A decoder reading straight from the encoded slice, which it leaves where
/// the encoding ended.
trait Inner: Read {
    fn rest(&self) -> &[u8];
}

macro_rules! inner {
    ($($decoder:ident),*) => {$(
        impl Inner for flate2::bufread::$decoder<&[u8]> {
            fn rest(&self) -> &[u8] {
                self.get_ref()
            }
        }
    )*};
}

inner!(MultiGzDecoder, ZlibDecoder, DeflateDecoder);

fn read_all(mut decoder: impl Inner, limit: usize) -> Decoded {
    let mut out = Vec::new();
    match (&mut decoder).take(limit as u64 + 1).read_to_end(&mut out) {
        Ok(_) if out.len() > limit => Decoded::TooLarge,
        Ok(_) if !decoder.rest().is_empty() => Decoded::Corrupt,
        Ok(_) => Decoded::Plain(out),
        Err(_) => Decoded::Corrupt,
    }
}

/// RFC 7932 through the decoder's stream interface, which says where the
/// stream ended.
fn decode_brotli(encoded: &[u8], limit: usize) -> Decoded {
    use brotli_decompressor::{BrotliDecompressStream, BrotliResult, BrotliState, StandardAlloc};
    let mut state = BrotliState::new(
        StandardAlloc::default(),
        StandardAlloc::default(),
        StandardAlloc::default(),
    );
    let mut out = vec![0u8; limit + 1];
    let (mut available_in, mut input_offset) = (encoded.len(), 0);
    let (mut available_out, mut output_offset, mut written) = (out.len(), 0, 0);
    let result = BrotliDecompressStream(
        &mut available_in,
        &mut input_offset,
        encoded,
        &mut available_out,
        &mut output_offset,
        &mut out,
        &mut written,
        &mut state,
    );
    match result {
        _ if output_offset > limit => Decoded::TooLarge,
        BrotliResult::NeedsMoreOutput => Decoded::TooLarge,
        BrotliResult::ResultSuccess if input_offset == encoded.len() => {
            out.truncate(output_offset);
            Decoded::Plain(out)
        }
        _ => Decoded::Corrupt,
    }
}

/// RFC 8878 section 3: zstd data is one or more frames, skippable frames
/// included, and a decoder decodes them all.
fn decode_zstd_frames(encoded: &[u8], limit: usize) -> Decoded {
    let mut decoder = ruzstd::decoding::FrameDecoder::new();
    let mut out = vec![0u8; limit];
    match decoder.decode_all(encoded, &mut out) {
        // No frame at all is not a zstd body.
        Ok(_) if encoded.is_empty() => Decoded::Corrupt,
        Ok(written) => {
            out.truncate(written);
            Decoded::Plain(out)
        }
        Err(ruzstd::decoding::errors::FrameDecoderError::TargetTooSmall) => Decoded::TooLarge,
        Err(_) => Decoded::Corrupt,
    }
}

/// A coding named by the first bytes of a body, for inputs that arrive
/// encoded: none of these bytes can start JSON.
pub fn sniff(body: &[u8]) -> Option<Coding> {
    match body {
        [0x1f, 0x8b, ..] => Some(Coding::Gzip),
        [0x28, 0xb5, 0x2f, 0xfd, ..] => Some(Coding::Zstd),
        // zlib with a 32K window, as every encoder writes it.
        [0x78, second, ..] if (0x7800 | u16::from(*second)) % 31 == 0 => Some(Coding::Zlib),
        _ => None,
    }
}

pub fn self_check() {
    let plain = br#"{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]}"#;
    for coding in ALL {
        let encoded = coding.encode(plain);
        assert_eq!(
            decode(coding, &encoded, plain.len()),
            Decoded::Plain(plain.to_vec()),
            "{coding:?}"
        );
        assert_eq!(
            decode(coding, &encoded, plain.len() - 1),
            Decoded::TooLarge,
            "{coding:?}"
        );
        let cut = &encoded[..encoded.len() - 1];
        assert_eq!(
            decode(coding, cut, 1000),
            Decoded::Corrupt,
            "{coding:?} cut"
        );
        let trailing = [&encoded[..], b"junk"].concat();
        assert_eq!(
            decode(coding, &trailing, 1000),
            Decoded::Corrupt,
            "{coding:?} trailing"
        );
    }
    let mut two = Coding::Zstd.encode(b"{\"a\":");
    two.extend(Coding::Zstd.encode(b"1}"));
    assert_eq!(
        decode(Coding::Zstd, &two, 100),
        Decoded::Plain(b"{\"a\":1}".to_vec())
    );
    let mut members = Coding::Gzip.encode(b"ab");
    members.extend(Coding::Gzip.encode(b"cd"));
    assert_eq!(
        decode(Coding::Gzip, &members, 100),
        Decoded::Plain(b"abcd".to_vec())
    );
    assert_eq!(sniff(&Coding::Gzip.encode(b"x")), Some(Coding::Gzip));
    assert_eq!(sniff(&Coding::Zlib.encode(b"x")), Some(Coding::Zlib));
    assert_eq!(sniff(&Coding::Zstd.encode(b"x")), Some(Coding::Zstd));
    assert_eq!(sniff(b"{\"model\":1}"), None);
}
