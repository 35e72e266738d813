//! Reading the few top-level fields the proxy needs from a JSON request body
//! without building it: `model`, `stream`, `stream_options`, and the fields
//! sticky splits and targeting rules name.
//!
//! The parser validates the whole document's syntax but materialises nothing
//! below the top level: a field's value is kept as the byte range it occupies,
//! so a prompt of any size costs one `Vec` entry. Two tolerances keep a flag
//! from being skipped because of how a client encoded its body: lone UTF-16
//! surrogate escapes (which JavaScript's `JSON.stringify` emits for a split
//! emoji) inside values, and bytes after the top-level object. When a field
//! appears twice, the last one counts, as upstream JSON parsers read it.

use std::borrow::Cow;
use std::fmt;
use std::ops::Range;

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;

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
const TOO_MANY: &str = "aiflags: too many members";

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
        match Self::parse(bytes) {
            // The parser refuses lone surrogate escapes in member names; a
            // copy with each one replaced by `\ufffd` (the same six bytes)
            // has the same layout, so its ranges hold for the original.
            Err(ScanError::NotJson) => match without_lone_surrogates(bytes) {
                Some(copy) => Self::parse(&copy).map(|mut scanned| {
                    for entry in &mut scanned.entries {
                        if let Key::Raw(range) = &entry.key {
                            let text = utf8(&copy, range.clone()).into();
                            entry.key = Key::Decoded(text);
                        }
                    }
                    scanned
                }),
                None => Err(ScanError::NotJson),
            },
            other => other,
        }
    }

    fn parse(bytes: &[u8]) -> Result<Scanned, ScanError> {
        let mut stream = serde_json::Deserializer::from_slice(bytes).into_iter::<Members<'_>>();
        let members = match stream.next() {
            Some(Ok(members)) => members,
            Some(Err(e)) if e.to_string().starts_with(TOO_MANY) => {
                return Err(ScanError::TooManyMembers);
            }
            Some(Err(e)) if e.classify() == serde_json::error::Category::Data => {
                return Err(ScanError::NotObject);
            }
            _ => return Err(ScanError::NotJson),
        };
        let end = stream.byte_offset();
        let base = bytes.as_ptr() as usize;
        let range_of = |s: &str| {
            let start = s.as_ptr() as usize - base;
            start..start + s.len()
        };
        let entries = members
            .0
            .into_iter()
            .map(|(key, value)| Entry {
                key: match key {
                    Cow::Borrowed(k) => Key::Raw(range_of(k)),
                    Cow::Owned(k) => Key::Decoded(k.into_boxed_str()),
                },
                value: range_of(value.get()),
            })
            .collect();
        // Trailing bytes are not ours to judge: they travel on as they came.
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

/// `bytes` with every unpaired `\uD800`–`\uDFFF` escape replaced by
/// `\ufffd`; `None` when there is none.
fn without_lone_surrogates(bytes: &[u8]) -> Option<Vec<u8>> {
    let unit_at = |i: usize| -> Option<u16> {
        let hex = bytes.get(i..i + 6)?;
        if hex.get(..2)? != b"\\u" {
            return None;
        }
        u16::from_str_radix(std::str::from_utf8(hex.get(2..)?).ok()?, 16).ok()
    };
    let mut copy: Option<Vec<u8>> = None;
    let mut i = 0;
    while i < bytes.len() {
        if bytes.get(i) != Some(&b'\\') {
            i += 1;
            continue;
        }
        match unit_at(i) {
            Some(0xD800..=0xDBFF) if matches!(unit_at(i + 6), Some(0xDC00..=0xDFFF)) => i += 12,
            Some(0xD800..=0xDFFF) => {
                let out = copy.get_or_insert_with(|| bytes.to_vec());
                if let Some(slot) = out.get_mut(i..i + 6) {
                    slot.copy_from_slice(b"\\ufffd");
                }
                i += 6;
            }
            // Any other escape is two bytes (`\uXXXX` ones are skipped whole
            // on the next turns, their hex digits holding no backslash).
            _ => i += 2,
        }
    }
    copy
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
    // Ranges come from the parser's own borrowed `&str`s: always on UTF-8 boundaries.
    bytes
        .get(range)
        .and_then(|b| std::str::from_utf8(b).ok())
        .unwrap_or_default()
}

/// The top-level members as borrowed (key, raw value) pairs.
struct Members<'de>(Vec<(Cow<'de, str>, &'de RawValue)>);

impl<'de> de::Deserialize<'de> for Members<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(MembersVisitor)
    }
}

struct MembersVisitor;

impl<'de> Visitor<'de> for MembersVisitor {
    type Value = Members<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut members = Vec::with_capacity(map.size_hint().unwrap_or(8));
        while let Some((KeyText(key), value)) = map.next_entry::<KeyText<'de>, &'de RawValue>()? {
            if members.len() == MAX_MEMBERS {
                return Err(de::Error::custom(TOO_MANY));
            }
            members.push((key, value));
        }
        Ok(Members(members))
    }
}

/// A member name, borrowed from the input when it has no escapes. (serde's
/// own `Cow<str>` always allocates.)
struct KeyText<'de>(Cow<'de, str>);

impl<'de> de::Deserialize<'de> for KeyText<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = KeyText<'de>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a member name")
            }

            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(KeyText(Cow::Borrowed(v)))
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(KeyText(Cow::Owned(v.to_string())))
            }
        }
        deserializer.deserialize_str(KeyVisitor)
    }
}

#[cfg(test)]
#[path = "scan_tests.rs"]
mod tests;
