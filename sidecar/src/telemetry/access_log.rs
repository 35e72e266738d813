//! The access log: one line per request, written off the serving thread.
//!
//! A request formats its line (names and numbers only: never prompts,
//! completions or credentials) and hands it to a bounded queue; a writer
//! thread drains the queue into the sink, flushing whenever it runs dry. A
//! full queue (a sink slower than the traffic) drops the line and counts it
//! in `aiflags_access_log_dropped_total` rather than making a request wait.

use std::fmt::Write as _;
use std::io::Write;
use std::path::PathBuf;
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::time::{SystemTime, UNIX_EPOCH};

use prometheus::IntCounter;

use super::Record;

/// Where access-log lines go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Sink {
    Stderr,
    File(PathBuf),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Text,
    Json,
}

/// Lines waiting for the writer; past this, lines are dropped and counted.
const QUEUE_LINES: usize = 8192;

/// A handle to the writer thread; cheap to clone.
#[derive(Clone)]
pub struct AccessLog {
    queue: SyncSender<String>,
    format: Format,
    dropped: IntCounter,
}

impl AccessLog {
    /// Starts the writer thread. `dropped` counts lines the queue had no room for.
    pub fn start(sink: Sink, format: Format, dropped: IntCounter) -> std::io::Result<AccessLog> {
        let out: Box<dyn Write + Send> = match &sink {
            Sink::Stderr => Box::new(std::io::stderr()),
            Sink::File(path) => Box::new(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)?,
            ),
        };
        let (queue, lines) = sync_channel(QUEUE_LINES);
        std::thread::Builder::new()
            .name("aiflags-access-log".into())
            .spawn(move || write_lines(lines, out))?;
        Ok(AccessLog {
            queue,
            format,
            dropped,
        })
    }

    /// Queues the line for `record`; never blocks.
    pub fn write(&self, record: &Record) {
        let line = match self.format {
            Format::Json => json_line(record, SystemTime::now()),
            Format::Text => text_line(record, SystemTime::now()),
        };
        match self.queue.try_send(line) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => self.dropped.inc(),
        }
    }
}

/// The writer thread: block for a line, then take every line already queued
/// before one flush, so a busy sidecar writes in large batches.
fn write_lines(lines: Receiver<String>, out: Box<dyn Write + Send>) {
    let mut out = std::io::BufWriter::with_capacity(64 * 1024, out);
    while let Ok(line) = lines.recv() {
        let _ = out.write_all(line.as_bytes());
        while let Ok(line) = lines.try_recv() {
            let _ = out.write_all(line.as_bytes());
        }
        let _ = out.flush();
    }
    let _ = out.flush();
}

/// The shape of the sidecar's other JSON log lines (tracing's):
/// `{"timestamp":…,"level":"INFO","fields":{"message":"request",…},"target":"aiflags::access"}`
pub fn json_line(r: &Record, now: SystemTime) -> String {
    let mut line = String::with_capacity(320);
    line.push_str("{\"timestamp\":\"");
    push_timestamp(&mut line, now);
    line.push_str("\",\"level\":\"INFO\",\"fields\":{\"message\":\"request\"");
    for (name, value) in strings(r) {
        let _ = write!(line, ",\"{name}\":");
        push_json_string(&mut line, value);
    }
    let _ = write!(
        line,
        ",\"status\":{},\"attempts\":{},\"fallbacks\":{},\"stream_error\":{},\"duration_ms\":{:.3}",
        r.status,
        r.attempts,
        r.fallbacks.len(),
        r.stream_error,
        r.duration.as_secs_f64() * 1e3
    );
    match r.time_to_first_token {
        Some(t) => {
            let _ = write!(line, ",\"ttft_ms\":{:.3}", t.as_secs_f64() * 1e3);
        }
        None => line.push_str(",\"ttft_ms\":null"),
    }
    match r.verdict {
        Some(v) => {
            let _ = write!(line, ",\"verdict\":\"{}\"", v.label());
        }
        None => line.push_str(",\"verdict\":null"),
    }
    line.push_str(",\"fallback_reasons\":");
    push_json_string(&mut line, &fallback_reasons(r));
    line.push_str("},\"target\":\"aiflags::access\"}\n");
    line
}

/// `2026-01-01T00:00:00.000Z  INFO aiflags::access: request request_id=… flag=…`
pub fn text_line(r: &Record, now: SystemTime) -> String {
    let mut line = String::with_capacity(256);
    push_timestamp(&mut line, now);
    line.push_str("  INFO aiflags::access: request");
    for (name, value) in strings(r) {
        let _ = write!(line, " {name}=");
        // Anything that could be mistaken for another field is quoted.
        if value.is_empty()
            || value.contains(|c: char| c == ' ' || c == '=' || c == '"' || c.is_control())
        {
            push_json_string(&mut line, value);
        } else {
            line.push_str(value);
        }
    }
    let _ = write!(
        line,
        " status={} attempts={} fallbacks={} stream_error={} duration_ms={:.3}",
        r.status,
        r.attempts,
        r.fallbacks.len(),
        r.stream_error,
        r.duration.as_secs_f64() * 1e3
    );
    if let Some(t) = r.time_to_first_token {
        let _ = write!(line, " ttft_ms={:.3}", t.as_secs_f64() * 1e3);
    }
    if let Some(v) = r.verdict {
        let _ = write!(line, " verdict={}", v.label());
    }
    if !r.fallbacks.is_empty() {
        let _ = write!(line, " fallback_reasons={}", fallback_reasons(r));
    }
    line.push('\n');
    line
}

fn strings(r: &Record) -> [(&'static str, &str); 6] {
    [
        ("request_id", &r.request_id),
        ("flag", &r.flag),
        ("variant", &r.variant),
        ("model", &r.model),
        ("provider", &r.provider),
        ("operation", r.operation),
    ]
}

/// Why each hop down the chain was taken, in order: `empty,status_503`.
/// Reasons are a closed set of label values, never free text.
fn fallback_reasons(r: &Record) -> String {
    let reasons: Vec<&str> = r.fallbacks.iter().map(|(_, _, why)| &**why).collect();
    reasons.join(",")
}

fn push_json_string(out: &mut String, value: &str) {
    out.push('"');
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if u32::from(c) < 0x20 || c == '\u{7f}' => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// RFC 3339 in UTC with milliseconds.
fn push_timestamp(out: &mut String, now: SystemTime) {
    let since = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (days, rest) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = civil_from_days(days as i64);
    let _ = write!(
        out,
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rest / 3600,
        rest / 60 % 60,
        rest % 60,
        since.subsec_millis()
    );
}

/// Days since 1970-01-01 to (year, month, day), Howard Hinnant's algorithm.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
#[path = "access_log_tests.rs"]
mod tests;
