//! The demo runs to completion in short mode, the split it prints is the
//! configured one within sampling tolerance, and the terminal stays clean: the
//! sidecar's access log goes to the file the demo names.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)] // test code

use std::process::Command;

/// With 2,000 sticky users, a share's sampling error is about one point.
const TOLERANCE_POINTS: f64 = 3.0;

const REQUESTS: usize = 1500;

#[test]
fn the_demo_prints_the_configured_split_and_its_fallbacks() {
    let log_file =
        std::env::temp_dir().join(format!("aiflags-demo-test-{}.log", std::process::id()));
    let output = Command::new(env!("CARGO_BIN_EXE_aiflags-dev"))
        .args([
            "demo",
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
        ])
        .args([
            "--requests",
            &REQUESTS.to_string(),
            "--users",
            "2000",
            "--exit",
        ])
        .arg("--log-file")
        .arg(&log_file)
        // The default filter: the access log is on, as a person gets it.
        .env_remove("AIFLAGS_LOG")
        .output()
        .expect("run the demo");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "demo failed: {stdout}\n{stderr}");

    // The terminal: what the demo says, no log lines. Not a terminal here, so
    // the progress is one line at the end rather than a redrawn bar.
    assert!(
        stderr.contains(&format!("{}", log_file.display())),
        "the demo does not name its log file:\n{stderr}"
    );
    assert!(
        stderr.contains(&format!("sent {REQUESTS} requests")),
        "{stderr}"
    );
    assert!(
        !stderr.contains("aiflags::access") && !stderr.contains(" INFO "),
        "log lines on the terminal:\n{stderr}"
    );
    assert!(
        !stderr.contains('\r'),
        "a redrawn bar in a non-terminal: {stderr:?}"
    );
    // The file: exactly one access-log line per request.
    let log = std::fs::read_to_string(&log_file).expect("read the demo's log file");
    let _ = std::fs::remove_file(&log_file);
    let access = log
        .lines()
        .filter(|l| l.contains("aiflags::access"))
        .count();
    assert_eq!(
        access,
        REQUESTS,
        "access-log lines in {}",
        log_file.display()
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
