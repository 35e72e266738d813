//! A client's request body through the proxy's request path as `route` and
//! `attempts` take it: decoded if it arrives compressed (gzip, zlib, zstd by
//! their magic bytes), its mark dropped, scanned; the flag selected and the
//! variant decided for every operation and a few header sets; then spliced
//! for the chosen variant and each fallback, with the usage chunk asked for
//! and not.
//!
//! Properties, each against an oracle of the fuzz crate's own (see its
//! `json`, `select` and `request` modules): nothing panics; a body a tolerant
//! JSON reader takes for an object (a byte order mark dropped, lone surrogate
//! escapes read as U+FFFD, bytes after the object ignored) is scanned, and
//! its `model` read as that reader reads it; the flag is the one the
//! selection rules name; a Disabled flag yields its default variant, a
//! targeting rule its variant, a sticky split the same variant whatever the
//! random number, a split never a variant without weight; the spliced body
//! reads as RFC 7386's merge patch of the body (model set, params merged,
//! `stream_options.include_usage` added when asked), followed by the very
//! bytes that followed the object, and every member the variant does not
//! touch keeps its value's bytes (and its name's, unless escaped).

#![no_main]

use aiflags_sidecar::fuzzing::Budget;
use aiflags_sidecar::fuzzing::ProxyError;
use aiflags_sidecar::fuzzing::Readable;
use aiflags_sidecar_fuzz::encode::{self, Decoded};
use aiflags_sidecar_fuzz::fnv1a;
use aiflags_sidecar_fuzz::request::{self, LIMIT};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    aiflags_sidecar_fuzz::self_check();
    let budget = Budget::new(usize::MAX / 2);
    let coding = encode::sniff(data);
    let reference = coding.map(|c| encode::decode(c, data, LIMIT));
    let readable = request::readable(data, coding.map(|c| c.header()), LIMIT, &budget);
    match (readable, &reference) {
        (Ok(readable), None) => {
            request::check(data, &readable, fnv1a(data), true);
        }
        (Ok(readable), Some(Decoded::Plain(plain))) => {
            request::check(plain, &readable, fnv1a(data), true);
        }
        (Err(ProxyError::BodyTooLarge { .. }), Some(Decoded::TooLarge)) => {}
        (Ok(Readable::Opaque { reason, .. }), Some(Decoded::Corrupt)) => {
            assert_eq!(reason, "encoding", "a corrupt {coding:?} body");
        }
        (Ok(Readable::Scanned(_)), reference) => {
            panic!("a {coding:?} body the reference decoder calls {reference:?} was scanned")
        }
        (Ok(Readable::Opaque { reason, detail, .. }), reference) => {
            panic!(
                "a {coding:?} body the reference decoder calls {reference:?}: opaque, {reason}: {detail}"
            )
        }
        (Err(e), reference) => panic!("{coding:?} body ({reference:?}): {e}"),
    }
    assert_eq!(budget.used(), 0, "the budget is given back");
});
