//! Prometheus metrics: the [`Telemetry`] the sidecar runs with.
//!
//! Every label value comes from config (flag, variant and model names, the
//! provider origin) or from a small closed set (operation, status code,
//! outcome), never from the request: a client that sends a million model names
//! must not create a million series. Pass-through traffic is recorded with
//! empty `flag`, `variant` and `model` labels for that reason.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hash, Hasher};
use std::sync::{Arc, RwLock};

use prometheus::{
    Counter, CounterVec, Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter,
    IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};

use super::pricing::{cost_usd, price_for};
use super::{FlagInfo, Record, Telemetry};
use crate::keyhash::KeyHasher;

/// LLM calls take from tens of milliseconds to minutes.
const LATENCY_BUCKETS: &[f64] = &[
    0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0,
];
/// Time to first token: shorter than a whole response.
const TTFT_BUCKETS: &[f64] = &[0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0];
/// What the proxy itself adds is measured in microseconds.
const OVERHEAD_BUCKETS: &[f64] = &[
    0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.1,
];

/// The sidecar's metric families, registered in their own registry.
pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    duration: HistogramVec,
    ttft: HistogramVec,
    overhead: Histogram,
    tokens: IntCounterVec,
    cost: CounterVec,
    fallbacks: IntCounterVec,
    attempts: IntCounterVec,
    answers: IntCounterVec,
    circuit_open: IntGaugeVec,
    active: IntGauge,
    revision_info: IntGaugeVec,
    reloads: IntCounterVec,
    /// `aiflags_flag_info` and `aiflags_variant_weight_ratio`.
    configured: Arc<Configured>,
    unparsed: IntCounterVec,
    connections_shed: IntCounterVec,
    budget_exhausted: IntCounter,
    watch_up: IntGauge,
    /// Lines the access log had no room for; the log's writer holds a clone.
    pub access_log_dropped: IntCounter,
    /// Per `(flag, variant, model)`: resolved children, built once for all
    /// the `request_counters` entries that share them.
    series: LabelCache<3, Series>,
    /// Per `requests_total` label set (six labels, the first three the
    /// series'): its counter and its series, so a request's report does one
    /// map lookup for both.
    request_counters: LabelCache<6, Requests>,
    /// And for `answers_total`: `(flag, variant, model, verdict)`.
    answer_counters: LabelCache<4, IntCounter>,
    /// And for `attempts_total`: `(provider, model, outcome)`.
    attempt_counters: LabelCache<3, IntCounter>,
}

/// Resolved metric children by label values, looked up without allocating:
/// the hot path hashes the borrowed values and compares them in place.
struct LabelCache<const N: usize, T> {
    map: RwLock<HashMap<u64, Bucket<N, T>, BuildHasherDefault<Prehashed>>>,
}

/// The map's keys are already hashes.
#[derive(Default)]
struct Prehashed(u64);

impl Hasher for Prehashed {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*byte);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// Entries whose label values hash alike (almost always one).
type Bucket<const N: usize, T> = Vec<([String; N], Arc<T>)>;

impl<const N: usize, T> Default for LabelCache<N, T> {
    fn default() -> Self {
        LabelCache {
            map: RwLock::new(HashMap::default()),
        }
    }
}

impl<const N: usize, T> LabelCache<N, T> {
    fn get_or_insert(&self, labels: &[&str; N], make: impl FnOnce() -> T) -> Arc<T> {
        let mut hasher = KeyHasher::default();
        labels.hash(&mut hasher);
        let hash = hasher.finish();
        let same = |key: &[String; N]| key.iter().zip(labels).all(|(a, b)| a == b);
        if let Ok(map) = self.map.read()
            && let Some((_, found)) = map.get(&hash).and_then(|v| v.iter().find(|(k, _)| same(k)))
        {
            return found.clone();
        }
        let made = Arc::new(make());
        if let Ok(mut map) = self.map.write() {
            let bucket = map.entry(hash).or_default();
            match bucket.iter().find(|(k, _)| same(k)) {
                Some((_, found)) => return found.clone(),
                None => bucket.push((labels.map(str::to_string), made.clone())),
            }
        }
        made
    }
}

/// A `requests_total` child and the series of its flag, variant and model.
struct Requests {
    count: IntCounter,
    series: Arc<Series>,
}

struct Series {
    duration: Histogram,
    ttft: Histogram,
    input: IntCounter,
    output: IntCounter,
    cached_input: IntCounter,
    reasoning: IntCounter,
    cost: Counter,
}

impl Metrics {
    /// Fails only on a malformed family, which the tests would catch.
    pub fn new() -> prometheus::Result<Self> {
        let registry = Registry::new();
        let counter = |name: &str, help: &str, labels: &[&str]| {
            let c = IntCounterVec::new(Opts::new(name, help), labels)?;
            registry.register(Box::new(c.clone()))?;
            Ok::<_, prometheus::Error>(c)
        };
        let histogram = |name: &str, help: &str, labels: &[&str], buckets: &[f64]| {
            let opts = HistogramOpts::new(name, help).buckets(buckets.to_vec());
            let h = HistogramVec::new(opts, labels)?;
            registry.register(Box::new(h.clone()))?;
            Ok::<_, prometheus::Error>(h)
        };
        let gauge = |name: &str, help: &str, labels: &[&str]| {
            let g = IntGaugeVec::new(Opts::new(name, help), labels)?;
            registry.register(Box::new(g.clone()))?;
            Ok::<_, prometheus::Error>(g)
        };
        let fvl = ["flag", "variant", "model"];
        let requests = counter(
            "aiflags_requests_total",
            "Requests answered, by the flag and variant that served them",
            &["flag", "variant", "model", "provider", "operation", "code"],
        )?;
        let duration = histogram(
            "aiflags_request_duration_seconds",
            "Time from request to the end of the response",
            &fvl,
            LATENCY_BUCKETS,
        )?;
        let ttft = histogram(
            "aiflags_time_to_first_token_seconds",
            "Streams: time from request to the first byte sent to the client",
            &fvl,
            TTFT_BUCKETS,
        )?;
        let overhead = Histogram::with_opts(
            HistogramOpts::new(
                "aiflags_proxy_overhead_seconds",
                "Request duration minus time spent waiting on upstreams",
            )
            .buckets(OVERHEAD_BUCKETS.to_vec()),
        )?;
        registry.register(Box::new(overhead.clone()))?;
        let tokens = counter(
            "aiflags_tokens_total",
            "Tokens reported by upstreams, by type (input, output, cached_input, reasoning)",
            &["flag", "variant", "model", "type"],
        )?;
        let cost = CounterVec::new(
            Opts::new(
                "aiflags_cost_usd_total",
                "Estimated cost in USD from the price table",
            ),
            &fvl,
        )?;
        registry.register(Box::new(cost.clone()))?;
        let fallbacks = counter(
            "aiflags_fallbacks_total",
            "Moves from one target to another, one per hop",
            &["flag", "from_model", "to_model", "reason"],
        )?;
        let attempts = counter(
            "aiflags_upstream_attempts_total",
            "Upstream attempts by outcome",
            &["provider", "model", "outcome"],
        )?;
        let answers = counter(
            "aiflags_answers_total",
            "Answers upstreams gave (2xx), judged: content, empty or content_filter; by the flag, \
             the variant and model that gave them",
            &["flag", "variant", "model", "verdict"],
        )?;
        let circuit_open = gauge(
            "aiflags_circuit_open",
            "1 while the circuit breaker of a target is open",
            &["provider", "model"],
        )?;
        let active = IntGauge::new("aiflags_active_requests", "Requests in flight")?;
        registry.register(Box::new(active.clone()))?;
        let revision_info = gauge(
            "aiflags_config_revision_info",
            "The config revision this sidecar serves (value 1)",
            &["revision"],
        )?;
        let reloads = counter(
            "aiflags_config_reloads_total",
            "Config loads by result",
            &["result"],
        )?;
        let configured = Arc::new(Configured::new()?);
        registry.register(Box::new(ConfiguredCollector(configured.clone())))?;
        let unparsed = counter(
            "aiflags_unparsed_requests_total",
            "Requests on LLM paths whose body the sidecar could not read, passed through unflagged",
            &["reason"],
        )?;
        let connections_shed = counter(
            "aiflags_connections_shed_total",
            "Connections shed at a listener's cap: an idle one evicted, or the new one refused",
            &["listener", "action"],
        )?;
        let watch_up = IntGauge::new(
            "aiflags_config_watch_up",
            "1 while the Kubernetes watch of the config serves, 0 while it is lost (absent without a watch)",
        )?;
        let budget_exhausted = IntCounter::new(
            "aiflags_memory_budget_exhausted_total",
            "Requests refused with 503 because the buffered-bytes budget was spent",
        )?;
        registry.register(Box::new(budget_exhausted.clone()))?;
        let access_log_dropped = IntCounter::new(
            "aiflags_access_log_dropped_total",
            "Access-log lines dropped because the log writer fell behind",
        )?;
        registry.register(Box::new(access_log_dropped.clone()))?;
        Ok(Metrics {
            registry,
            requests,
            duration,
            ttft,
            overhead,
            tokens,
            cost,
            fallbacks,
            attempts,
            answers,
            circuit_open,
            active,
            revision_info,
            reloads,
            configured,
            unparsed,
            connections_shed,
            budget_exhausted,
            watch_up,
            access_log_dropped,
            series: LabelCache::default(),
            request_counters: LabelCache::default(),
            answer_counters: LabelCache::default(),
            attempt_counters: LabelCache::default(),
        })
    }

    fn series(&self, flag: &str, variant: &str, model: &str) -> Arc<Series> {
        let labels = [flag, variant, model];
        self.series.get_or_insert(&labels, || {
            let token = |t: &str| self.tokens.with_label_values(&[flag, variant, model, t]);
            Series {
                duration: self.duration.with_label_values(&labels),
                ttft: self.ttft.with_label_values(&labels),
                input: token("input"),
                output: token("output"),
                cached_input: token("cached_input"),
                reasoning: token("reasoning"),
                cost: self.cost.with_label_values(&labels),
            }
        })
    }
}

impl Telemetry for Metrics {
    fn request_started(&self) {
        self.active.inc();
    }

    fn request_finished(&self, r: &Record) {
        self.active.dec();
        let code = status_label(r.status);
        let labels = [
            &*r.flag,
            &*r.variant,
            &*r.model,
            &*r.provider,
            r.operation,
            &*code,
        ];
        let requests = self.request_counters.get_or_insert(&labels, || Requests {
            count: self.requests.with_label_values(&labels),
            series: self.series(&r.flag, &r.variant, &r.model),
        });
        requests.count.inc();
        let overhead = r.duration.saturating_sub(r.upstream_time);
        self.overhead.observe(overhead.as_secs_f64());
        let series = &requests.series;
        series.duration.observe(r.duration.as_secs_f64());
        if let Some(t) = r.time_to_first_token {
            series.ttft.observe(t.as_secs_f64());
        }
        if let Some(u) = &r.usage {
            series.input.inc_by(u.input_tokens);
            series.output.inc_by(u.output_tokens);
            series.cached_input.inc_by(u.cached_input_tokens);
            series.reasoning.inc_by(u.reasoning_tokens);
            if let Some(price) = price_for(&r.model, r.pricing.as_ref()) {
                series.cost.inc_by(cost_usd(u, &price));
            }
        }
        for answer in &r.answers {
            let labels = [
                &*r.flag,
                &*answer.variant,
                &*answer.model,
                answer.verdict.label(),
            ];
            self.answer_counters
                .get_or_insert(&labels, || self.answers.with_label_values(&labels))
                .inc();
        }
        for (from, to, reason) in &r.fallbacks {
            self.fallbacks
                .with_label_values(&[&*r.flag, from, to, reason])
                .inc();
        }
    }

    fn attempt_finished(&self, provider: &str, model: &str, outcome: &str) {
        let labels = [provider, model, outcome];
        self.attempt_counters
            .get_or_insert(&labels, || self.attempts.with_label_values(&labels))
            .inc();
    }

    fn circuit_changed(&self, provider: &str, model: &str, open: bool) {
        self.circuit_open
            .with_label_values(&[provider, model])
            .set(i64::from(open));
    }

    fn config_loaded(&self, revision: &str, flags: Vec<FlagInfo>) {
        self.reloads.with_label_values(&["ok"]).inc();
        self.revision_info.reset();
        self.revision_info.with_label_values(&[revision]).set(1);
        *self
            .configured
            .flags
            .write()
            .unwrap_or_else(|e| e.into_inner()) = flags;
    }

    fn config_watch(&self, up: bool) {
        // Registered on first use: a sidecar without a watch has no series.
        let _ = self.registry.register(Box::new(self.watch_up.clone()));
        self.watch_up.set(i64::from(up));
    }

    fn config_failed(&self, serving: Option<&str>) {
        self.reloads.with_label_values(&["error"]).inc();
        if serving.is_none() {
            self.revision_info.reset();
        }
    }

    fn request_unparsed(&self, reason: &'static str) {
        self.unparsed.with_label_values(&[reason]).inc();
    }

    fn connection_shed(&self, listener: &'static str, action: &'static str) {
        self.connections_shed
            .with_label_values(&[listener, action])
            .inc();
    }

    fn budget_exhausted(&self) {
        self.budget_exhausted.inc();
    }

    fn render(&self) -> String {
        let mut out = Vec::new();
        // Encoding our own well-formed families into a Vec cannot fail.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        String::from_utf8(out).unwrap_or_default()
    }
}

/// Status codes as label values, without allocating for the common ones.
fn status_label(status: u16) -> std::borrow::Cow<'static, str> {
    match status {
        200 => "200".into(),
        400 => "400".into(),
        429 => "429".into(),
        499 => "499".into(),
        500 => "500".into(),
        502 => "502".into(),
        503 => "503".into(),
        504 => "504".into(),
        other => other.to_string().into(),
    }
}

/// The configured state of each flag, kept as the flags' own facts and
/// turned into series only when scraped: a series object per flag and
/// variant, held for the life of a config, costs about half a kilobyte
/// each (1.5 MB at 1,000 flags).
struct Configured {
    info: prometheus::core::Desc,
    weight: prometheus::core::Desc,
    flags: RwLock<Vec<FlagInfo>>,
}

impl Configured {
    fn new() -> prometheus::Result<Self> {
        let desc = |name: &str, help: &str, labels: &[&str]| {
            prometheus::core::Desc::new(
                name.into(),
                help.into(),
                labels.iter().map(|label| (*label).into()).collect(),
                HashMap::new(),
            )
        };
        Ok(Configured {
            info: desc(
                "aiflags_flag_info",
                "Flags this sidecar serves (value 1), with their state and default variant",
                &["flag", "state", "default_variant"],
            )?,
            weight: desc(
                "aiflags_variant_weight_ratio",
                "Configured share (0-1) of each variant in the config this sidecar serves",
                &["flag", "variant"],
            )?,
            flags: RwLock::new(Vec::new()),
        })
    }
}

/// Registers [`Configured`] (the registry takes its collectors by value).
struct ConfiguredCollector(Arc<Configured>);

impl prometheus::core::Collector for ConfiguredCollector {
    fn desc(&self) -> Vec<&prometheus::core::Desc> {
        vec![&self.0.info, &self.0.weight]
    }

    fn collect(&self) -> Vec<prometheus::proto::MetricFamily> {
        use prometheus::proto::{Gauge, LabelPair, Metric, MetricFamily, MetricType};
        fn series(labels: &[(&str, &str)], value: f64) -> Metric {
            let mut gauge = Gauge::default();
            gauge.set_value(value);
            let mut metric = Metric::from_gauge(gauge);
            metric.set_label(
                labels
                    .iter()
                    .map(|(name, value)| {
                        let mut pair = LabelPair::default();
                        pair.set_name((*name).into());
                        pair.set_value((*value).into());
                        pair
                    })
                    .collect(),
            );
            metric
        }
        fn family(desc: &prometheus::core::Desc, metrics: Vec<Metric>) -> MetricFamily {
            let mut family = MetricFamily::default();
            family.set_name(desc.fq_name.clone());
            family.set_help(desc.help.clone());
            family.set_field_type(MetricType::GAUGE);
            family.set_metric(metrics);
            family
        }
        let flags = self.0.flags.read().unwrap_or_else(|e| e.into_inner());
        let mut info = Vec::with_capacity(flags.len());
        let mut weight = Vec::new();
        for flag in flags.iter() {
            let state = if flag.enabled { "enabled" } else { "disabled" };
            // Label pairs in name order, as the registry's own vectors keep them.
            info.push(series(
                &[
                    ("default_variant", &flag.default_variant),
                    ("flag", &flag.key),
                    ("state", state),
                ],
                1.0,
            ));
            for (variant, bp) in &flag.weights {
                weight.push(series(
                    &[("flag", &flag.key), ("variant", variant)],
                    f64::from(*bp) / f64::from(aiflags_api::TOTAL_BP),
                ));
            }
        }
        vec![family(&self.0.info, info), family(&self.0.weight, weight)]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flag(key: &str, enabled: bool, weights: &[(&str, u32)]) -> FlagInfo {
        FlagInfo {
            key: key.into(),
            enabled,
            default_variant: weights[0].0.into(),
            weights: weights.iter().map(|(v, bp)| ((*v).into(), *bp)).collect(),
        }
    }

    #[test]
    fn configured_flags_are_series_of_the_config_in_force_only() {
        let metrics = Metrics::new().unwrap();
        assert!(!metrics.render().contains("aiflags_flag_info"));
        metrics.config_loaded(
            "r1",
            vec![
                flag("ns/a", true, &[("stable", 9000), ("candidate", 1000)]),
                flag("ns/b", false, &[("only", 10000)]),
            ],
        );
        let text = metrics.render();
        for line in [
            "# TYPE aiflags_flag_info gauge",
            r#"aiflags_flag_info{default_variant="stable",flag="ns/a",state="enabled"} 1"#,
            r#"aiflags_flag_info{default_variant="only",flag="ns/b",state="disabled"} 1"#,
            "# TYPE aiflags_variant_weight_ratio gauge",
            r#"aiflags_variant_weight_ratio{flag="ns/a",variant="stable"} 0.9"#,
            r#"aiflags_variant_weight_ratio{flag="ns/a",variant="candidate"} 0.1"#,
            r#"aiflags_variant_weight_ratio{flag="ns/b",variant="only"} 1"#,
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "{line} missing from\n{text}"
            );
        }
        metrics.config_loaded("r2", vec![flag("ns/b", true, &[("only", 10000)])]);
        let text = metrics.render();
        assert!(!text.contains(r#"flag="ns/a""#), "{text}");
        assert!(text.contains(
            r#"aiflags_flag_info{default_variant="only",flag="ns/b",state="enabled"} 1"#
        ));
        metrics.config_loaded("r3", Vec::new());
        assert!(!metrics.render().contains("aiflags_variant_weight_ratio"));
    }
}
