//! The queries a check asks Prometheus, one number each. Pure.
//!
//! They read the sidecars' series ([docs/metrics.md]) with the `namespace`
//! label Prometheus adds to every scraped pod (a PodMonitor does), and use
//! the dashboards' definitions: an error is a response with status 5xx or
//! 429 after every retry and fallback; a request counts under the variant
//! the split chose (`variant`), and `model` says what served it, so a
//! canary request served by another model is a fallback.
//!
//! [docs/metrics.md]: ../../../../docs/metrics.md

use std::time::Duration;

/// Status codes counted as errors, as the dashboards and alerts count them.
pub const ERROR_CODES: &str = "5..|429";
/// Verdicts of an answer that came back empty or filtered.
pub const BAD_VERDICTS: &str = "empty|content_filter";

/// Where one variant's series are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Scope<'a> {
    pub namespace: &'a str,
    pub flag: &'a str,
    pub variant: &'a str,
    /// The variant's own model.
    pub model: &'a str,
    pub window: Duration,
}

impl Scope<'_> {
    fn requests(&self, extra: &str) -> String {
        format!(
            "sum(increase(aiflags_requests_total{{namespace=\"{}\", flag=\"{}\", variant=\"{}\"{extra}}}[{}]))",
            escape(self.namespace),
            escape(self.flag),
            escape(self.variant),
            window(self.window)
        )
    }

    /// Requests of the variant over the window.
    pub fn request_count(&self) -> String {
        self.requests("")
    }

    /// Share of them answered with an error.
    pub fn error_rate(&self) -> String {
        ratio_or_zero(
            &self.requests(&format!(", code=~\"{ERROR_CODES}\"")),
            &self.requests(""),
        )
    }

    /// Share of them served by another model than the variant's.
    pub fn fallback_rate(&self) -> String {
        ratio_or_zero(
            &self.requests(&format!(", model!=\"{}\"", escape(self.model))),
            &self.requests(""),
        )
    }

    /// 95th percentile of their duration, in seconds.
    pub fn p95_latency(&self) -> String {
        format!(
            "histogram_quantile(0.95, sum by (le) (rate(aiflags_request_duration_seconds_bucket{{namespace=\"{}\", flag=\"{}\", variant=\"{}\"}}[{}])))",
            escape(self.namespace),
            escape(self.flag),
            escape(self.variant),
            window(self.window)
        )
    }

    /// Share of the answers the variant's model gave (judged by the
    /// sidecars, `aiflags_answers_total`) that were empty or content-filtered.
    /// Counted by the variant that answered, so a canary whose bad answers
    /// fallbacks hide still shows.
    pub fn empty_rate(&self) -> String {
        let answers = |extra: &str| {
            format!(
                "sum(increase(aiflags_answers_total{{namespace=\"{}\", flag=\"{}\", variant=\"{}\"{extra}}}[{}]))",
                escape(self.namespace),
                escape(self.flag),
                escape(self.variant),
                window(self.window)
            )
        };
        ratio_or_zero(
            &answers(&format!(", verdict=~\"{BAD_VERDICTS}\"")),
            &answers(""),
        )
    }
}

/// `numerator / denominator`, 0 where the numerator has no series (no
/// error ever happened), nothing where the denominator has none.
fn ratio_or_zero(numerator: &str, denominator: &str) -> String {
    format!("({numerator} or {denominator} * 0) / {denominator}")
}

/// Whole seconds, at least one.
fn window(window: Duration) -> String {
    format!("{}s", window.as_secs().max(1))
}

/// A PromQL double-quoted string's content.
fn escape(value: &str) -> String {
    let mut escaped = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => escaped.push_str("\\\\"),
            '"' => escaped.push_str("\\\""),
            '\n' => escaped.push_str("\\n"),
            c => escaped.push(c),
        }
    }
    escaped
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scope() -> Scope<'static> {
        Scope {
            namespace: "shop",
            flag: "summarizer",
            variant: "candidate",
            model: "gpt-4.1-mini",
            window: Duration::from_secs(60),
        }
    }

    #[test]
    fn queries_read_the_variants_series_over_the_window() {
        let s = scope();
        assert_eq!(
            s.request_count(),
            r#"sum(increase(aiflags_requests_total{namespace="shop", flag="summarizer", variant="candidate"}[60s]))"#
        );
        assert_eq!(
            s.error_rate(),
            r#"(sum(increase(aiflags_requests_total{namespace="shop", flag="summarizer", variant="candidate", code=~"5..|429"}[60s])) or sum(increase(aiflags_requests_total{namespace="shop", flag="summarizer", variant="candidate"}[60s])) * 0) / sum(increase(aiflags_requests_total{namespace="shop", flag="summarizer", variant="candidate"}[60s]))"#
        );
        assert!(s.fallback_rate().contains(r#"model!="gpt-4.1-mini""#));
        assert_eq!(
            s.p95_latency(),
            r#"histogram_quantile(0.95, sum by (le) (rate(aiflags_request_duration_seconds_bucket{namespace="shop", flag="summarizer", variant="candidate"}[60s])))"#
        );
        assert!(s.empty_rate().contains(
            r#"aiflags_answers_total{namespace="shop", flag="summarizer", variant="candidate", verdict=~"empty|content_filter"}[60s]"#
        ));
    }

    #[test]
    fn label_values_are_escaped_and_windows_are_whole_seconds() {
        let s = Scope {
            model: "we\"ird\\model",
            window: Duration::from_millis(300),
            ..scope()
        };
        assert!(s.fallback_rate().contains(r#"model!="we\"ird\\model""#));
        assert!(s.request_count().ends_with("[1s]))"));
    }
}
