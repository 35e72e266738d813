//! Rewriting a request body for a variant by splicing: the members the
//! variant changes (`model`, its `params` merge patch, the usage request) are
//! written anew, every other member's value travels as the very bytes the
//! client sent — a slice of the one buffer the body was read into, never
//! parsed, copied or re-serialised. A 30 MB prompt costs 30 MB once, however
//! many attempts the fallback chain makes.

use std::collections::HashSet;

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
    let patch = Patch::new(edits);
    let mut out = Output::default();
    out.text(b"{");
    let mut seen: HashSet<&str> = HashSet::new();
    let mut has_model = false;
    for entry in &scanned.entries {
        let key = scanned.key(bytes, entry);
        if key == "model" {
            has_model = true;
            out.member(key, |o| o.string(edits.model))?;
            continue;
        }
        match patch.get(key) {
            None => {
                let raw = bytes.slice(entry.value.clone());
                out.member(key, |o| {
                    o.raw(raw);
                    Ok(())
                })?;
            }
            Some(Value::Null) => {}
            Some(change) => {
                seen.insert(key);
                let original = &bytes[entry.value.clone()];
                let mut merged: Value = match change {
                    // Only an object patch looks at what was there.
                    Value::Object(_) => serde_json::from_slice(original).unwrap_or(Value::Null),
                    _ => Value::Null,
                };
                merge_patch(&mut merged, change);
                out.member(key, |o| o.json(&merged))?;
            }
        }
    }
    for (key, change) in patch.members() {
        if seen.contains(key) || change.is_null() || key == "model" {
            continue;
        }
        let mut added = Value::Null;
        merge_patch(&mut added, change);
        out.member(key, |o| o.json(&added))?;
    }
    if !has_model {
        out.member("model", |o| o.string(edits.model))?;
    }
    out.text(b"}");
    // Whatever followed the object (whitespace, or bytes an upstream will
    // refuse) goes on as it came.
    if scanned.end < bytes.len() {
        out.raw(bytes.slice(scanned.end..));
    }
    Ok(out.finish())
}

/// The variant's params plus the usage request, as one top-level patch.
struct Patch<'v> {
    params: Option<&'v Map<String, Value>>,
    /// `stream_options` with `include_usage` set, merged over the params' own.
    stream_options: Option<Value>,
}

impl<'v> Patch<'v> {
    fn new(edits: &Edits<'v>) -> Patch<'v> {
        let stream_options = edits.include_usage.then(|| {
            let mut options = edits
                .params
                .and_then(|p| p.get("stream_options"))
                .cloned()
                .unwrap_or_else(|| Value::Object(Map::new()));
            merge_patch(&mut options, &serde_json::json!({"include_usage": true}));
            options
        });
        Patch {
            params: edits.params,
            stream_options,
        }
    }

    fn get(&self, key: &str) -> Option<&Value> {
        if key == "stream_options"
            && let Some(options) = &self.stream_options
        {
            return Some(options);
        }
        self.params.and_then(|p| p.get(key))
    }

    fn members(&self) -> impl Iterator<Item = (&str, &Value)> {
        let params = self
            .params
            .into_iter()
            .flatten()
            .filter(|(key, _)| !(key.as_str() == "stream_options" && self.stream_options.is_some()))
            .map(|(key, value)| (key.as_str(), value));
        let options = self
            .stream_options
            .as_ref()
            .map(|options| ("stream_options", options));
        params.chain(options)
    }
}

/// JSON Merge Patch (RFC 7386): objects merge key by key, `null` deletes a
/// key, anything else replaces the target.
pub fn merge_patch(target: &mut Value, patch: &Value) {
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
    members: usize,
}

impl Output {
    fn text(&mut self, text: &[u8]) {
        self.pending.extend_from_slice(text);
    }

    fn raw(&mut self, raw: Bytes) {
        if raw.len() < SLICE_AT_LEAST {
            self.pending.extend_from_slice(&raw);
        } else {
            self.flush();
            self.chunks.push(raw);
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

    /// `"key":` then whatever `value` writes, comma-separated from the last.
    fn member(
        &mut self,
        key: &str,
        value: impl FnOnce(&mut Output) -> Result<(), SpliceError>,
    ) -> Result<(), SpliceError> {
        if self.members > 0 {
            self.text(b",");
        }
        self.members += 1;
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
