//! A JSON reader that validates as it goes and builds nothing: the caller
//! walks the members and items it cares about, and everything else is
//! skipped in place (syntax checked, nesting bounded, no allocation).
//!
//! The answer judge reads a whole answer with it once, straight from the
//! bytes the proxy holds, for its few fields and its usage; the request
//! scanner locates a body's top-level members with it. A
//! document is read as a `serde_json::Value` of it would be — invalid JSON
//! (bad escapes, control characters in strings, leading zeros, trailing
//! bytes, more than [`MAX_DEPTH`] levels) is refused, and of a member named
//! twice the last counts — with two differences of no consequence to the
//! judge, which does not decode strings: their bytes are not checked for
//! UTF-8, nor their `\u` escapes for lone surrogates.

use std::borrow::Cow;

/// Nesting deeper than this is refused: serde_json's limit.
pub(crate) const MAX_DEPTH: usize = 127;

/// A cursor over one JSON document.
pub(crate) struct Skim<'a> {
    bytes: &'a [u8],
    pos: usize,
    /// Containers open around the cursor.
    depth: usize,
}

/// A member's name: borrowed when it has no escapes, else decoded.
pub(crate) struct Key<'a>(Cow<'a, [u8]>);

impl Key<'_> {
    pub(crate) fn name(&self) -> &[u8] {
        &self.0
    }
}

impl<'a> Skim<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        Skim {
            bytes,
            pos: 0,
            depth: 0,
        }
    }

    /// A cursor over a value an outer cursor returned, at the outer depth.
    pub(crate) fn nested(&self, bytes: &'a [u8]) -> Self {
        Skim {
            bytes,
            pos: 0,
            depth: self.depth,
        }
    }

    /// The document has ended: nothing but whitespace is left.
    pub(crate) fn finish(&mut self) -> Option<()> {
        self.ws();
        (self.pos == self.bytes.len()).then_some(())
    }

    #[inline]
    fn ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.bytes.get(self.pos) {
            self.pos += 1;
        }
    }

    /// The next value's first byte.
    #[inline]
    fn peek(&mut self) -> Option<u8> {
        self.ws();
        self.bytes.get(self.pos).copied()
    }

    #[inline]
    fn eat(&mut self, byte: u8) -> Option<()> {
        (self.peek()? == byte).then(|| self.pos += 1)
    }

    /// Consumes a `null` if one is next: `Some(true)`; `Some(false)` leaves
    /// any other value in place.
    pub(crate) fn null(&mut self) -> Option<bool> {
        if self.peek()? != b'n' {
            return Some(false);
        }
        self.literal(b"null")?;
        Some(true)
    }

    /// Whether an object is next (nothing consumed).
    pub(crate) fn at_object(&mut self) -> bool {
        self.peek() == Some(b'{')
    }

    /// Whether an array is next (nothing consumed).
    pub(crate) fn at_array(&mut self) -> bool {
        self.peek() == Some(b'[')
    }

    /// Reads an object: `member` is called with each key and must consume
    /// that member's value. `None` when the next value is not an object or
    /// is not valid JSON, or when `member` returns `None`.
    pub(crate) fn object(
        &mut self,
        mut member: impl FnMut(&mut Self, Key<'a>) -> Option<()>,
    ) -> Option<()> {
        self.container(b'{', b'}', |s| {
            let key = s.key()?;
            member(s, key)
        })
    }

    /// The same, with each key as it is written (between its quotes) and
    /// whether it has escapes, for a caller that decodes keys its own way.
    pub(crate) fn object_raw(
        &mut self,
        mut member: impl FnMut(&mut Self, &'a [u8], bool) -> Option<()>,
    ) -> Option<()> {
        self.container(b'{', b'}', |s| {
            let (key, escaped) = s.raw_key()?;
            member(s, key, escaped)
        })
    }

    /// Where the cursor is: just past the last value read.
    pub(crate) fn position(&self) -> usize {
        self.pos
    }

    /// Reads an array: `item` is called for each element and must consume it.
    pub(crate) fn array(&mut self, item: impl FnMut(&mut Self) -> Option<()>) -> Option<()> {
        self.container(b'[', b']', item)
    }

    fn container(
        &mut self,
        open: u8,
        close: u8,
        mut each: impl FnMut(&mut Self) -> Option<()>,
    ) -> Option<()> {
        self.eat(open)?;
        self.enter()?;
        if self.peek()? != close {
            loop {
                each(self)?;
                match self.peek()? {
                    b',' => self.pos += 1,
                    c if c == close => break,
                    _ => return None,
                }
            }
        }
        self.pos += 1;
        self.depth -= 1;
        Some(())
    }

    fn enter(&mut self) -> Option<()> {
        self.depth += 1;
        (self.depth <= MAX_DEPTH).then_some(())
    }

    /// A member's key, decoded, and the colon after it.
    #[inline]
    fn key(&mut self) -> Option<Key<'a>> {
        let (raw, escaped) = self.raw_key()?;
        if !escaped {
            return Some(Key(Cow::Borrowed(raw)));
        }
        // Rare: decoded. A key that does not decode (a lone surrogate)
        // keeps its escapes, and so matches no name.
        let quoted = self.bytes.get(self.pos_of(raw).saturating_sub(1)..)?;
        let quoted = quoted.get(..raw.len() + 2)?;
        Some(Key(string_text(quoted).unwrap_or(Cow::Borrowed(raw))))
    }

    /// A member's key as it is written, and the colon after it.
    #[inline]
    fn raw_key(&mut self) -> Option<(&'a [u8], bool)> {
        if self.peek()? != b'"' {
            return None;
        }
        let key = self.string()?;
        self.eat(b':')?;
        Some(key)
    }

    fn pos_of(&self, inner: &[u8]) -> usize {
        inner.as_ptr() as usize - self.bytes.as_ptr() as usize
    }

    /// Skips the next value, returning its text (without surrounding
    /// whitespace).
    #[inline]
    pub(crate) fn value(&mut self) -> Option<&'a [u8]> {
        self.ws();
        let start = self.pos;
        self.skip()?;
        self.bytes.get(start..self.pos)
    }

    /// The next value as a token count: a whole number that fits a `u64`
    /// is itself; any other value (a fraction, a negative, a string) is
    /// consumed and counts as zero, as `Value::as_u64` reads it.
    pub(crate) fn count(&mut self) -> Option<u64> {
        match self.peek()? {
            b'0'..=b'9' => Some(self.number()?.unwrap_or(0)),
            _ => self.skip().map(|()| 0),
        }
    }

    /// Skips one value without recursion: `stack` holds a bit per open
    /// container (1: object).
    fn skip(&mut self) -> Option<()> {
        let mut stack: u128 = 0;
        let mut open = 0usize;
        loop {
            match self.peek()? {
                b'{' | b'[' => {
                    let object = self.bytes.get(self.pos) == Some(&b'{');
                    if self.depth + open >= MAX_DEPTH {
                        return None;
                    }
                    self.pos += 1;
                    let close = if object { b'}' } else { b']' };
                    if self.peek()? == close {
                        self.pos += 1;
                    } else {
                        open += 1;
                        stack = stack << 1 | u128::from(object);
                        if object {
                            self.raw_key()?;
                        }
                        continue;
                    }
                }
                b'"' => {
                    self.string()?;
                }
                b't' => self.literal(b"true")?,
                b'f' => self.literal(b"false")?,
                b'n' => self.literal(b"null")?,
                b'-' | b'0'..=b'9' => {
                    self.number()?;
                }
                _ => return None,
            }
            // A value has ended: close what it ends, or go on to the next.
            loop {
                if open == 0 {
                    return Some(());
                }
                let object = stack & 1 == 1;
                match self.peek()? {
                    b',' => {
                        self.pos += 1;
                        if object {
                            self.raw_key()?;
                        }
                        break;
                    }
                    b'}' if object => {}
                    b']' if !object => {}
                    _ => return None,
                }
                self.pos += 1;
                open -= 1;
                stack >>= 1;
            }
        }
    }

    fn literal(&mut self, word: &[u8]) -> Option<()> {
        let end = self.pos + word.len();
        (self.bytes.get(self.pos..end)? == word).then(|| self.pos = end)
    }

    /// A string at the cursor: its raw text between the quotes, and whether
    /// that text has escapes.
    #[inline]
    fn string(&mut self) -> Option<(&'a [u8], bool)> {
        self.pos += 1;
        let start = self.pos;
        let mut escaped = false;
        loop {
            self.pos += plain_run(self.bytes.get(self.pos..)?);
            match *self.bytes.get(self.pos)? {
                b'"' => {
                    let text = self.bytes.get(start..self.pos)?;
                    self.pos += 1;
                    return Some((text, escaped));
                }
                b'\\' => {
                    escaped = true;
                    match *self.bytes.get(self.pos + 1)? {
                        b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => self.pos += 2,
                        b'u' => {
                            let hex = self.bytes.get(self.pos + 2..self.pos + 6)?;
                            if !hex.iter().all(u8::is_ascii_hexdigit) {
                                return None;
                            }
                            self.pos += 6;
                        }
                        _ => return None,
                    }
                }
                // A control character.
                _ => return None,
            }
        }
    }

    /// A number at the cursor; its value when it is a whole number without
    /// sign, fraction or exponent that fits a `u64`.
    fn number(&mut self) -> Option<Option<u64>> {
        let digits = |s: &mut Self| {
            let start = s.pos;
            while let Some(b'0'..=b'9') = s.bytes.get(s.pos) {
                s.pos += 1;
            }
            s.pos - start
        };
        let negative = self.bytes.get(self.pos) == Some(&b'-');
        if negative {
            self.pos += 1;
        }
        let start = self.pos;
        match self.bytes.get(self.pos)? {
            b'0' => self.pos += 1,
            b'1'..=b'9' => {
                digits(self);
            }
            _ => return None,
        }
        let whole = self.bytes.get(start..self.pos)?;
        let mut plain = !negative;
        if self.bytes.get(self.pos) == Some(&b'.') {
            self.pos += 1;
            if digits(self) == 0 {
                return None;
            }
            plain = false;
        }
        if let Some(b'e' | b'E') = self.bytes.get(self.pos) {
            self.pos += 1;
            if let Some(b'+' | b'-') = self.bytes.get(self.pos) {
                self.pos += 1;
            }
            if digits(self) == 0 {
                return None;
            }
            plain = false;
        }
        if !plain {
            return Some(None);
        }
        Some(whole.iter().try_fold(0u64, |n, d| {
            n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
        }))
    }
}

/// The text of a JSON string as written, quotes included: borrowed when it
/// has no escapes, else decoded as serde_json decodes it. `None` for any
/// other value, or a string that does not decode (a lone surrogate escape).
pub(crate) fn string_text(quoted: &[u8]) -> Option<Cow<'_, [u8]>> {
    let inner = quoted.strip_prefix(b"\"")?.strip_suffix(b"\"")?;
    if !inner.contains(&b'\\') {
        return Some(Cow::Borrowed(inner));
    }
    serde_json::from_slice::<String>(quoted)
        .ok()
        .map(|text| Cow::Owned(text.into_bytes()))
}

/// How many bytes from the start of `text` are plain string content: not a
/// quote, a backslash or a control character. Eight bytes at a time: a byte
/// `b` of a word is found by the zero-byte test `(x - 0x01…) & !x & 0x80…`
/// on `x = word ^ b`, and a control character by the same test against
/// 0x20. The test can also flag bytes after a true match (a borrow carries
/// up), never before one, so the lowest flag is the first match.
#[inline]
fn plain_run(text: &[u8]) -> usize {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let below = |x: u64, n: u64| x.wrapping_sub(ONES * n) & !x & HIGH;
    let mut chunks = text.chunks_exact(8);
    let mut run = 0;
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let word = u64::from_le_bytes(word);
        let found = below(word ^ (ONES * u64::from(b'"')), 1)
            | below(word ^ (ONES * u64::from(b'\\')), 1)
            | below(word, 0x20);
        if found != 0 {
            return run + (found.trailing_zeros() / 8) as usize;
        }
        run += 8;
    }
    run + chunks
        .remainder()
        .iter()
        .take_while(|&&c| c != b'"' && c != b'\\' && c >= 0x20)
        .count()
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::Value;

    use super::*;

    /// Skims a whole document.
    fn valid(text: &str) -> bool {
        let mut s = Skim::new(text.as_bytes());
        s.value().is_some() && s.finish().is_some()
    }

    #[test]
    fn agrees_with_serde_json_on_what_is_json() {
        let cases = [
            "{}",
            "[]",
            "0",
            "-0",
            "1.5e-3",
            "\"\\u00e9\\n\"",
            " {\"a\" : [1, {\"b\": null}] } ",
            "{\"a\":1,}",
            "[1,]",
            "01",
            "1.",
            ".5",
            "1e",
            "-",
            "\"\\x\"",
            "\"\\u12g4\"",
            "\"a\u{1}\"",
            "{\"a\" 1}",
            "{1: 2}",
            "[1 2]",
            "tru",
            "nul",
            "{} x",
            "[[]]]",
            "\"",
        ];
        for text in cases {
            let expected = serde_json::from_str::<Value>(text).is_ok();
            assert_eq!(valid(text), expected, "{text}");
        }
    }

    #[test]
    fn nesting_is_bounded_without_recursion() {
        let deep = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
        assert!(valid(&deep(MAX_DEPTH)));
        assert!(!valid(&deep(MAX_DEPTH + 1)));
        assert!(!valid(&deep(100_000)));
        let mut s = Skim::new(b"{\"a\": [[1]]}");
        let mut inner = None;
        s.object(|s, _| {
            inner = Some(s.value()?);
            Some(())
        });
        assert_eq!(inner, Some(&b"[[1]]"[..]));
    }

    #[test]
    fn counts_are_whole_numbers_only() {
        let count = |text: &str| Skim::new(text.as_bytes()).count();
        assert_eq!(count("42"), Some(42));
        assert_eq!(count("18446744073709551615"), Some(u64::MAX));
        assert_eq!(count("18446744073709551616"), Some(0));
        for zero in ["-3", "1.0", "1e2", "\"7\"", "null", "[1]"] {
            assert_eq!(count(zero), Some(0), "{zero}");
        }
        assert_eq!(count("01x"), Some(0));
        assert_eq!(count("[1"), None);
    }

    #[test]
    fn keys_with_escapes_are_decoded() {
        let mut names = Vec::new();
        let mut s = Skim::new(br#"{"\u0075sage": 1, "plain": 2, "\ud800": 3}"#);
        s.object(|s, key| {
            names.push(key.name().to_vec());
            s.value().map(drop)
        });
        assert_eq!(
            names,
            [b"usage".to_vec(), b"plain".to_vec(), br"\ud800".to_vec()]
        );
    }

    proptest! {
        #[test]
        fn plain_runs_end_at_the_first_quote_backslash_or_control(
            text in prop::collection::vec(prop_oneof![
                8 => 0x20u8..=0xff, 1 => Just(b'"'), 1 => Just(b'\\'), 1 => 0u8..0x20,
            ], 0..40)
        ) {
            let expected = text.iter().position(|&c| c == b'"' || c == b'\\' || c < 0x20);
            prop_assert_eq!(plain_run(&text), expected.unwrap_or(text.len()));
        }

        /// (No `u`: a lone surrogate escape is JSON to the skimmer, which
        /// does not decode strings, and not to a `Value`.)
        #[test]
        fn any_bytes_are_skimmed_as_serde_json_judges_them(
            text in "[\\[\\]{}\":,0-9.eE+\\-a-tv-z\\\\ ]{0,24}"
        ) {
            prop_assert_eq!(valid(&text), serde_json::from_str::<Value>(&text).is_ok(), "{}", text);
        }

        #[test]
        fn json_values_are_skimmed_whole(value in any_json()) {
            let text = value.to_string();
            let mut s = Skim::new(text.as_bytes());
            prop_assert_eq!(s.value(), Some(text.as_bytes()));
            prop_assert!(s.finish().is_some());
        }
    }

    fn any_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            any::<f64>().prop_map(Value::from),
            ".{0,6}".prop_map(Value::from),
        ];
        leaf.prop_recursive(4, 24, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
                prop::collection::btree_map(".{0,4}", inner, 0..4)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }
}
