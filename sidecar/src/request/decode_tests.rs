use std::io::Write;

use bytes::Bytes;
use http::HeaderValue;

use super::*;

const BODY: &str =
    r#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hello, encoded world"}]}"#;

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

fn zlib(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

fn raw_deflate(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

fn brotli(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    {
        let mut w = ::brotli::CompressorWriter::new(&mut out, 4096, 5, 22);
        w.write_all(bytes).unwrap();
    }
    out
}

fn zstd(bytes: &[u8]) -> Vec<u8> {
    ruzstd::encoding::compress_to_vec(bytes, ruzstd::encoding::CompressionLevel::Fastest)
}

fn headers(value: &'static str) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(header::CONTENT_ENCODING, HeaderValue::from_static(value));
    h
}

#[test]
fn every_supported_coding_decodes() {
    for (name, encoded) in [
        ("gzip", gzip(BODY.as_bytes())),
        ("x-gzip", gzip(BODY.as_bytes())),
        ("deflate", zlib(BODY.as_bytes())),
        ("deflate", raw_deflate(BODY.as_bytes())),
        ("br", brotli(BODY.as_bytes())),
        ("zstd", zstd(BODY.as_bytes())),
        ("identity", BODY.as_bytes().to_vec()),
    ] {
        let codings = codings(&headers(name)).unwrap();
        let plain = decode_whole(Bytes::from(encoded), &codings, 1 << 20).unwrap();
        assert_eq!(plain, BODY.as_bytes(), "{name}");
    }
}

#[test]
fn stacked_codings_are_undone_last_first() {
    let twice = brotli(&gzip(BODY.as_bytes()));
    let codings = codings(&headers("gzip, br")).unwrap();
    assert_eq!(codings, vec![Coding::Gzip, Coding::Brotli]);
    assert_eq!(
        decode_whole(Bytes::from(twice), &codings, 1 << 20).unwrap(),
        BODY.as_bytes()
    );
}

#[test]
fn a_bomb_stops_at_the_limit() {
    let zeros = vec![b' '; 10 << 20];
    for (coding, encoded) in [
        (Coding::Gzip, gzip(&zeros)),
        (Coding::Brotli, brotli(&zeros)),
        (Coding::Zstd, zstd(&zeros)),
        (Coding::Deflate, zlib(&zeros)),
    ] {
        assert!(encoded.len() < 100 << 10, "{coding:?} compresses well");
        let err = decode_whole(Bytes::from(encoded), &[coding], 1 << 20).unwrap_err();
        assert!(
            matches!(err, DecodeError::TooLarge { .. }),
            "{coding:?}: {err}"
        );
    }
}

#[test]
fn unknown_and_broken_encodings_say_so() {
    assert_eq!(
        codings(&headers("compress")).unwrap_err(),
        DecodeError::Unsupported("compress".into())
    );
    let err = decode_whole(Bytes::from_static(b"not gzip"), &[Coding::Gzip], 1 << 20).unwrap_err();
    assert!(
        matches!(err, DecodeError::Corrupt { coding: "gzip", .. }),
        "{err}"
    );
    let cut = gzip(BODY.as_bytes());
    let err = decode_whole(
        Bytes::from(cut[..cut.len() / 2].to_vec()),
        &[Coding::Gzip],
        1 << 20,
    )
    .unwrap_err();
    assert!(matches!(err, DecodeError::Corrupt { .. }), "{err}");
}

#[test]
fn a_byte_order_mark_is_dropped() {
    let with = Bytes::from(format!("\u{feff}{BODY}"));
    assert_eq!(strip_bom(with), BODY.as_bytes());
    assert_eq!(strip_bom(Bytes::from_static(b"{}")), &b"{}"[..]);
}

#[test]
fn a_stream_decodes_chunk_by_chunk() {
    let events: String = (0..50)
        .map(|i| format!("data: {{\"n\":{i}}}\n\n"))
        .collect();
    for (coding, encoded) in [
        (Coding::Gzip, gzip(events.as_bytes())),
        (Coding::Deflate, zlib(events.as_bytes())),
        (Coding::Brotli, brotli(events.as_bytes())),
    ] {
        let mut decoder = StreamDecoder::new(coding, &encoded, 1 << 20);
        let mut out = Vec::new();
        for chunk in encoded.chunks(7) {
            out.extend_from_slice(&decoder.push(chunk).unwrap());
        }
        out.extend_from_slice(&decoder.finish().unwrap());
        assert_eq!(out, events.as_bytes(), "{coding:?}");
    }
    let mut zstd_stream = StreamDecoder::new(Coding::Zstd, &[], 1 << 20);
    assert!(
        zstd_stream.push(b"x").is_err(),
        "zstd is decoded whole only"
    );
}

#[test]
fn zstd_bodies_of_several_frames_and_skippable_ones_decode_whole() {
    let (a, b) = BODY.split_at(20);
    let mut encoded = vec![0x50, 0x2A, 0x4D, 0x18, 3, 0, 0, 0, 9, 9, 9];
    encoded.extend(zstd(a.as_bytes()));
    encoded.extend(zstd(b.as_bytes()));
    assert_eq!(
        decode_whole(Bytes::from(encoded.clone()), &[Coding::Zstd], 1 << 20).unwrap(),
        BODY.as_bytes()
    );
    let err = decode_whole(Bytes::from(encoded), &[Coding::Zstd], BODY.len() - 1).unwrap_err();
    assert!(matches!(err, DecodeError::TooLarge { .. }), "{err}");
    let cut = vec![0x50, 0x2A, 0x4D, 0x18, 30, 0, 0, 0];
    assert!(matches!(
        decode_whole(Bytes::from(cut), &[Coding::Zstd], 1 << 20),
        Err(DecodeError::Corrupt { .. })
    ));
}
