//! What happened to one request, and the one place it is reported from.
//!
//! The route fills a [`Record`] as the request goes; a [`ReportOnce`] holds
//! it and reports it exactly once — when the response body handed to the
//! client ends ([`Recorded`]), or, if the client goes away first, when it is
//! dropped (status 499). Metrics and the access log see the same record.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::{Body, Frame, SizeHint};

use crate::ablation::{self, Part};
use crate::body::BoxError;
use crate::budget::Reservation;
use crate::telemetry::access_log::AccessLog;
use crate::telemetry::{Record, SharedTelemetry};

/// Where finished records go.
pub(crate) struct Reporter {
    pub telemetry: SharedTelemetry,
    pub access_log: Option<AccessLog>,
}

impl Reporter {
    fn report(&self, record: &Record) {
        if ablation::off(Part::Report) {
            return;
        }
        self.telemetry.request_finished(record);
        if let Some(log) = &self.access_log {
            log.write(record);
        }
    }
}

/// A record that will be reported exactly once.
pub(crate) struct ReportOnce {
    record: Record,
    reporter: Arc<Reporter>,
    reported: bool,
}

impl ReportOnce {
    pub(crate) fn new(record: Record, reporter: Arc<Reporter>) -> ReportOnce {
        reporter.telemetry.request_started();
        ReportOnce {
            record,
            reporter,
            reported: false,
        }
    }

    /// The record, to fill in.
    pub(crate) fn record(&mut self) -> &mut Record {
        &mut self.record
    }

    fn finish(&mut self, client_gone: bool) {
        if std::mem::replace(&mut self.reported, true) {
            return;
        }
        if client_gone {
            self.record.status = 499;
        }
        self.record.duration = self.record.started.elapsed();
        self.reporter.report(&self.record);
    }
}

impl Drop for ReportOnce {
    /// Dropped unreported: the client went away before its response ended.
    fn drop(&mut self) {
        self.finish(true);
    }
}

/// How a response body ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum End {
    /// Sent whole to the client.
    Complete,
    /// The body failed (its source broke or went quiet); the client got a cut response.
    Broken,
    /// The client went away before the end.
    ClientGone,
}

/// A response body that knows something the record should say when it ends
/// (a stream's usage, whether it broke).
pub(crate) trait Tracked: Body<Data = Bytes, Error = BoxError> + Unpin {
    fn settle(&mut self, _record: &mut Record, _end: End) {}
}

/// A response body that owns its request's record and reports it once it
/// ends, however it ends.
pub(crate) struct Recorded<B: Tracked> {
    body: B,
    report: Option<ReportOnce>,
}

impl<B: Tracked> Recorded<B> {
    pub(crate) fn new(body: B, report: ReportOnce) -> Recorded<B> {
        Recorded {
            body,
            report: Some(report),
        }
    }

    fn end(&mut self, end: End) {
        if let Some(mut report) = self.report.take() {
            self.body.settle(report.record(), end);
            report.finish(end == End::ClientGone);
        }
    }
}

impl<B: Tracked> Body for Recorded<B> {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let polled = Pin::new(&mut self.body).poll_frame(cx);
        match &polled {
            Poll::Ready(None) => self.end(End::Complete),
            Poll::Ready(Some(Ok(_))) if self.body.is_end_stream() => self.end(End::Complete),
            // hyper drops the body after an error: the client gets a cut response.
            Poll::Ready(Some(Err(_))) => self.end(End::Broken),
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

impl<B: Tracked> Drop for Recorded<B> {
    /// Dropped before its end: the client went away — unless there was
    /// nothing left to send (an empty body, a 204, an answer to HEAD, which
    /// hyper never polls).
    fn drop(&mut self) {
        let end = if self.body.is_end_stream() {
            End::Complete
        } else {
            End::ClientGone
        };
        self.end(end);
    }
}

/// A response body held whole, with the error type every response body has.
pub(crate) struct WholeBody {
    body: Full<Bytes>,
    /// Bytes counted against the memory budget until the body is gone.
    _held: Option<Reservation>,
}

impl WholeBody {
    pub(crate) fn new(bytes: Bytes) -> WholeBody {
        WholeBody {
            body: Full::new(bytes),
            _held: None,
        }
    }

    pub(crate) fn held(bytes: Bytes, reservation: Reservation) -> WholeBody {
        WholeBody {
            body: Full::new(bytes),
            _held: Some(reservation),
        }
    }
}

impl Body for WholeBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        Pin::new(&mut self.body)
            .poll_frame(cx)
            .map_err(|e| match e {})
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

impl Tracked for WholeBody {}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::sync::Mutex;

    use http_body_util::BodyExt;

    use super::*;
    use crate::telemetry::Telemetry;

    /// What the reporter saw: each report's status and how its body said it ended.
    #[derive(Default)]
    struct Seen {
        started: Mutex<u32>,
        reports: Mutex<Vec<(u16, bool)>>,
    }

    impl Telemetry for Seen {
        fn request_started(&self) {
            *self.started.lock().unwrap() += 1;
        }
        fn request_finished(&self, record: &Record) {
            let reports = &mut self.reports.lock().unwrap();
            reports.push((record.status, record.stream_error));
        }
    }

    /// A response body of given frames, some of them failures, that notes
    /// how it was told it ended.
    struct Frames {
        frames: VecDeque<Result<&'static str, &'static str>>,
        ends: Arc<Mutex<Vec<End>>>,
    }

    impl Body for Frames {
        type Data = Bytes;
        type Error = BoxError;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
            Poll::Ready(self.frames.pop_front().map(|f| match f {
                Ok(data) => Ok(Frame::data(Bytes::from_static(data.as_bytes()))),
                Err(e) => Err(e.into()),
            }))
        }

        fn is_end_stream(&self) -> bool {
            self.frames.is_empty()
        }
    }

    impl Tracked for Frames {
        fn settle(&mut self, record: &mut Record, end: End) {
            self.ends.lock().unwrap().push(end);
            record.stream_error = end == End::Broken;
        }
    }

    struct Case {
        seen: Arc<Seen>,
        ends: Arc<Mutex<Vec<End>>>,
    }

    impl Case {
        fn new() -> Case {
            Case {
                seen: Arc::new(Seen::default()),
                ends: Arc::default(),
            }
        }

        fn report(&self) -> ReportOnce {
            let reporter = Arc::new(Reporter {
                telemetry: self.seen.clone(),
                access_log: None,
            });
            let mut report = ReportOnce::new(Record::new("req-1".into(), "chat"), reporter);
            report.record().status = 200;
            report
        }

        fn body(&self, frames: &[Result<&'static str, &'static str>]) -> Recorded<Frames> {
            let body = Frames {
                frames: frames.iter().copied().collect(),
                ends: self.ends.clone(),
            };
            Recorded::new(body, self.report())
        }

        /// Reports so far, and the ends the body was told of.
        fn seen(&self) -> (Vec<(u16, bool)>, Vec<End>) {
            let reports = self.seen.reports.lock().unwrap().clone();
            (reports, self.ends.lock().unwrap().clone())
        }
    }

    #[tokio::test]
    async fn a_body_sent_whole_is_reported_once_when_its_last_frame_goes() {
        let case = Case::new();
        let mut body = case.body(&[Ok("data: a\n\n"), Ok("data: b\n\n")]);
        body.frame().await.unwrap().unwrap();
        assert_eq!(case.seen(), (vec![], vec![]), "not before the end");
        body.frame().await.unwrap().unwrap();
        assert_eq!(case.seen(), (vec![(200, false)], vec![End::Complete]));
        assert!(body.frame().await.is_none());
        drop(body);
        assert_eq!(case.seen(), (vec![(200, false)], vec![End::Complete]));
        assert_eq!(*case.seen.started.lock().unwrap(), 1);
    }

    #[tokio::test]
    async fn a_body_its_source_cut_is_reported_once_as_broken() {
        let case = Case::new();
        let mut body = case.body(&[Ok("data: a\n\n"), Err("upstream reset"), Ok("never")]);
        body.frame().await.unwrap().unwrap();
        assert!(body.frame().await.unwrap().is_err());
        // The client got a 200 head and a cut body: the status stays.
        assert_eq!(case.seen(), (vec![(200, true)], vec![End::Broken]));
        drop(body);
        assert_eq!(case.seen(), (vec![(200, true)], vec![End::Broken]));
    }

    #[tokio::test]
    async fn a_client_gone_mid_body_is_reported_once_as_499() {
        let case = Case::new();
        let mut body = case.body(&[Ok("data: a\n\n"), Ok("data: b\n\n"), Ok("data: c\n\n")]);
        body.frame().await.unwrap().unwrap();
        assert_eq!(case.seen(), (vec![], vec![]));
        drop(body);
        assert_eq!(case.seen(), (vec![(499, false)], vec![End::ClientGone]));
    }

    #[test]
    fn a_body_with_nothing_to_send_dropped_unpolled_is_complete() {
        // An empty body, a 204 or an answer to HEAD: hyper never polls it.
        let case = Case::new();
        drop(case.body(&[]));
        assert_eq!(case.seen(), (vec![(200, false)], vec![End::Complete]));
    }

    #[test]
    fn a_record_dropped_before_any_response_is_reported_once_as_499() {
        let case = Case::new();
        drop(case.report());
        assert_eq!(case.seen(), (vec![(499, false)], vec![]));
        assert_eq!(*case.seen.started.lock().unwrap(), 1);
    }
}
