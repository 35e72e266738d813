//! The pod's labels, from the downward-API file kubelet writes.

use std::collections::BTreeMap;

/// `key="value"` lines, values quoted as Go's `%q` writes them. Lines that
/// do not parse are skipped.
pub(crate) fn parse_pod_labels(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|line| {
            let (key, quoted) = line.split_once('=')?;
            Some((key.trim().to_string(), unquote(quoted.trim())?))
        })
        .collect()
}

/// Go `strconv.Unquote` for double-quoted strings.
fn unquote(s: &str) -> Option<String> {
    let inner = s.strip_prefix('"')?.strip_suffix('"')?;
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        let escaped = match chars.next()? {
            'n' => '\n',
            't' => '\t',
            'r' => '\r',
            'a' => '\x07',
            'b' => '\x08',
            'f' => '\x0c',
            'v' => '\x0b',
            c @ ('\\' | '"' | '\'') => c,
            'x' => hex_char(&mut chars, 2)?,
            'u' => hex_char(&mut chars, 4)?,
            'U' => hex_char(&mut chars, 8)?,
            _ => return None,
        };
        out.push(escaped);
    }
    Some(out)
}

fn hex_char(chars: &mut std::str::Chars<'_>, digits: usize) -> Option<char> {
    let hex: String = chars.by_ref().take(digits).collect();
    char::from_u32(u32::from_str_radix(&hex, 16).ok()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pod_labels_as_kubelet_writes_them() {
        let labels = parse_pod_labels(
            "app=\"summarizer\"\npod-template-hash=\"7d9f\"\nnote=\"a \\\"quoted\\\" \\u00e9\\n\"\nbroken\n",
        );
        assert_eq!(labels["app"], "summarizer");
        assert_eq!(labels["pod-template-hash"], "7d9f");
        assert_eq!(labels["note"], "a \"quoted\" é\n");
        assert_eq!(labels.len(), 3);
    }
}
