//! Go-style durations (`500ms`, `30s`, `10m`, `1h30m`, `1.5h`), as Kubernetes users write them.

/// Parses a duration into whole milliseconds.
pub fn parse_duration_ms(s: &str) -> Result<u64, String> {
    let invalid = || format!("{s:?} is not a duration such as 30s, 10m or 1h30m");
    if s.is_empty() {
        return Err(invalid());
    }
    let mut rest = s;
    let mut total_ms: f64 = 0.0;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(invalid)?;
        let (number, tail) = rest.split_at(number_len);
        let value: f64 = number.parse().map_err(|_| invalid())?;
        let (unit_ms, unit_len) = if tail.starts_with("ms") {
            (1.0, 2)
        } else if tail.starts_with('s') {
            (1_000.0, 1)
        } else if tail.starts_with('m') {
            (60_000.0, 1)
        } else if tail.starts_with('h') {
            (3_600_000.0, 1)
        } else {
            return Err(invalid());
        };
        total_ms += value * unit_ms;
        rest = &tail[unit_len..];
    }
    // A year is far past any sane timeout; the cap keeps the cast exact.
    if !(0.0..=31_536_000_000.0).contains(&total_ms) {
        return Err(format!("{s:?} is longer than a year"));
    }
    Ok(total_ms.round() as u64)
}

#[cfg(test)]
mod tests {
    use super::parse_duration_ms;

    #[test]
    fn parses_go_durations() {
        assert_eq!(parse_duration_ms("500ms"), Ok(500));
        assert_eq!(parse_duration_ms("30s"), Ok(30_000));
        assert_eq!(parse_duration_ms("10m"), Ok(600_000));
        assert_eq!(parse_duration_ms("1h30m"), Ok(5_400_000));
        assert_eq!(parse_duration_ms("1.5s"), Ok(1_500));
        assert_eq!(parse_duration_ms("2m30s500ms"), Ok(150_500));
    }

    #[test]
    fn rejects_garbage() {
        for bad in [
            "", "30", "s", "30 s", "1d", "-1s", "1..5s", "10mm", "9999999h",
        ] {
            assert!(
                parse_duration_ms(bad).is_err(),
                "{bad:?} should be rejected"
            );
        }
        assert_eq!(
            parse_duration_ms("30 sec").unwrap_err(),
            "\"30 sec\" is not a duration such as 30s, 10m or 1h30m"
        );
    }
}
