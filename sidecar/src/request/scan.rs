//! Reading the few top-level fields the proxy needs from a JSON request body
//! without building it: `model`, `stream`, `stream_options`, and the fields
//! sticky splits and targeting rules name.
//!
//! The parser ([`Skim`]) validates the whole document's syntax and UTF-8 but
//! materialises nothing below the top level: a field's value is kept as the
//! byte range it occupies, so a prompt of any size costs one `Vec` entry. Two
//! tolerances keep a flag from being skipped because of how a client encoded
//! its body: lone UTF-16 surrogate escapes (which JavaScript's
//! `JSON.stringify` emits for a split emoji) in values and names, and bytes
//! after the top-level object. When a field appears twice, the last one
//! counts, as upstream JSON parsers read it.

use std::borrow::Cow;
use std::ops::Range;

use crate::skim::Skim;

/// A body whose top-level object has been located.
#[derive(Debug)]
pub struct Scanned {
    /// The members of the top-level object, in order.
    pub entries: Vec<Entry>,
    /// Offset just past the top-level object's closing brace.
    pub end: usize,
}

/// One `"key": value` member.
#[derive(Debug)]
pub struct Entry {
    pub key: Key,
    /// Where the raw value is, in the scanned bytes.
    pub value: Range<usize>,
}

/// A member's name: a range of the scanned bytes when it has no escapes, else decoded.
#[derive(Debug)]
pub enum Key {
    Raw(Range<usize>),
    Decoded(Box<str>),
}

/// Why a body could not be scanned; the reason label of
/// `aiflags_unparsed_requests_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ScanError {
    /// Not JSON at all, or cut short.
    NotJson,
    /// JSON, but not an object: no `model` to read.
    NotObject,
    /// An object of more than [`MAX_MEMBERS`] members: no API request has
    /// them, and locating them all would cost more than the body.
    TooManyMembers,
}

/// The most members an object may have for the proxy to read it.
pub(crate) const MAX_MEMBERS: usize = 10_000;

impl ScanError {
    pub(crate) fn reason(self) -> &'static str {
        match self {
            ScanError::NotJson => "not_json",
            ScanError::NotObject => "not_object",
            ScanError::TooManyMembers => "too_many_members",
        }
    }
}

impl Scanned {
    /// Locates the top-level object of `bytes` and its members.
    pub(crate) fn new(bytes: &[u8]) -> Result<Scanned, ScanError> {
        let mut skim = Skim::new(bytes);
        if !skim.at_object() {
            return Err(match skim.value() {
                Some(_) => ScanError::NotObject,
                None => ScanError::NotJson,
            });
        }
        let base = bytes.as_ptr() as usize;
        let range_of = |s: &[u8]| {
            let start = s.as_ptr() as usize - base;
            start..start + s.len()
        };
        let mut entries = Vec::with_capacity(16);
        let mut too_many = false;
        let read = skim.object_raw(|s, key, escaped| {
            if entries.len() == MAX_MEMBERS {
                too_many = true;
                return None;
            }
            let key = range_of(key);
            let key = if escaped {
                // Rare: decoded, lone surrogates as U+FFFD.
                let quoted = bytes.get(key.start - 1..key.end + 1)?;
                let text = string_value(std::str::from_utf8(quoted).ok()?)?;
                Key::Decoded(text.into_owned().into_boxed_str())
            } else {
                Key::Raw(key)
            };
            let value = range_of(s.value()?);
            entries.push(Entry { key, value });
            Some(())
        });
        if too_many {
            return Err(ScanError::TooManyMembers);
        }
        read.ok_or(ScanError::NotJson)?;
        let end = skim.position();
        // JSON is UTF-8, and every range handed out is text. Trailing bytes
        // are not ours to judge: they travel on as they came.
        std::str::from_utf8(bytes.get(..end).unwrap_or_default())
            .map_err(|_| ScanError::NotJson)?;
        Ok(Scanned { entries, end })
    }

    /// The key of `entry`, as text.
    pub(crate) fn key<'b>(&self, bytes: &'b [u8], entry: &'b Entry) -> &'b str {
        match &entry.key {
            Key::Raw(range) => utf8(bytes, range.clone()),
            Key::Decoded(k) => k,
        }
    }

    /// The raw JSON of the last member named `name`.
    pub(crate) fn get<'b>(&self, bytes: &'b [u8], name: &str) -> Option<&'b str> {
        self.entries
            .iter()
            .rev()
            .find(|e| match &e.key {
                Key::Raw(range) => bytes.get(range.clone()) == Some(name.as_bytes()),
                Key::Decoded(k) => &**k == name,
            })
            .map(|e| utf8(bytes, e.value.clone()))
    }
}

/// The raw JSON at a dotted path of object keys, descending through nested
/// objects without building them.
pub(crate) fn lookup<'b>(
    bytes: &'b [u8],
    scanned: &Scanned,
    path: &[impl AsRef<str>],
) -> Option<&'b str> {
    let (first, rest) = path.split_first()?;
    let mut raw = scanned.get(bytes, first.as_ref())?;
    for key in rest {
        let nested = raw.as_bytes();
        let inner = Scanned::new(nested).ok()?;
        raw = inner.get(nested, key.as_ref())?;
    }
    Some(raw)
}

/// A raw JSON string's text; lone surrogates become U+FFFD rather than
/// failing, so a model name with one still meets its catch-all flag.
pub(crate) fn string_value(raw: &str) -> Option<Cow<'_, str>> {
    if !raw.starts_with('"') {
        return None;
    }
    if let Some(text) = raw.get(1..raw.len() - 1)
        && raw.ends_with('"')
        && !text.contains('\\')
    {
        return Some(Cow::Borrowed(text));
    }
    match serde_json::from_str::<Cow<'_, str>>(raw) {
        Ok(text) => Some(text),
        Err(_) => Some(Cow::Owned(lossy_string(raw)?)),
    }
}

/// A scalar as targeting and sticky splits compare it: strings as they are,
/// numbers and booleans as JSON writes them.
pub(crate) fn scalar_text(raw: &str) -> Option<Cow<'_, str>> {
    if raw.starts_with('"') {
        return string_value(raw);
    }
    match serde_json::from_str::<serde_json::Value>(raw).ok()? {
        serde_json::Value::Number(n) => Some(Cow::Owned(n.to_string())),
        serde_json::Value::Bool(b) => Some(Cow::Borrowed(if b { "true" } else { "false" })),
        _ => None,
    }
}

/// Decodes a JSON string literal by hand, replacing unpaired surrogates.
fn lossy_string(raw: &str) -> Option<String> {
    let inner = raw.strip_prefix('"')?.strip_suffix('"')?;
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    let mut pending_high: Option<u16> = None;
    let flush = |out: &mut String, pending: &mut Option<u16>| {
        if pending.take().is_some() {
            out.push(char::REPLACEMENT_CHARACTER);
        }
    };
    while let Some(c) = chars.next() {
        if c != '\\' {
            flush(&mut out, &mut pending_high);
            out.push(c);
            continue;
        }
        let escaped = chars.next()?;
        if escaped != 'u' {
            flush(&mut out, &mut pending_high);
            out.push(match escaped {
                'n' => '\n',
                't' => '\t',
                'r' => '\r',
                'b' => '\x08',
                'f' => '\x0c',
                other => other,
            });
            continue;
        }
        let hex: String = chars.by_ref().take(4).collect();
        let unit = u16::from_str_radix(&hex, 16).ok()?;
        match (pending_high.take(), unit) {
            (Some(high), 0xDC00..=0xDFFF) => {
                let code =
                    0x10000 + ((u32::from(high) - 0xD800) << 10) + (u32::from(unit) - 0xDC00);
                out.push(char::from_u32(code).unwrap_or(char::REPLACEMENT_CHARACTER));
            }
            (previous, 0xD800..=0xDBFF) => {
                if previous.is_some() {
                    out.push(char::REPLACEMENT_CHARACTER);
                }
                pending_high = Some(unit);
            }
            (previous, _) => {
                if previous.is_some() {
                    out.push(char::REPLACEMENT_CHARACTER);
                }
                out.push(char::from_u32(u32::from(unit)).unwrap_or(char::REPLACEMENT_CHARACTER));
            }
        }
    }
    flush(&mut out, &mut pending_high);
    Some(out)
}

fn utf8(bytes: &[u8], range: Range<usize>) -> &str {
    // Ranges start and end at quotes, brackets or spaces of text checked as
    // UTF-8: always on character boundaries.
    bytes
        .get(range)
        .and_then(|b| std::str::from_utf8(b).ok())
        .unwrap_or_default()
}

#[cfg(test)]
#[path = "scan_tests.rs"]
mod tests;
