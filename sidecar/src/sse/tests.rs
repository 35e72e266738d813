use proptest::prelude::*;
use serde_json::{Value, json};

use aiflags_api::Operation;
use bytes::Bytes;

use super::parser::{MAX_EVENT_BYTES, SseEvent, SseParser};
use super::*;
use crate::stream::error_event;
use crate::usage::Usage;

const CHAT_USAGE_EVENT: &str = "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"choices\":[],\"usage\":{\"prompt_tokens\":12,\"completion_tokens\":7,\"total_tokens\":19,\"prompt_tokens_details\":{\"cached_tokens\":4},\"completion_tokens_details\":{\"reasoning_tokens\":2}}}\n\n";

fn chat_stream() -> (String, String) {
    let head = concat!(
        ": keep-alive\n\n",
        "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"finish_reason\":null}],\"usage\":null}\n\n",
        "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Grüße, 世界 🎉\"},\"finish_reason\":null}],\"usage\":null}\n\n",
        "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}],\"usage\":null}\n\n",
    );
    let tail = "data: [DONE]\n\n";
    let full = format!("{head}{CHAT_USAGE_EVENT}{tail}");
    (full, format!("{head}{tail}"))
}

const RESPONSES_STREAM: &str = concat!(
    "event: response.created\n",
    "data: {\"type\":\"response.created\",\"response\":{\"id\":\"r1\",\"status\":\"in_progress\",\"usage\":null}}\n\n",
    "event: response.output_text.delta\n",
    "data: {\"type\":\"response.output_text.delta\",\"delta\":\"Hi\"}\n\n",
    "event: response.completed\n",
    "data: {\"type\":\"response.completed\",\"response\":{\"id\":\"r1\",\"status\":\"completed\",\"usage\":{\"input_tokens\":20,\"input_tokens_details\":{\"cached_tokens\":8},\"output_tokens\":5,\"output_tokens_details\":{\"reasoning_tokens\":1},\"total_tokens\":25}}}\n\n",
);

const MESSAGES_STREAM: &str = concat!(
    "event: message_start\n",
    "data: {\"type\":\"message_start\",\"message\":{\"id\":\"m1\",\"type\":\"message\",\"role\":\"assistant\",\"content\":[],\"usage\":{\"input_tokens\":25,\"cache_read_input_tokens\":10,\"cache_creation_input_tokens\":5,\"output_tokens\":1}}}\n\n",
    "event: ping\n",
    "data: {\"type\": \"ping\"}\n\n",
    "event: content_block_delta\n",
    "data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Hello\"}}\n\n",
    "event: message_delta\n",
    "data: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"},\"usage\":{\"output_tokens\":15}}\n\n",
    "event: message_stop\n",
    "data: {\"type\":\"message_stop\"}\n\n",
);

fn event(name: Option<&str>, data: &str) -> SseEvent {
    SseEvent {
        event: name.map(str::to_string),
        data: data.to_string(),
    }
}

fn parse_all(chunks: &[&[u8]]) -> Vec<SseEvent> {
    let mut parser = SseParser::new();
    let mut events: Vec<SseEvent> = chunks.iter().flat_map(|c| parser.push(c)).collect();
    events.extend(parser.finish());
    events
}

/// Feeds `input` cut at `cuts` through a filter, returning output and filter.
fn run_filter(op: Operation, strip: bool, input: &[u8], cuts: &[usize]) -> (Vec<u8>, StreamFilter) {
    let mut filter = StreamFilter::new(op, strip);
    let mut out = Vec::new();
    let mut previous = 0;
    for cut in cuts.iter().copied().chain([input.len()]) {
        let cut = cut.clamp(previous, input.len());
        out.extend_from_slice(&filter.push(Bytes::copy_from_slice(&input[previous..cut])));
        previous = cut;
    }
    out.extend_from_slice(&filter.finish());
    (out, filter)
}

#[test]
fn parses_fields_as_the_spec_says() {
    let stream = concat!(
        "\u{feff}: a comment\n",
        "event: greeting\n",
        "id: 7\n",
        "retry: 100\n",
        "unknown: x\n",
        "data: first\n",
        "data:second\n",
        "data:  indented\n",
        "\n",
        "data\n",
        "\n",
        "event: dropped\n",
        "\n",
        "data: after\n",
        "\n",
    );
    assert_eq!(
        parse_all(&[stream.as_bytes()]),
        vec![
            event(Some("greeting"), "first\nsecond\n indented"),
            event(None, ""),
            event(None, "after"),
        ]
    );
}

#[test]
fn accepts_every_line_ending() {
    for ending in ["\n", "\r\n", "\r"] {
        let stream = format!(
            "event: e{ending}data: a{ending}data: b{ending}{ending}data: c{ending}{ending}"
        );
        assert_eq!(
            parse_all(&[stream.as_bytes()]),
            vec![event(Some("e"), "a\nb"), event(None, "c")],
            "{ending:?}"
        );
    }
    let mixed = "data: a\r\ndata: b\rdata: c\n\r\n";
    assert_eq!(parse_all(&[mixed.as_bytes()]), vec![event(None, "a\nb\nc")]);
}

#[test]
fn a_crlf_split_across_chunks_is_one_line_break() {
    let events = parse_all(&[b"data: a\r", b"\ndata: b\r", b"\n\r", b"\n"]);
    assert_eq!(events, vec![event(None, "a\nb")]);
}

#[test]
fn utf8_split_inside_a_character_survives() {
    let stream = "data: 世界\n\n".as_bytes();
    for cut in 0..=stream.len() {
        let (a, b) = stream.split_at(cut);
        assert_eq!(
            parse_all(&[a, b]),
            vec![event(None, "世界")],
            "cut at {cut}"
        );
    }
}

#[test]
fn bom_only_counts_at_the_very_start() {
    assert_eq!(
        parse_all(&[b"\xEF\xBB", b"\xBFdata: x\n\n"]),
        vec![event(None, "x")]
    );
    assert_eq!(
        parse_all(&[b"\xEF\xBB\xBF\ndata: x\n\n"]),
        vec![event(None, "x")]
    );
    let later = parse_all(&[b"data: x\n\n\xEF\xBB\xBFdata: y\n\n"]);
    assert_eq!(later, vec![event(None, "x")]);
}

#[test]
fn invalid_utf8_is_replaced_not_fatal() {
    assert_eq!(
        parse_all(&[b"data: \xff\xfe\n\n"]),
        vec![event(None, "\u{fffd}\u{fffd}")]
    );
}

#[test]
fn an_oversized_event_is_skipped_and_parsing_resumes() {
    let mut parser = SseParser::new();
    let big = vec![b'x'; 64 * 1024];
    assert!(parser.push(b"data: ").is_empty());
    for _ in 0..(MAX_EVENT_BYTES / big.len() + 2) {
        assert!(parser.push(&big).is_empty());
    }
    assert!(parser.line.len() <= MAX_EVENT_BYTES);
    assert_eq!(
        parser.push(b"\ndata: more\n\ndata: next\n\n"),
        vec![event(None, "next")]
    );
    assert_eq!(parser.overflows(), 1);
}

#[test]
fn finish_accepts_an_unterminated_last_event() {
    assert_eq!(parse_all(&[b"data: [DONE]"]), vec![event(None, "[DONE]")]);
    assert_eq!(parse_all(&[b"data: a\n"]), vec![event(None, "a")]);
    assert_eq!(parse_all(&[b": only a comment"]), vec![]);
}

#[test]
fn pass_through_returns_the_same_bytes_and_reads_usage() {
    let (stream, _) = chat_stream();
    let mut filter = StreamFilter::new(Operation::Chat, false);
    let chunk = Bytes::from(stream.clone());
    let out = filter.push(chunk.clone());
    assert_eq!(out.as_ptr(), chunk.as_ptr(), "no copy");
    assert!(filter.finish().is_empty());
    assert!(filter.saw_done());
    assert!(!filter.saw_error());
    let expected = Usage {
        input_tokens: 12,
        output_tokens: 7,
        cached_input_tokens: 4,
        reasoning_tokens: 2,
    };
    assert_eq!(filter.usage(), Some(expected));
}

#[test]
fn strip_removes_exactly_the_usage_chunk_wherever_the_stream_is_cut() {
    let (stream, without_usage) = chat_stream();
    for ending in ["\n", "\r\n", "\r"] {
        let input = stream.replace('\n', ending);
        let expected = without_usage.replace('\n', ending);
        for cut in 0..=input.len() {
            let (out, filter) = run_filter(Operation::Chat, true, input.as_bytes(), &[cut]);
            assert_eq!(
                String::from_utf8_lossy(&out),
                expected,
                "{ending:?} cut at {cut}"
            );
            assert_eq!(filter.usage().map(|u| u.output_tokens), Some(7));
            assert!(filter.saw_done());
        }
    }
}

#[test]
fn strip_keeps_chunks_that_carry_choices_and_usage() {
    let input =
        "data: {\"choices\":[{\"delta\":{}}],\"usage\":{\"prompt_tokens\":1}}\n\ndata: [DONE]\n\n";
    let (out, filter) = run_filter(Operation::Chat, true, input.as_bytes(), &[]);
    assert_eq!(out, input.as_bytes());
    assert_eq!(filter.usage().map(|u| u.input_tokens), Some(1));
}

#[test]
fn strip_never_hoards_an_oversized_event() {
    let mut filter = StreamFilter::new(Operation::Chat, true);
    let head: &[u8] = b"data: {\"choices\":[],\"x\":\"";
    let big = vec![b'y'; MAX_EVENT_BYTES];
    let tail: &[u8] = b"\",\"usage\":{}}\n\ndata: [DONE]\n\n";
    let mut forwarded = filter.push(Bytes::from_static(head)).len();
    forwarded += filter.push(Bytes::from(big.clone())).len();
    assert!(filter.held.len() <= MAX_EVENT_BYTES);
    forwarded += filter.push(Bytes::from_static(tail)).len();
    forwarded += filter.finish().len();
    assert_eq!(forwarded, head.len() + big.len() + tail.len());
    assert!(filter.saw_done());
}

#[test]
fn responses_usage_comes_from_the_completed_event() {
    let (out, filter) = run_filter(
        Operation::Responses,
        true,
        RESPONSES_STREAM.as_bytes(),
        &[100],
    );
    assert_eq!(out, RESPONSES_STREAM.as_bytes(), "never stripped");
    assert!(filter.saw_done());
    let expected = Usage {
        input_tokens: 20,
        output_tokens: 5,
        cached_input_tokens: 8,
        reasoning_tokens: 1,
    };
    assert_eq!(filter.usage(), Some(expected));
}

#[test]
fn anthropic_usage_combines_start_and_delta() {
    let (_, filter) = run_filter(
        Operation::Messages,
        false,
        MESSAGES_STREAM.as_bytes(),
        &[7, 300],
    );
    assert!(filter.saw_done());
    let expected = Usage {
        input_tokens: 40,
        output_tokens: 15,
        cached_input_tokens: 10,
        reasoning_tokens: 0,
    };
    assert_eq!(filter.usage(), Some(expected));
}

#[test]
fn a_cut_stream_is_not_done() {
    let (stream, _) = chat_stream();
    let cut = stream.find("data: [DONE]").unwrap_or(0);
    let (_, filter) = run_filter(Operation::Chat, false, &stream.as_bytes()[..cut], &[]);
    assert!(!filter.saw_done());
    let cut = MESSAGES_STREAM.find("event: message_stop").unwrap_or(0);
    let (_, filter) = run_filter(
        Operation::Messages,
        false,
        &MESSAGES_STREAM.as_bytes()[..cut],
        &[],
    );
    assert!(!filter.saw_done());
    assert_eq!(filter.usage().map(|u| u.output_tokens), Some(15));
}

#[test]
fn upstream_error_events_end_the_stream() {
    let cases = [
        (
            Operation::Chat,
            "data: {\"error\":{\"message\":\"overloaded\"}}\n\n",
        ),
        (
            Operation::Responses,
            "event: error\ndata: {\"type\":\"error\",\"message\":\"x\"}\n\n",
        ),
        (
            Operation::Messages,
            "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\"}}\n\n",
        ),
    ];
    for (op, input) in cases {
        let (_, filter) = run_filter(op, false, input.as_bytes(), &[]);
        assert!(filter.saw_error() && filter.saw_done(), "{op:?}");
    }
}

#[test]
fn error_events_have_each_sdks_shape() {
    let openai = parse_all(&[&error_event(Operation::Chat, "upstream \"cut\"")]);
    let [only] = openai.as_slice() else {
        panic!("{openai:?}")
    };
    assert_eq!(only.event, None);
    let data: Value = serde_json::from_str(&only.data).unwrap();
    assert_eq!(
        data,
        json!({"error": {"message": "upstream \"cut\"", "type": "aiflags_error", "code": "upstream_stream_interrupted"}})
    );
    let anthropic = parse_all(&[&error_event(Operation::Messages, "cut")]);
    let [only] = anthropic.as_slice() else {
        panic!("{anthropic:?}")
    };
    assert_eq!(only.event.as_deref(), Some("error"));
    let data: Value = serde_json::from_str(&only.data).unwrap();
    assert_eq!(
        data,
        json!({"type": "error", "error": {"type": "api_error", "message": "cut"}})
    );
}

/// Events as a generator sees them, plus their wire form with one line ending.
fn events_strategy() -> impl Strategy<Value = Vec<(Option<String>, Vec<String>)>> {
    let line = "[^\r\n]{0,12}";
    let one = (
        prop::option::of("[a-z_.]{1,10}"),
        prop::collection::vec(line, 1..4),
    );
    prop::collection::vec(one, 0..8)
}

fn serialize(events: &[(Option<String>, Vec<String>)], ending: &str) -> String {
    let mut out = String::new();
    for (name, lines) in events {
        out.push_str(&format!(": comment{ending}"));
        if let Some(name) = name {
            out.push_str(&format!("event: {name}{ending}"));
        }
        for line in lines {
            out.push_str(&format!("data: {line}{ending}"));
        }
        out.push_str(ending);
    }
    out
}

fn split_at_cuts<'a>(input: &'a [u8], cuts: &[usize]) -> Vec<&'a [u8]> {
    let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (input.len() + 1)).collect();
    cuts.sort_unstable();
    let mut pieces = Vec::new();
    let mut previous = 0;
    for cut in cuts.into_iter().chain([input.len()]) {
        pieces.push(&input[previous..cut]);
        previous = cut;
    }
    pieces
}

proptest! {
    #[test]
    fn any_split_yields_the_same_events(
        events in events_strategy(),
        ending in prop::sample::select(vec!["\n", "\r\n", "\r"]),
        cuts in prop::collection::vec(any::<usize>(), 0..12),
    ) {
        let wire = serialize(&events, ending);
        let expected: Vec<SseEvent> = events
            .iter()
            .map(|(name, lines)| SseEvent { event: name.clone(), data: lines.join("\n") })
            .collect();
        prop_assert_eq!(parse_all(&[wire.as_bytes()]), expected.clone());
        prop_assert_eq!(parse_all(&split_at_cuts(wire.as_bytes(), &cuts)), expected);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512), cuts in prop::collection::vec(any::<usize>(), 0..6)) {
        let _ = parse_all(&split_at_cuts(&bytes, &cuts));
        for op in Operation::ALL {
            let (out, _) = run_filter(op, false, &bytes, &cuts);
            prop_assert_eq!(&out, &bytes);
            let _ = run_filter(op, true, &bytes, &cuts);
        }
    }

    #[test]
    fn strip_false_forwards_every_byte(events in events_strategy(), cuts in prop::collection::vec(any::<usize>(), 0..8)) {
        let wire = serialize(&events, "\n");
        let mut sorted: Vec<usize> = cuts.iter().map(|c| c % (wire.len() + 1)).collect();
        sorted.sort_unstable();
        let (out, _) = run_filter(Operation::Chat, false, wire.as_bytes(), &sorted);
        prop_assert_eq!(out, wire.into_bytes());
    }

    #[test]
    fn strip_true_removes_only_the_usage_event(
        ending in prop::sample::select(vec!["\n", "\r\n", "\r"]),
        cuts in prop::collection::vec(any::<usize>(), 0..8),
    ) {
        let (stream, without_usage) = chat_stream();
        let input = stream.replace('\n', ending);
        let mut sorted: Vec<usize> = cuts.iter().map(|c| c % (input.len() + 1)).collect();
        sorted.sort_unstable();
        let (out, filter) = run_filter(Operation::Chat, true, input.as_bytes(), &sorted);
        prop_assert_eq!(String::from_utf8_lossy(&out), without_usage.replace('\n', ending));
        prop_assert_eq!(filter.usage().map(|u| u.input_tokens), Some(12));
    }
}
