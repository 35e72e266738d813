use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::*;

fn record(request_id: &str) -> Record {
    let mut r = Record::new(request_id.into(), "chat");
    r.started = Instant::now();
    r.flag = Arc::from("summarizer");
    r.variant = Arc::from("candidate");
    r.model = Arc::from("gpt-4.1-mini");
    r.provider = Arc::from("https://api.openai.com");
    r.status = 200;
    r.attempts = 2;
    r.duration = Duration::from_micros(1500);
    r.time_to_first_token = Some(Duration::from_millis(12));
    r
}

#[test]
fn json_lines_have_tracings_shape() {
    let now = UNIX_EPOCH + Duration::from_millis(1_767_225_600_123);
    let line = json_line(&record("req-1"), now);
    let value: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(value["timestamp"], "2026-01-01T00:00:00.123Z");
    assert_eq!(value["target"], "aiflags::access");
    let fields = &value["fields"];
    assert_eq!(fields["message"], "request");
    assert_eq!(fields["request_id"], "req-1");
    assert_eq!(fields["variant"], "candidate");
    assert_eq!(fields["status"], 200);
    assert_eq!(fields["attempts"], 2);
    assert_eq!(fields["ttft_ms"], 12.0);
    assert!(line.ends_with('\n'));
}

#[test]
fn json_values_read_back_as_they_were_whatever_they_hold() {
    let odd = "q\"b\\n\nt\tc\u{1}d\u{7f}é\u{85}😀";
    let mut r = record(odd);
    r.flag = Arc::from(odd);
    let line = json_line(&r, SystemTime::now());
    assert_eq!(line.lines().count(), 1, "{line}");
    let value: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(value["fields"]["request_id"], odd);
    assert_eq!(value["fields"]["flag"], odd);
}

#[test]
fn text_lines_cannot_be_forged() {
    // The route only lets sane request ids through; even so, the log
    // itself quotes anything that could pass for another field.
    let line = text_line(
        &record("x status=500 flag=\"evil\"\nnext"),
        SystemTime::now(),
    );
    assert_eq!(line.matches('\n').count(), 1, "{line}");
    // The forged fields stay inside the quoted id; the real ones follow it.
    let (id, rest) = line.split_once(" flag=summarizer ").unwrap();
    assert!(
        id.ends_with(r#"request_id="x status=500 flag=\"evil\"\u000anext""#),
        "{line}"
    );
    assert!(
        rest.contains(" status=200 ") && !rest.contains("status=500"),
        "{line}"
    );
    let plain = text_line(&record("req-1"), SystemTime::now());
    assert!(
        plain.contains(" request_id=req-1 flag=summarizer "),
        "{plain}"
    );
    assert!(plain.contains(" status=200 attempts=2 "), "{plain}");
}

#[test]
fn dates_are_civil() {
    assert_eq!(civil_from_days(0), (1970, 1, 1));
    assert_eq!(civil_from_days(19_783), (2024, 3, 1));
    assert_eq!(civil_from_days(20_787), (2026, 11, 30));
}

#[test]
fn lines_reach_the_sink_and_a_full_buffer_drops_and_counts() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("access.log");
    let dropped = IntCounter::new("dropped", "d").unwrap();
    let log = AccessLog::start(Sink::File(path.clone()), Format::Json, dropped.clone()).unwrap();
    log.write(&record("first"));
    // Fill the buffer past its bound while the writer may be asleep: the
    // excess is dropped, never waited for.
    let line_len = json_line(&record("r"), SystemTime::now()).len();
    for _ in 0..(MAX_BUFFERED / line_len + 10) {
        log.write(&record("r"));
    }
    drop(log);
    let text = std::fs::read_to_string(&path).unwrap();
    let lines = text.lines().count() as u64;
    assert!(
        text.lines()
            .next()
            .unwrap()
            .contains("\"request_id\":\"first\"")
    );
    assert_eq!(
        lines + dropped.get(),
        1 + (MAX_BUFFERED / line_len + 10) as u64
    );
    assert!(lines >= 1);
}

#[test]
fn numbers_are_written_without_the_formatter() {
    let text = |d: Duration| {
        let mut out = Vec::new();
        push_millis(&mut out, d);
        String::from_utf8(out).unwrap()
    };
    assert_eq!(text(Duration::from_micros(1_005)), "1.005");
    assert_eq!(text(Duration::from_micros(50)), "0.050");
    assert_eq!(text(Duration::from_secs(125)), "125000.000");
    let mut n = Vec::new();
    push_u64(&mut n, 0);
    n.push(b' ');
    push_u64(&mut n, u64::MAX);
    assert_eq!(n, format!("0 {}", u64::MAX).into_bytes());
}

#[test]
fn lines_say_what_the_answer_was_and_why_each_fallback_was_taken() {
    let mut r = record("req-2");
    r.verdict = Some(crate::verdict::Verdict::Content);
    let hop = |reason: &str| (Arc::from("m1"), Arc::from("m2"), Arc::from(reason));
    r.fallbacks = vec![hop("empty"), hop("status_503")];
    let text = text_line(&r, SystemTime::now());
    assert!(
        text.ends_with(" verdict=content fallback_reasons=empty,status_503\n"),
        "{text}"
    );
    let json: serde_json::Value = serde_json::from_str(&json_line(&r, SystemTime::now())).unwrap();
    assert_eq!(json["fields"]["verdict"], "content");
    assert_eq!(json["fields"]["fallback_reasons"], "empty,status_503");
    // Unjudged (an error, a pass-through) and without fallbacks.
    let plain = record("req-3");
    let text = text_line(&plain, SystemTime::now());
    assert!(
        !text.contains("verdict=") && !text.contains("fallback_reasons="),
        "{text}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&json_line(&plain, SystemTime::now())).unwrap();
    assert_eq!(json["fields"]["verdict"], serde_json::Value::Null);
    assert_eq!(json["fields"]["fallback_reasons"], "");
}

#[test]
fn values_are_quoted_exactly_when_they_hold_a_separator_or_a_control_character() {
    // Every character up to U+00FF and a few beyond, against `char`'s own
    // definition of a control character.
    for c in (0u32..0x100)
        .chain([0x2028, 0x1f600])
        .filter_map(char::from_u32)
    {
        let value = format!("a{c}b");
        let expected = c == ' ' || c == '=' || c == '"' || c.is_control();
        assert_eq!(needs_quotes(&value), expected, "{c:?}");
    }
    assert!(needs_quotes(""));
    assert!(!needs_quotes("gpt-4o-mini"));
}
