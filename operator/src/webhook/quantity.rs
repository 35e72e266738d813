//! Kubernetes resource quantities (`100m`, `64Mi`, `1e3`), read only far
//! enough to reject a malformed one and to compare a request with its limit:
//! the API server would reject the pod over either, and an injected sidecar
//! must never be the reason a deploy fails.

/// The value of `text` in base units (cores, bytes), or `None` when it is
/// not a quantity the API server accepts.
pub fn parse_quantity(text: &str) -> Option<f64> {
    let unsigned = text.strip_prefix(['+', '-']).unwrap_or(text);
    let number_len = unsigned
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(unsigned.len());
    let (number, suffix) = unsigned.split_at(number_len);
    if number.is_empty() || number == "." || number.matches('.').count() > 1 {
        return None;
    }
    let magnitude: f64 = number.parse().ok()?;
    let scale = suffix_scale(suffix)?;
    let sign = if text.starts_with('-') { -1.0 } else { 1.0 };
    Some(sign * magnitude * scale)
}

fn suffix_scale(suffix: &str) -> Option<f64> {
    let binary = |power: i32| Some(1024f64.powi(power));
    let decimal = |power: i32| Some(10f64.powi(power));
    match suffix {
        "" => decimal(0),
        "n" => decimal(-9),
        "u" => decimal(-6),
        "m" => decimal(-3),
        "k" => decimal(3),
        "M" => decimal(6),
        "G" => decimal(9),
        "T" => decimal(12),
        "P" => decimal(15),
        "E" => decimal(18),
        "Ki" => binary(1),
        "Mi" => binary(2),
        "Gi" => binary(3),
        "Ti" => binary(4),
        "Pi" => binary(5),
        "Ei" => binary(6),
        exponent => {
            let digits = exponent.strip_prefix(['e', 'E'])?;
            let unsigned = digits.strip_prefix(['+', '-']).unwrap_or(digits);
            if unsigned.is_empty() || !unsigned.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            decimal(digits.parse().ok()?)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::parse_quantity;

    #[test]
    fn reads_every_suffix_kind() {
        assert_eq!(parse_quantity("100m"), Some(0.1));
        assert_eq!(parse_quantity("2"), Some(2.0));
        assert_eq!(parse_quantity("1.5"), Some(1.5));
        assert_eq!(parse_quantity("64Mi"), Some(64.0 * 1024.0 * 1024.0));
        assert_eq!(parse_quantity("1G"), Some(1e9));
        assert_eq!(parse_quantity("1e3"), Some(1000.0));
        assert_eq!(parse_quantity("5E-1"), Some(0.5));
        assert_eq!(parse_quantity("+1k"), Some(1000.0));
        assert_eq!(parse_quantity(".5"), Some(0.5));
        assert_eq!(parse_quantity("-1"), Some(-1.0));
    }

    #[test]
    fn rejects_what_the_api_server_rejects() {
        for bad in [
            "", "m", ".", "1..2", "1.2.3", "64MB", "64mi", "one", "1 Gi", "1e", "1e+", "1ee3",
            "Mi", "1Ki1",
        ] {
            assert_eq!(parse_quantity(bad), None, "{bad:?}");
        }
    }
}
