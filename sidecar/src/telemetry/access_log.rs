//! The access log: one line per request, written off the serving thread.
//!
//! A request formats its line (names and numbers only: never prompts,
//! completions or credentials) and appends it to a shared buffer; a writer
//! thread takes the buffer every [`FLUSH_EVERY`] and writes it in one go.
//! Nobody is woken per request, so a busy sidecar spends no system call on
//! its access log beyond one write per interval. A buffer past
//! [`MAX_BUFFERED`] (a sink slower than the traffic) drops the line and
//! counts it in `aiflags_access_log_dropped_total` rather than making a
//! request wait or the memory grow.

use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

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

/// How often the writer takes what has been logged.
pub(crate) const FLUSH_EVERY: Duration = Duration::from_millis(50);
/// Bytes waiting for the writer; past this, lines are dropped and counted.
pub(crate) const MAX_BUFFERED: usize = 4 << 20;

/// The serving side of the log; the writer thread stops (after a last
/// flush) when this is dropped.
pub(crate) struct AccessLog {
    shared: Arc<Shared>,
    format: Format,
    dropped: IntCounter,
    writer: Option<JoinHandle<()>>,
}

struct Shared {
    lines: Mutex<Vec<u8>>,
    closed: AtomicBool,
}

impl AccessLog {
    /// Starts the writer thread. `dropped` counts lines the buffer had no room for.
    pub(crate) fn start(
        sink: Sink,
        format: Format,
        dropped: IntCounter,
    ) -> std::io::Result<AccessLog> {
        let out: Box<dyn Write + Send> = match &sink {
            Sink::Stderr => Box::new(std::io::stderr()),
            Sink::File(path) => Box::new(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)?,
            ),
        };
        let shared = Arc::new(Shared {
            lines: Mutex::new(Vec::with_capacity(64 * 1024)),
            closed: AtomicBool::new(false),
        });
        let writer = {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name("aiflags-access-log".into())
                .spawn(move || write_lines(&shared, out))?
        };
        Ok(AccessLog {
            shared,
            format,
            dropped,
            writer: Some(writer),
        })
    }

    /// Appends the line for `record`; never blocks on the sink. The line is
    /// formatted straight into the shared buffer (no line of its own to
    /// allocate and copy), and taken back out if it went past the bound.
    pub(crate) fn write(&self, record: &Record) {
        let now = SystemTime::now();
        let mut lines = self.shared.lines.lock().unwrap_or_else(|e| e.into_inner());
        let start = lines.len();
        match self.format {
            Format::Json => json_line_into(&mut lines, record, now),
            Format::Text => text_line_into(&mut lines, record, now),
        }
        if lines.len() > MAX_BUFFERED {
            lines.truncate(start);
            drop(lines);
            self.dropped.inc();
        }
    }
}

impl Drop for AccessLog {
    /// Flushes what is left and stops the writer.
    fn drop(&mut self) {
        self.shared.closed.store(true, Ordering::Release);
        if let Some(writer) = self.writer.take() {
            writer.thread().unpark();
            let _ = writer.join();
        }
    }
}

/// The writer thread: every interval (or when closing), swap the buffer for
/// an empty one and write it whole.
fn write_lines(shared: &Shared, mut out: Box<dyn Write + Send>) {
    let mut batch = Vec::with_capacity(64 * 1024);
    loop {
        let closing = shared.closed.load(Ordering::Acquire);
        {
            let mut lines = shared.lines.lock().unwrap_or_else(|e| e.into_inner());
            std::mem::swap(&mut *lines, &mut batch);
        }
        if !batch.is_empty() {
            let _ = out.write_all(&batch);
            let _ = out.flush();
            batch.clear();
        }
        if closing {
            return;
        }
        std::thread::park_timeout(FLUSH_EVERY);
    }
}

/// The shape of the sidecar's other JSON log lines (tracing's):
/// `{"timestamp":…,"level":"INFO","fields":{"message":"request",…},"target":"aiflags::access"}`
#[cfg(test)]
pub(crate) fn json_line(r: &Record, now: SystemTime) -> String {
    let mut line = Vec::new();
    json_line_into(&mut line, r, now);
    String::from_utf8_lossy(&line).into_owned()
}

/// `2026-01-01T00:00:00.000Z  INFO aiflags::access: request request_id=… flag=…`
#[cfg(test)]
pub(crate) fn text_line(r: &Record, now: SystemTime) -> String {
    let mut line = Vec::new();
    text_line_into(&mut line, r, now);
    String::from_utf8_lossy(&line).into_owned()
}

/// Appends `r`'s JSON line to `line`.
fn json_line_into(line: &mut Vec<u8>, r: &Record, now: SystemTime) {
    line.extend_from_slice(b"{\"timestamp\":\"");
    push_timestamp(line, now);
    line.extend_from_slice(b"\",\"level\":\"INFO\",\"fields\":{\"message\":\"request\"");
    for (name, value) in strings(r) {
        push_name(line, b",\"", name, b"\":");
        push_json_string(line, value);
    }
    for (name, value) in numbers(r) {
        push_name(line, b",\"", name, b"\":");
        value.push_to(line);
    }
    line.extend_from_slice(b",\"ttft_ms\":");
    match r.time_to_first_token {
        Some(t) => push_millis(line, t),
        None => line.extend_from_slice(b"null"),
    }
    line.extend_from_slice(b",\"verdict\":");
    match r.verdict {
        Some(v) => push_json_string(line, v.label()),
        None => line.extend_from_slice(b"null"),
    }
    line.extend_from_slice(b",\"fallback_reasons\":\"");
    push_reasons(line, r);
    line.extend_from_slice(b"\"},\"target\":\"aiflags::access\"}\n");
}

/// Appends `r`'s text line to `line`.
fn text_line_into(line: &mut Vec<u8>, r: &Record, now: SystemTime) {
    push_timestamp(line, now);
    line.extend_from_slice(b"  INFO aiflags::access: request");
    for (name, value) in strings(r) {
        push_name(line, b" ", name, b"=");
        // Anything that could be mistaken for another field is quoted.
        if needs_quotes(value) {
            push_json_string(line, value);
        } else {
            line.extend_from_slice(value.as_bytes());
        }
    }
    for (name, value) in numbers(r) {
        push_name(line, b" ", name, b"=");
        value.push_to(line);
    }
    if let Some(t) = r.time_to_first_token {
        line.extend_from_slice(b" ttft_ms=");
        push_millis(line, t);
    }
    if let Some(v) = r.verdict {
        line.extend_from_slice(b" verdict=");
        line.extend_from_slice(v.label().as_bytes());
    }
    if !r.fallbacks.is_empty() {
        line.extend_from_slice(b" fallback_reasons=");
        push_reasons(line, r);
    }
    line.push(b'\n');
}

/// A field's name between what goes before and after it.
#[inline]
fn push_name(line: &mut Vec<u8>, before: &[u8], name: &str, after: &[u8]) {
    line.extend_from_slice(before);
    line.extend_from_slice(name.as_bytes());
    line.extend_from_slice(after);
}

/// Whether a text-format value must be quoted: empty, or holding a space,
/// `=`, `"` or a control character (C0, DEL, or C1, which UTF-8 writes as
/// 0xC2 0x80–0x9F). By bytes: a value is checked per request.
fn needs_quotes(value: &str) -> bool {
    let bytes = value.as_bytes();
    bytes.is_empty()
        || bytes.iter().enumerate().any(|(i, &b)| match b {
            b' ' | b'=' | b'"' | 0..=0x1f | 0x7f => true,
            0xc2 => matches!(bytes.get(i + 1), Some(0x80..=0x9f)),
            _ => false,
        })
}

/// A number field of the line.
enum Number {
    Count(u64),
    Flag(bool),
    Millis(std::time::Duration),
}

impl Number {
    fn push_to(&self, out: &mut Vec<u8>) {
        match self {
            Number::Count(n) => push_u64(out, *n),
            Number::Flag(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
            Number::Millis(d) => push_millis(out, *d),
        }
    }
}

fn numbers(r: &Record) -> [(&'static str, Number); 5] {
    [
        ("status", Number::Count(u64::from(r.status))),
        ("attempts", Number::Count(u64::from(r.attempts))),
        ("fallbacks", Number::Count(r.fallbacks.len() as u64)),
        ("stream_error", Number::Flag(r.stream_error)),
        ("duration_ms", Number::Millis(r.duration)),
    ]
}

/// Decimal digits without the formatting machinery: lines are written per
/// request, on the serving thread.
fn push_u64(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
}

/// Milliseconds with three decimals (microsecond resolution): `12.345`.
fn push_millis(out: &mut Vec<u8>, d: std::time::Duration) {
    let micros = d.as_micros().min(u128::from(u64::MAX)) as u64;
    push_u64(out, micros / 1000);
    let fraction = micros % 1000;
    out.extend_from_slice(&[
        b'.',
        b'0' + (fraction / 100) as u8,
        b'0' + (fraction / 10 % 10) as u8,
        b'0' + (fraction % 10) as u8,
    ]);
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
/// Reasons are label values of a closed set (letters, digits, `_`): they
/// need no quoting or escaping.
fn push_reasons(out: &mut Vec<u8>, r: &Record) {
    for (i, (_, _, why)) in r.fallbacks.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(why.as_bytes());
    }
}

/// `value` as a JSON string. By bytes: every byte that needs an escape is
/// ASCII, and the bytes of a multi-byte UTF-8 character are all above it.
fn push_json_string(out: &mut Vec<u8>, value: &str) {
    let needs_escape = |b: u8| b == b'"' || b == b'\\' || b < 0x20 || b == 0x7f;
    out.push(b'"');
    let bytes = value.as_bytes();
    if !bytes.iter().any(|&b| needs_escape(b)) {
        out.extend_from_slice(bytes);
    } else {
        for &b in bytes {
            match b {
                b'"' => out.extend_from_slice(b"\\\""),
                b'\\' => out.extend_from_slice(b"\\\\"),
                b if needs_escape(b) => {
                    const HEX: &[u8; 16] = b"0123456789abcdef";
                    out.extend_from_slice(b"\\u00");
                    out.push(HEX[usize::from(b >> 4)]);
                    out.push(HEX[usize::from(b & 0xf)]);
                }
                b => out.push(b),
            }
        }
    }
    out.push(b'"');
}

/// RFC 3339 in UTC with milliseconds. The date and time of day are worked
/// out once a second per thread; the milliseconds are appended.
fn push_timestamp(out: &mut Vec<u8>, now: SystemTime) {
    thread_local! {
        static SECOND: std::cell::RefCell<(u64, String)> = const { std::cell::RefCell::new((u64::MAX, String::new())) };
    }
    let since = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    SECOND.with(|cached| {
        let mut cached = cached.borrow_mut();
        if cached.0 != secs {
            let (days, rest) = (secs / 86_400, secs % 86_400);
            let (year, month, day) = civil_from_days(days as i64);
            cached.1 = format!(
                "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.",
                rest / 3600,
                rest / 60 % 60,
                rest % 60
            );
            cached.0 = secs;
        }
        out.extend_from_slice(cached.1.as_bytes());
    });
    let millis = since.subsec_millis();
    out.extend_from_slice(&[
        b'0' + (millis / 100) as u8,
        b'0' + (millis / 10 % 10) as u8,
        b'0' + (millis % 10) as u8,
        b'Z',
    ]);
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
