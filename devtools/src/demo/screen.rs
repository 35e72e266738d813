//! What the demo shows a person, and where the rest goes.
//!
//! The terminal gets the demo's own lines, one progress line and the report;
//! of the sidecar's log only warnings and errors. Everything the sidecar logs
//! at `AIFLAGS_LOG` (default `info`), its access log (one `aiflags::access`
//! line per request) included, goes to a file the demo names when it starts.

use std::fs::File;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::fmt;
use tracing_subscriber::prelude::*;

/// The log file when `--log-file` is not given: in the temp directory,
/// replaced by each run, kept after it so it can be read.
pub fn default_log_file() -> PathBuf {
    std::env::temp_dir().join("aiflags-demo.log")
}

/// Installs the demo's logging: the sidecar's full log (filtered by
/// `AIFLAGS_LOG`, default `info`) to `path`, warnings and errors also to
/// stderr. Call once, before the demo starts.
pub fn init_logging(path: &Path) -> std::io::Result<()> {
    // Emptied, then opened for appending: the sidecar's access-log writer
    // appends to the same file from its own thread.
    let file = File::create(path)
        .and_then(|_| std::fs::OpenOptions::new().append(true).open(path))
        .map_err(|e| {
            std::io::Error::new(e.kind(), format!("--log-file {}: {e}", path.display()))
        })?;
    let filter = EnvFilter::try_from_env("AIFLAGS_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let to_file = fmt::layer()
        .with_ansi(false)
        .with_writer(Mutex::new(file))
        .with_filter(filter);
    let to_screen = fmt::layer()
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .with_filter(LevelFilter::WARN);
    tracing_subscriber::registry()
        .with(to_file)
        .with(to_screen)
        .try_init()
        .map_err(std::io::Error::other)
}

/// The demo's progress on stderr: at a terminal one line redrawn in place,
/// elsewhere (a script, a CI log) a single line at the end.
pub(crate) struct Progress {
    total: usize,
    live: bool,
}

impl Progress {
    pub(crate) fn new(total: usize) -> Progress {
        Progress {
            total: total.max(1),
            live: std::io::stderr().is_terminal(),
        }
    }

    pub(crate) fn update(&self, done: usize) {
        if !self.live {
            return;
        }
        let step = (self.total / 50).max(1);
        if !done.is_multiple_of(step) && done != self.total {
            return;
        }
        eprint!("\r{}", bar(done, self.total));
        let _ = std::io::stderr().flush();
    }

    pub(crate) fn finish(&self, sent: usize, elapsed: Duration) {
        if self.live {
            eprintln!();
        }
        eprintln!("sent {sent} requests in {:.1} s", elapsed.as_secs_f64());
    }
}

/// `[#####     ] done/total`, 40 cells wide.
fn bar(done: usize, total: usize) -> String {
    let filled = (done.min(total) * 40) / total.max(1);
    format!(
        "[{}{}] {done}/{total}",
        "#".repeat(filled),
        " ".repeat(40 - filled)
    )
}

#[cfg(test)]
mod tests {
    use super::bar;

    #[test]
    fn the_bar_fills_in_proportion() {
        assert_eq!(bar(0, 10), format!("[{}] 0/10", " ".repeat(40)));
        assert_eq!(
            bar(5, 10),
            format!("[{}{}] 5/10", "#".repeat(20), " ".repeat(20))
        );
        assert_eq!(bar(10, 10), format!("[{}] 10/10", "#".repeat(40)));
    }
}
