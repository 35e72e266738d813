//! Client-supplied text made fit to echo in an error message or a log line.

/// Client-supplied text fit to echo in a message or a log line: printable
/// ASCII only (anything else becomes `?`), at most `max` characters.
pub(crate) fn printable(text: &str, max: usize) -> String {
    let mut out: String = text
        .chars()
        .take(max)
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                '?'
            }
        })
        .collect();
    if text.chars().nth(max).is_some() {
        out.push_str("...");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echoed_text_is_printable_and_bounded() {
        assert_eq!(printable("abc def", 16), "abc def");
        assert_eq!(printable("a\nb=c\u{1b}[31m", 16), "a?b=c?[31m");
        assert_eq!(printable("éé", 16), "??");
        assert_eq!(printable(&"x".repeat(300), 4), "xxxx...");
    }
}
