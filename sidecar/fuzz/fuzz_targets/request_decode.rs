//! How a body is encoded must never decide whether a flag applies (issue 7,
//! class 7), and decoding must stay within its limit.
//!
//! The input is used twice. As a plain body, encoded every way a client may
//! send it (gzip, zlib and raw deflate, br, zstd, gzip then br, a byte order
//! mark, a mark inside gzip): each reads through `make_readable` to the same
//! bytes, model, flags and variants as the plain body (the random number
//! held fixed), so a Disabled flag gives its default variant whatever the
//! encoding; one byte less of limit is a clear "too large", one byte less of
//! budget a clear "busy", and every byte reserved is given back. As an
//! encoded body of each coding: `decode_whole` and the chunked
//! `StreamDecoder` agree with the formats' reference decoders (all gzip
//! members, all zstd frames), never return more than the limit, and what
//! they decode reads through the request path like any plain body.

#![no_main]

use std::sync::Arc;

use aiflags_sidecar::fuzzing::Budget;
use aiflags_sidecar::fuzzing::ProxyError;
use aiflags_sidecar::fuzzing::Readable;
use aiflags_sidecar::fuzzing::decode::{self, DecodeError, StreamDecoder};
use aiflags_sidecar_fuzz::encode::{self, Coding, Decoded};
use aiflags_sidecar_fuzz::fnv1a;
use aiflags_sidecar_fuzz::request::{self, LIMIT};
use bytes::Bytes;
use libfuzzer_sys::fuzz_target;

/// The limit for bodies fed in encoded: small, so that bombs are cheap.
const SMALL: usize = 64 << 10;

const BOM: &[u8] = b"\xEF\xBB\xBF";

fuzz_target!(|data: &[u8]| {
    aiflags_sidecar_fuzz::self_check();
    let random = fnv1a(data);
    as_plain(data, random);
    for coding in encode::ALL {
        as_encoded(coding, data, random);
    }
});

fn as_plain(data: &[u8], random: u32) {
    let budget = Budget::new(usize::MAX / 2);
    let Ok(plain) = request::readable(data, None, LIMIT, &budget) else {
        panic!("a plain body within the limit");
    };
    let expected = request::check(data, &plain, random, false);
    drop(plain);

    let marked = [BOM, data].concat();
    let mut forms: Vec<Form<'_>> = encode::ALL
        .iter()
        .map(|c| Form {
            name: format!("{c:?}"),
            header: Some(c.header()),
            encoded: c.encode(data),
            decoded: data,
            largest: data.len(),
        })
        .collect();
    let gzipped = Coding::Gzip.encode(data);
    forms.push(Form {
        name: "gzip, br".into(),
        header: Some("gzip, br"),
        encoded: Coding::Brotli.encode(&gzipped),
        decoded: data,
        largest: gzipped.len().max(data.len()),
    });
    if !data.starts_with(BOM) {
        forms.push(Form {
            name: "BOM".into(),
            header: None,
            encoded: marked.clone(),
            decoded: &marked,
            largest: marked.len(),
        });
        forms.push(Form {
            name: "gzip(BOM)".into(),
            header: Some("gzip"),
            encoded: Coding::Gzip.encode(&marked),
            decoded: &marked,
            largest: marked.len(),
        });
    }
    // The limit and the budget, on one form per input: decoding four times
    // over for every form would halve the executions.
    let bounded = random as usize % forms.len();
    for (i, form) in forms.iter().enumerate() {
        let name = &form.name;
        let readable = request::readable(&form.encoded, form.header, LIMIT, &budget);
        let Ok(readable) = readable else {
            panic!("{name}: refused");
        };
        if let Readable::Scanned(body) = &readable {
            assert_eq!(body.decoded, form.header.is_some(), "{name}: decoded");
        }
        let outcome = request::check(form.decoded, &readable, random, false);
        assert_eq!(
            outcome, expected,
            "{name}: read otherwise than the plain body"
        );
        drop(readable);
        if i == bounded && form.header.is_some() && form.largest > 0 {
            check_bounds(form, &budget);
        }
    }
    assert_eq!(budget.used(), 0, "the budget is given back");
}

/// A body as a client may send it.
struct Form<'d> {
    name: String,
    /// `content-encoding`.
    header: Option<&'static str>,
    encoded: Vec<u8>,
    decoded: &'d [u8],
    /// The largest stage of decoding: what the limit is held against.
    largest: usize,
}

/// One byte less of limit is a clear "too large", one byte less of budget a
/// clear "busy", and every byte reserved is given back.
fn check_bounds(form: &Form<'_>, budget: &Arc<Budget>) {
    let Form {
        name,
        header,
        encoded,
        decoded,
        largest,
    } = form;
    match request::readable(encoded, *header, largest - 1, budget) {
        Err(ProxyError::BodyTooLarge { limit }) => assert_eq!(limit, largest - 1),
        Err(e) => panic!("{name}: one byte past the limit: {e}"),
        Ok(_) => panic!("{name}: one byte past the limit was read"),
    }
    let at_limit = request::readable(encoded, *header, *largest, budget);
    assert!(at_limit.is_ok(), "{name}: refused at exactly the limit");
    drop(at_limit);
    if decoded.is_empty() {
        return;
    }
    let tight = Budget::new(encoded.len() + decoded.len() - 1);
    match request::readable(encoded, *header, LIMIT, &tight) {
        Err(ProxyError::Busy { .. }) => {}
        Err(e) => panic!("{name}: one byte short of budget: {e}"),
        Ok(_) => panic!("{name}: decoded past the budget"),
    }
    assert_eq!(tight.used(), 0, "{name}: the budget is given back");
}

fn as_encoded(coding: Coding, data: &[u8], random: u32) {
    let sidecar_coding = match coding {
        Coding::Gzip => decode::Coding::Gzip,
        Coding::Zlib | Coding::RawDeflate => decode::Coding::Deflate,
        Coding::Brotli => decode::Coding::Brotli,
        Coding::Zstd => decode::Coding::Zstd,
    };
    // `deflate` is zlib, or raw deflate when the first byte cannot start zlib.
    let zlib_like = data.first().is_some_and(|b| b & 0x0f == 8 && b >> 4 <= 7);
    let comparable = match coding {
        Coding::Zlib => zlib_like,
        Coding::RawDeflate => !zlib_like,
        _ => true,
    };
    let whole = decode::decode_whole(Bytes::copy_from_slice(data), &[sidecar_coding], SMALL);
    if let Ok(plain) = &whole {
        assert!(plain.len() <= SMALL, "{coding:?}: decoded past the limit");
    }
    if comparable {
        let reference = encode::decode(coding, data, SMALL);
        match (&whole, &reference) {
            (Ok(plain), Decoded::Plain(want)) => assert_eq!(&plain[..], &want[..], "{coding:?}"),
            (Err(DecodeError::TooLarge { .. }), Decoded::TooLarge) => {}
            // Too large before the reference, decoding a block ahead, met
            // the corruption further on: refused either way.
            (Err(DecodeError::TooLarge { .. }), Decoded::Corrupt) => {}
            (Err(DecodeError::Corrupt { .. }), Decoded::Corrupt) => {}
            (got, want) => panic!("{coding:?}: decoded {got:?}, the reference says {want:?}"),
        }
    }
    if coding != Coding::Zstd {
        let chunked = chunked(sidecar_coding, data, random);
        match (&whole, chunked) {
            (Ok(plain), Ok(again)) => assert_eq!(&plain[..], &again[..], "{coding:?}: cuts"),
            // A body that decodes past the limit and is corrupt further on is
            // refused either way; which one a decoder meets first depends on
            // when its writer hands its buffered output on (flushed after
            // every cut, once at the end when whole).
            (
                Err(DecodeError::TooLarge { .. } | DecodeError::Corrupt { .. }),
                Err(DecodeError::TooLarge { .. } | DecodeError::Corrupt { .. }),
            ) => {}
            (Err(a), Err(b)) => assert_eq!(
                std::mem::discriminant(a),
                std::mem::discriminant(&b),
                "{coding:?}: cuts"
            ),
            (a, b) => panic!("{coding:?}: whole {a:?}, in chunks {b:?}"),
        }
    }
    if let Ok(plain) = whole {
        let budget = Budget::new(usize::MAX / 2);
        match request::readable(data, Some(coding.header()), SMALL, &budget) {
            Ok(readable) => {
                request::check(&plain, &readable, random, false);
            }
            Err(e) => panic!("{coding:?}: a body that decodes was refused: {e}"),
        }
    }
}

/// The stream decoder fed cuts of `data` chosen by `seed`.
fn chunked(coding: decode::Coding, data: &[u8], seed: u32) -> Result<Bytes, DecodeError> {
    let mut decoder = StreamDecoder::new(coding, data, SMALL);
    let mut out = Vec::new();
    let mut state = seed | 1;
    let mut rest = data;
    while !rest.is_empty() {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        let n = (state as usize % 64 + 1).min(rest.len());
        let (chunk, after) = rest.split_at(n);
        out.extend_from_slice(&decoder.push(chunk)?);
        assert!(out.len() <= SMALL, "{coding:?}: decoded past the limit");
        rest = after;
    }
    out.extend_from_slice(&decoder.finish()?);
    assert!(out.len() <= SMALL, "{coding:?}: decoded past the limit");
    Ok(Bytes::from(out))
}
