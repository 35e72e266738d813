//! The demo runs to completion in short mode, and the split it prints is the
//! configured one within sampling tolerance.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)] // test code

use std::process::Command;

/// With 2,000 sticky users, a share's sampling error is about one point.
const TOLERANCE_POINTS: f64 = 3.0;

#[test]
fn the_demo_prints_the_configured_split_and_its_fallbacks() {
    let output = Command::new(env!("CARGO_BIN_EXE_aiflags-dev"))
        .args([
            "demo",
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
        ])
        .args(["--requests", "1500", "--users", "2000", "--exit"])
        .env("AIFLAGS_LOG", "warn")
        .output()
        .expect("run the demo");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "demo failed: {stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );

    let mut flag = String::new();
    let mut rows = 0;
    for line in stdout
        .lines()
        .skip_while(|l| !l.starts_with("flag"))
        .skip(1)
    {
        if line.trim().is_empty() {
            break;
        }
        let cells: Vec<&str> = line.split_whitespace().collect();
        // A row starts with the flag name only on the flag's first variant.
        let cells = if cells.len() == 7 {
            flag = cells[0].to_string();
            &cells[1..]
        } else {
            &cells[..]
        };
        let percent = |s: &str| s.trim_end_matches('%').parse::<f64>().expect(line);
        let (configured, observed) = (percent(cells[2]), percent(cells[3]));
        assert!(
            (configured - observed).abs() <= TOLERANCE_POINTS,
            "{flag}/{}: configured {configured}%, observed {observed}%",
            cells[0]
        );
        rows += 1;
    }
    assert_eq!(rows, 7, "three flags with seven variants:\n{stdout}");
    assert!(stdout.contains("(0 errors)"), "{stdout}");
    assert!(
        stdout.contains("assistant-providers: claude-sonnet-4-5 -> gpt-4.1"),
        "{stdout}"
    );
    assert!(stdout.contains("estimated cost $"), "{stdout}");
}
