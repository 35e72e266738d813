//! Rewriting a request body for a variant by splicing: the members the
//! variant changes (`model`, its `params` merge patch, the usage request) are
//! written anew, every other member's value travels as the very bytes the
//! client sent — a slice of the one buffer the body was read into, never
//! parsed, copied or re-serialised. A 30 MB prompt costs 30 MB once, however
//! many attempts the fallback chain makes.

use std::ops::Range;

use bytes::{BufMut as _, Bytes, BytesMut};
use serde_json::{Map, Value};

use super::scan::Scanned;
use crate::body::Rope;

/// Values shorter than this are copied into the output's small pieces rather
/// than kept as separate slices: fewer, larger chunks to write.
const SLICE_AT_LEAST: usize = 512;

/// What a variant changes in a request body.
#[derive(Clone, Copy, Debug)]
pub struct Edits<'v> {
    pub model: &'v str,
    /// The variant's `params`: an RFC 7386 merge patch, an object.
    pub params: Option<&'v Map<String, Value>>,
    /// Ask for the usage chunk: `stream_options.include_usage: true`.
    pub include_usage: bool,
}

/// A body that could not be rewritten.
#[derive(Debug, thiserror::Error)]
#[error("could not write the rewritten request body: {0}")]
pub struct SpliceError(String);

/// The body `bytes` (scanned as `scanned`) with `edits` applied.
pub fn splice(bytes: &Bytes, scanned: &Scanned, edits: &Edits<'_>) -> Result<Rope, SpliceError> {
    let patch = TopPatch::new(edits);
    // Room for the copied members and the changes, so the small pieces
    // rarely grow the buffer.
    let mut out = Output {
        pending: BytesMut::with_capacity(bytes.len().min(16 << 10) + 128),
        ..Output::default()
    };
    merge_object(&mut out, bytes, scanned, &patch)?;
    // Whatever followed the object (whitespace, or bytes an upstream will
    // refuse) goes on as it came.
    if scanned.end < bytes.len() {
        out.raw(bytes, scanned.end..bytes.len());
    }
    Ok(out.finish())
}

/// An RFC 7386 merge patch of an object, applied by splicing: members the
/// patch does not name keep their bytes; an object patched with an object
/// is merged the same way, one level down, so nothing the client sent in it
/// is lost (not even a value serde_json would refuse to build, such as a
/// lone surrogate escape or a number out of range).
fn merge_object(
    out: &mut Output,
    bytes: &Bytes,
    scanned: &Scanned,
    patch: &dyn PatchView,
) -> Result<(), SpliceError> {
    out.text(b"{");
    let mut first = true;
    // The patch's keys found in the body: a params patch has a handful, so a
    // short list beats hashing every one, and it stays on the stack.
    let mut seen = Seen::default();
    for entry in &scanned.entries {
        let key = scanned.key(bytes, entry);
        match patch.get(key) {
            None => out.member(&mut first, key, |o| {
                o.raw(bytes, entry.value.clone());
                Ok(())
            })?,
            Some(Value::Null) => seen.add(key),
            Some(change) => {
                seen.add(key);
                let value = entry.value.clone();
                out.member(&mut first, key, |o| merge_value(o, bytes, value, change))?;
            }
        }
    }
    patch.each_member(&mut |key, change| {
        if seen.has(key) || change.is_null() {
            return Ok(());
        }
        out.member(&mut first, key, |o| match change {
            Value::Object(_) => o.json(&stripped(change)),
            // RFC 7386 strips `null`s only from objects it adds.
            other => o.json(other),
        })
    })?;
    out.text(b"}");
    Ok(())
}

/// Keys seen so far: the first few on the stack, the rest (a patch of many
/// members the body also has) in a list.
#[derive(Default)]
struct Seen<'a> {
    first: [&'a str; 4],
    len: usize,
    more: Vec<&'a str>,
}

impl<'a> Seen<'a> {
    fn add(&mut self, key: &'a str) {
        match self.first.get_mut(self.len) {
            Some(slot) => {
                *slot = key;
                self.len += 1;
            }
            None => self.more.push(key),
        }
    }

    fn has(&self, key: &str) -> bool {
        (self.first.iter().take(self.len))
            .chain(&self.more)
            .any(|seen| *seen == key)
    }
}

/// One member's value (`bytes[range]`) under a patch: merged when both are
/// objects, else replaced by the patch (without its `null`s).
fn merge_value(
    out: &mut Output,
    bytes: &Bytes,
    range: Range<usize>,
    change: &Value,
) -> Result<(), SpliceError> {
    let nested = match change {
        Value::Object(nested) => nested,
        Value::String(text) => return out.string(text),
        other => return out.json(other),
    };
    if !bytes[range.clone()].starts_with(b"{") {
        return out.json(&stripped(change));
    }
    // Large values inside travel as slices of the client's buffer.
    let raw = bytes.slice(range);
    // The outer scan accepted this object, so the inner one does too.
    let scanned = Scanned::new(&raw)
        .map_err(|e| SpliceError(format!("a patched member is {}", e.reason())))?;
    merge_object(out, &raw, &scanned, nested)
}

/// A patch value as a new member: RFC 7386 drops the `null`s inside it.
fn stripped(change: &Value) -> Value {
    let mut added = Value::Null;
    merge_patch(&mut added, change);
    added
}

/// A merge patch's members, by name.
trait PatchView {
    fn get(&self, key: &str) -> Option<&Value>;
    /// Calls `f` with each member in order, stopping at its first error.
    fn each_member(
        &self,
        f: &mut dyn FnMut(&str, &Value) -> Result<(), SpliceError>,
    ) -> Result<(), SpliceError>;
}

impl PatchView for Map<String, Value> {
    fn get(&self, key: &str) -> Option<&Value> {
        Map::get(self, key)
    }

    fn each_member(
        &self,
        f: &mut dyn FnMut(&str, &Value) -> Result<(), SpliceError>,
    ) -> Result<(), SpliceError> {
        self.iter().try_for_each(|(k, v)| f(k, v))
    }
}

/// The top level: the variant's model, its params, and the usage request.
struct TopPatch<'v> {
    model: Value,
    params: Option<&'v Map<String, Value>>,
    /// `stream_options` with `include_usage` set, merged over the params' own.
    stream_options: Option<Value>,
}

impl<'v> TopPatch<'v> {
    fn new(edits: &Edits<'v>) -> TopPatch<'v> {
        let stream_options = edits.include_usage.then(|| {
            let mut options = edits
                .params
                .and_then(|p| p.get("stream_options"))
                .cloned()
                .unwrap_or_else(|| Value::Object(Map::new()));
            merge_patch(&mut options, &serde_json::json!({"include_usage": true}));
            options
        });
        TopPatch {
            model: Value::from(edits.model),
            params: edits.params,
            stream_options,
        }
    }
}

impl PatchView for TopPatch<'_> {
    fn get(&self, key: &str) -> Option<&Value> {
        match key {
            "model" => Some(&self.model),
            "stream_options" if self.stream_options.is_some() => self.stream_options.as_ref(),
            _ => self.params.and_then(|p| p.get(key)),
        }
    }

    fn each_member(
        &self,
        f: &mut dyn FnMut(&str, &Value) -> Result<(), SpliceError>,
    ) -> Result<(), SpliceError> {
        f("model", &self.model)?;
        for (key, value) in self.params.into_iter().flatten() {
            let from_params = match key.as_str() {
                "model" => false,
                "stream_options" => self.stream_options.is_none(),
                _ => true,
            };
            if from_params {
                f(key, value)?;
            }
        }
        match &self.stream_options {
            Some(options) => f("stream_options", options),
            None => Ok(()),
        }
    }
}

/// JSON Merge Patch (RFC 7386): objects merge key by key, `null` deletes a
/// key, anything else replaces the target.
pub(crate) fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(patch) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    if let Value::Object(target) = target {
        for (key, value) in patch {
            if value.is_null() {
                target.remove(key);
            } else {
                merge_patch(target.entry(key.as_str()).or_insert(Value::Null), value);
            }
        }
    }
}

/// The spliced body under construction: small pieces accumulate in `pending`,
/// large values are kept as slices of the client's buffer.
#[derive(Default)]
struct Output {
    chunks: Vec<Bytes>,
    pending: BytesMut,
}

impl Output {
    fn text(&mut self, text: &[u8]) {
        self.pending.extend_from_slice(text);
    }

    /// `bytes[range]`, a value as the client sent it: copied when small,
    /// else kept as a slice of the client's buffer.
    fn raw(&mut self, bytes: &Bytes, range: Range<usize>) {
        if range.len() < SLICE_AT_LEAST {
            self.pending.extend_from_slice(&bytes[range]);
        } else {
            self.flush();
            self.chunks.push(bytes.slice(range));
        }
    }

    /// A JSON string literal: most names and model ids need no escaping.
    fn string(&mut self, text: &str) -> Result<(), SpliceError> {
        if text.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
            self.pending.reserve(text.len() + 2);
            self.pending.extend_from_slice(b"\"");
            self.pending.extend_from_slice(text.as_bytes());
            self.pending.extend_from_slice(b"\"");
            return Ok(());
        }
        let mut writer = std::mem::take(&mut self.pending).writer();
        let written = serde_json::to_writer(&mut writer, text);
        self.pending = writer.into_inner();
        written.map_err(|e| SpliceError(e.to_string()))
    }

    fn json(&mut self, value: &Value) -> Result<(), SpliceError> {
        let mut writer = std::mem::take(&mut self.pending).writer();
        let written = serde_json::to_writer(&mut writer, value);
        self.pending = writer.into_inner();
        written.map_err(|e| SpliceError(e.to_string()))
    }

    /// `"key":` then whatever `value` writes, after a comma unless it is
    /// the `first` member of its object.
    fn member(
        &mut self,
        first: &mut bool,
        key: &str,
        value: impl FnOnce(&mut Output) -> Result<(), SpliceError>,
    ) -> Result<(), SpliceError> {
        if !std::mem::replace(first, false) {
            self.text(b",");
        }
        self.string(key)?;
        self.text(b":");
        value(self)
    }

    fn flush(&mut self) {
        if !self.pending.is_empty() {
            self.chunks.push(self.pending.split().freeze());
        }
    }

    fn finish(mut self) -> Rope {
        self.flush();
        Rope::new(self.chunks)
    }
}

#[cfg(test)]
#[path = "splice_tests.rs"]
mod tests;
