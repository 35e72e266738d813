//! Where a sticky value is read from.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Where a sticky value is read from.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum StickySource {
    /// A request header, lower-cased.
    Header(String),
    /// A body field, as a path of object keys.
    Body(Vec<String>),
}

impl StickySource {
    /// Parses `header:x-user-id` or `body:metadata.user_id`.
    pub fn parse(s: &str) -> Option<StickySource> {
        if let Some(name) = s.strip_prefix("header:") {
            let valid = !name.is_empty() && http_token(name);
            return valid.then(|| StickySource::Header(name.to_ascii_lowercase()));
        }
        let path = s.strip_prefix("body:")?;
        let parts: Vec<String> = path.split('.').map(str::to_string).collect();
        let valid = parts.iter().all(|p| {
            let mut chars = p.chars();
            chars
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        });
        valid.then_some(StickySource::Body(parts))
    }
}

impl fmt::Display for StickySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StickySource::Header(h) => write!(f, "header:{h}"),
            StickySource::Body(p) => write!(f, "body:{}", p.join(".")),
        }
    }
}

/// RFC 9110 token characters: what a header name may contain.
pub(crate) fn http_token(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}
