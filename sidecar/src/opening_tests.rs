use std::io::Write;
use std::pin::Pin;
use std::time::Duration;

use aiflags_api::Operation;
use bytes::Bytes;
use futures::Stream;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use tokio::sync::mpsc;

use super::*;
use crate::request::decode::Coding;

type Item = Result<Frame<Bytes>, String>;
type TestBody = StreamBody<Pin<Box<dyn Stream<Item = Item> + Send>>>;

/// A body fed by the test; it stays open while the sender lives.
fn open_body() -> (mpsc::UnboundedSender<Item>, TestBody) {
    let (tx, rx) = mpsc::unbounded_channel::<Item>();
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    (tx, StreamBody::new(Box::pin(stream)))
}

/// A body that sends `chunks` and then ends.
fn ended(chunks: &[&str]) -> TestBody {
    let (tx, body) = open_body();
    for chunk in chunks {
        let _ = tx.send(Ok(Frame::data(Bytes::from(chunk.to_string()))));
    }
    body
}

const ROLE: &str =
    "data: {\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"}}]}\n\n";
const NOTHING: &str = "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"\"}}]}\n\n";
const HELLO: &str = "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hello\"}}]}\n\n";
const STOP: &str =
    "data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n";
const FILTERED: &str =
    "data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"content_filter\"}]}\n\n";
const DONE: &str = "data: [DONE]\n\n";

fn hold() -> Hold {
    Hold {
        budget: Budget::new(1 << 20),
        limit: MAX_HELD,
    }
}

fn reader(op: Operation) -> StreamReader {
    StreamReader::new(op, false, None)
}

fn soon() -> Instant {
    Instant::now() + Duration::from_secs(20)
}

async fn open(body: &mut TestBody, hold: Option<&Hold>) -> Result<Opened, OpenError> {
    open_stream(body, &mut reader(Operation::Chat), hold, soon()).await
}

fn committed(opened: Result<Opened, OpenError>) -> Bytes {
    match opened {
        Ok(Opened::Commit { bytes, .. }) => bytes,
        other => panic!("not committed: {other:?}"),
    }
}

async fn next_chunk(body: &mut TestBody) -> Bytes {
    let frame = body.frame().await.unwrap().unwrap();
    frame.into_data().unwrap()
}

#[tokio::test]
async fn without_judging_the_first_data_commits() {
    let mut body = ended(&[ROLE, HELLO, STOP, DONE]);
    assert_eq!(committed(open(&mut body, None).await), ROLE);
    assert_eq!(
        next_chunk(&mut body).await,
        HELLO,
        "the rest is left to stream"
    );
}

#[tokio::test]
async fn silent_chunks_are_held_until_the_first_content_then_go_with_it() {
    let mut body = ended(&[ROLE, NOTHING, HELLO, STOP, DONE]);
    let opening = committed(open(&mut body, Some(&hold())).await);
    assert_eq!(opening, format!("{ROLE}{NOTHING}{HELLO}"));
    assert_eq!(next_chunk(&mut body).await, STOP);
}

#[tokio::test]
async fn a_stream_that_ends_silent_or_filtered_is_judged_whole() {
    for (chunks, verdict) in [
        (vec![ROLE, STOP, DONE], Verdict::Empty),
        (vec![ROLE, NOTHING, FILTERED, DONE], Verdict::ContentFilter),
    ] {
        let budget = Budget::new(1 << 20);
        let hold = Hold {
            budget: budget.clone(),
            limit: MAX_HELD,
        };
        let mut body = ended(&chunks);
        match open(&mut body, Some(&hold)).await {
            Ok(Opened::Ended {
                verdict: got,
                bytes,
                held,
            }) => {
                assert_eq!(got, verdict);
                assert_eq!(bytes, chunks.concat(), "every byte kept to hand back");
                assert!(budget.used() > 0);
                drop(held);
                assert_eq!(budget.used(), 0, "the budget is given back");
            }
            other => panic!("{chunks:?}: {other:?}"),
        }
    }
    // Without judging the same stream commits at once.
    let mut body = ended(&[ROLE, STOP, DONE]);
    assert_eq!(committed(open(&mut body, None).await), ROLE);
}

#[tokio::test]
async fn responses_and_messages_streams_are_held_alike() {
    let event = |kind: &str, data: &str| format!("event: {kind}\ndata: {data}\n\n");
    let created = event(
        "response.created",
        r#"{"type":"response.created","response":{"output":[]}}"#,
    );
    let incomplete = event(
        "response.incomplete",
        r#"{"type":"response.incomplete","response":{"output":[],"incomplete_details":{"reason":"content_filter"}}}"#,
    );
    let mut body = ended(&[&created, &incomplete]);
    let (mut responses, hold) = (reader(Operation::Responses), hold());
    let opened = open_stream(&mut body, &mut responses, Some(&hold), soon()).await;
    assert!(
        matches!(
            opened,
            Ok(Opened::Ended {
                verdict: Verdict::ContentFilter,
                ..
            })
        ),
        "a filtered response"
    );

    let start = event(
        "message_start",
        r#"{"type":"message_start","message":{"content":[]}}"#,
    );
    let block = event(
        "content_block_start",
        r#"{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}"#,
    );
    let text = event(
        "content_block_delta",
        r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hi"}}"#,
    );
    let mut body = ended(&[
        &start,
        "event: ping\ndata: {\"type\":\"ping\"}\n\n",
        &block,
        &text,
    ]);
    let mut messages = reader(Operation::Messages);
    let opened = open_stream(&mut body, &mut messages, Some(&hold), soon()).await;
    let opening = committed(opened);
    assert!(opening.ends_with(text.as_bytes()) && opening.starts_with(start.as_bytes()));
}

#[tokio::test]
async fn an_upstream_error_event_goes_to_the_client() {
    let error = "data: {\"error\":{\"message\":\"overloaded\",\"type\":\"server_error\"}}\n\n";
    let mut body = ended(&[ROLE, error]);
    assert_eq!(
        committed(open(&mut body, Some(&hold())).await),
        format!("{ROLE}{error}")
    );
}

#[tokio::test]
async fn a_stream_cut_before_its_content_fails_the_attempt() {
    let (tx, mut body) = open_body();
    tx.send(Ok(Frame::data(Bytes::from(ROLE)))).unwrap();
    drop(tx);
    assert_eq!(
        open(&mut body, Some(&hold())).await.unwrap_err(),
        OpenError::Cut {
            data: true,
            detail: None
        }
    );
    let (tx, mut body) = open_body();
    tx.send(Ok(Frame::data(Bytes::from(ROLE)))).unwrap();
    tx.send(Err("connection reset".into())).unwrap();
    assert_eq!(
        open(&mut body, Some(&hold())).await.unwrap_err(),
        OpenError::Cut {
            data: true,
            detail: Some("connection reset".into())
        }
    );
    let mut body = ended(&[]);
    assert_eq!(
        open(&mut body, None).await.unwrap_err(),
        OpenError::Cut {
            data: false,
            detail: None
        }
    );
}

#[tokio::test]
async fn the_first_token_deadline_bounds_the_hold() {
    let (tx, mut body) = open_body();
    tx.send(Ok(Frame::data(Bytes::from(ROLE)))).unwrap();
    let by = Instant::now() + Duration::from_millis(50);
    let opened = open_stream(&mut body, &mut reader(Operation::Chat), Some(&hold()), by).await;
    assert_eq!(opened.unwrap_err(), OpenError::Timeout { data: true });
    drop(tx);
}

#[tokio::test]
async fn what_is_held_is_bounded_by_size_and_budget() {
    let silent: Vec<&str> = std::iter::repeat_n(NOTHING, 100).collect();
    let mut chunks = vec![ROLE];
    chunks.extend(silent);
    chunks.push(HELLO);
    let small = Hold {
        budget: Budget::new(1 << 20),
        limit: 1000,
    };
    let mut body = ended(&chunks);
    let opening = committed(open(&mut body, Some(&small)).await);
    assert!(opening.len() > 1000 && opening.len() < 1000 + NOTHING.len() + 1);
    assert!(
        !opening.ends_with(HELLO.as_bytes()),
        "let go before the content"
    );

    let budget = Budget::new(600);
    let mut hog = budget.reserve_none();
    assert!(hog.resize(400));
    let tight = Hold {
        budget: budget.clone(),
        limit: MAX_HELD,
    };
    let mut body = ended(&chunks);
    let opening = committed(open(&mut body, Some(&tight)).await);
    assert!(opening.len() > 200 && opening.len() <= 200 + NOTHING.len());
}

#[tokio::test]
async fn compressed_streams_are_judged_on_what_they_decode_to() {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder
        .write_all(format!("{ROLE}{STOP}{DONE}").as_bytes())
        .unwrap();
    let gzipped = encoder.finish().unwrap();
    let (tx, mut body) = open_body();
    for piece in gzipped.chunks(7) {
        tx.send(Ok(Frame::data(Bytes::copy_from_slice(piece))))
            .unwrap();
    }
    drop(tx);
    let mut reader = StreamReader::new(Operation::Chat, false, Some(Coding::Gzip));
    match open_stream(&mut body, &mut reader, Some(&hold()), soon()).await {
        Ok(Opened::Ended { verdict, bytes, .. }) => {
            assert_eq!(verdict, Verdict::Empty);
            assert_eq!(bytes, format!("{ROLE}{STOP}{DONE}"));
        }
        other => panic!("{other:?}"),
    }
    let (tx, mut body) = open_body();
    tx.send(Ok(Frame::data(Bytes::from_static(b"not gzip at all"))))
        .unwrap();
    let mut reader = StreamReader::new(Operation::Chat, false, Some(Coding::Gzip));
    let opened = open_stream(&mut body, &mut reader, Some(&hold()), soon()).await;
    assert!(
        matches!(opened, Err(OpenError::Undecodable(_))),
        "{opened:?}"
    );
}
