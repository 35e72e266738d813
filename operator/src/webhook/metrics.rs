//! The webhook's own series, registered beside the controller's.

use prometheus::{Histogram, HistogramOpts, IntCounterVec, Opts, Registry};

use super::review::Outcome;

#[derive(Clone)]
pub struct WebhookMetrics {
    admissions: IntCounterVec,
    duration: Histogram,
    cert_reloads: IntCounterVec,
}

impl WebhookMetrics {
    pub fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let admissions = IntCounterVec::new(
            Opts::new(
                "aiflags_operator_webhook_admissions_total",
                "Pod admissions answered by the injection webhook, by result \
                 (injected, already_injected, skipped, refused, malformed)",
            ),
            &["result"],
        )?;
        let duration = Histogram::with_opts(
            HistogramOpts::new(
                "aiflags_operator_webhook_duration_seconds",
                "Time to answer one AdmissionReview",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
            ]),
        )?;
        let cert_reloads = IntCounterVec::new(
            Opts::new(
                "aiflags_operator_webhook_cert_reloads_total",
                "Serving certificate reloads after its files changed, by result",
            ),
            &["result"],
        )?;
        registry.register(Box::new(admissions.clone()))?;
        registry.register(Box::new(duration.clone()))?;
        registry.register(Box::new(cert_reloads.clone()))?;
        // Every result shows from the start, so a rate() has a baseline.
        for outcome in Outcome::ALL {
            admissions.with_label_values(&[outcome.label()]);
        }
        for result in ["success", "error"] {
            cert_reloads.with_label_values(&[result]);
        }
        Ok(WebhookMetrics {
            admissions,
            duration,
            cert_reloads,
        })
    }

    pub fn admitted(&self, outcome: Outcome, seconds: f64) {
        self.admissions.with_label_values(&[outcome.label()]).inc();
        self.duration.observe(seconds);
    }

    pub fn cert_reloaded(&self, ok: bool) {
        let result = if ok { "success" } else { "error" };
        self.cert_reloads.with_label_values(&[result]).inc();
    }
}
