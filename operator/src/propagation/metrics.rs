//! The propagation pass's metrics: proxies per flag and per served
//! revision, and the sidecar polls behind them.

use std::collections::{BTreeMap, BTreeSet};

use aiflags_api::ProxyCount;
use prometheus::{Histogram, HistogramOpts, IntCounterVec, IntGaugeVec, Opts, Registry};

pub struct PropagationMetrics {
    flag_proxies: IntGaugeVec,
    proxies: IntGaugeVec,
    polls: IntCounterVec,
    pass_duration: Histogram,
    /// Series set by the last pass, so what it no longer sets is dropped.
    exported_flags: BTreeSet<(String, String)>,
    exported_revisions: BTreeSet<(String, String)>,
}

impl PropagationMetrics {
    pub fn new(registry: &Registry) -> Result<Self, prometheus::Error> {
        let flag_proxies = IntGaugeVec::new(
            Opts::new(
                "aiflags_operator_flag_proxies",
                "Running injected pods the flag's podSelector matches (state=\"total\"), and of \
                 those the ones whose sidecar serves the namespace's latest config revision \
                 (state=\"at_revision\")",
            ),
            &["namespace", "flag", "state"],
        )?;
        let proxies = IntGaugeVec::new(
            Opts::new(
                "aiflags_operator_proxies",
                "Running injected pods by the config revision their sidecar serves \
                 (revision=\"none\": no config yet, \"unknown\": no answer or not yet asked)",
            ),
            &["namespace", "revision"],
        )?;
        let polls = IntCounterVec::new(
            Opts::new(
                "aiflags_operator_proxy_polls_total",
                "Requests to sidecars' admin /metrics, by result: serving, no_config, unreachable",
            ),
            &["result"],
        )?;
        let pass_duration = Histogram::with_opts(
            HistogramOpts::new(
                "aiflags_operator_propagation_pass_duration_seconds",
                "Time of one propagation pass: polling the sidecars due and writing the statuses that changed",
            )
            .buckets(vec![0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0]),
        )?;
        registry.register(Box::new(flag_proxies.clone()))?;
        registry.register(Box::new(proxies.clone()))?;
        registry.register(Box::new(polls.clone()))?;
        registry.register(Box::new(pass_duration.clone()))?;
        Ok(PropagationMetrics {
            flag_proxies,
            proxies,
            polls,
            pass_duration,
            exported_flags: BTreeSet::new(),
            exported_revisions: BTreeSet::new(),
        })
    }

    pub fn polled(&self, result: &str) {
        self.polls.with_label_values(&[result]).inc();
    }

    pub fn pass_finished(&self, seconds: f64) {
        self.pass_duration.observe(seconds);
    }

    /// Sets this pass's series and drops the ones it no longer has:
    /// per flag its counts, per namespace the proxies by revision label.
    pub fn observed(
        &mut self,
        flags: &BTreeMap<(String, String), ProxyCount>,
        by_revision: &BTreeMap<(String, String), i64>,
    ) {
        let current: BTreeSet<(String, String)> = flags.keys().cloned().collect();
        for (namespace, flag) in self.exported_flags.difference(&current) {
            for state in ["total", "at_revision"] {
                let labels = [namespace.as_str(), flag.as_str(), state];
                let _ = self.flag_proxies.remove_label_values(&labels);
            }
        }
        for ((namespace, flag), count) in flags {
            let counts = [("total", count.total), ("at_revision", count.at_revision)];
            for (state, value) in counts {
                self.flag_proxies
                    .with_label_values(&[namespace.as_str(), flag.as_str(), state])
                    .set(i64::from(value));
            }
        }
        self.exported_flags = current;

        let current: BTreeSet<(String, String)> = by_revision.keys().cloned().collect();
        for (namespace, revision) in self.exported_revisions.difference(&current) {
            let _ = self
                .proxies
                .remove_label_values(&[namespace.as_str(), revision.as_str()]);
        }
        for ((namespace, revision), count) in by_revision {
            self.proxies
                .with_label_values(&[namespace.as_str(), revision.as_str()])
                .set(*count);
        }
        self.exported_revisions = current;
    }
}
