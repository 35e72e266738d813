//! Prometheus metrics: the [`Telemetry`] the sidecar runs with.
//!
//! Every label value comes from config (flag, variant and model names, the
//! provider origin) or from a small closed set (operation, status code,
//! outcome), never from the request: a client that sends a million model names
//! must not create a million series. Pass-through traffic is recorded with
//! empty `flag`, `variant` and `model` labels for that reason.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, RwLock};

use prometheus::{
    Counter, CounterVec, Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter,
    IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};

use crate::pricing::{cost_usd, price_for};
use crate::telemetry::{AttemptOutcome, RequestOutcome, Telemetry};

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
    circuit_open: IntGaugeVec,
    active: IntGauge,
    revision_info: IntGaugeVec,
    reloads: IntCounterVec,
    /// Per `(flag, variant, model)`: resolved children, so the hot path does
    /// one map lookup instead of one per family.
    series: LabelCache<3, Series>,
    /// The same for `requests_total`, the one family with six labels.
    request_counters: LabelCache<6, IntCounter>,
}

/// Resolved metric children by label values, looked up without allocating:
/// the hot path hashes the borrowed values and compares them in place.
struct LabelCache<const N: usize, T> {
    map: RwLock<HashMap<u64, Bucket<N, T>>>,
}

/// Entries whose label values hash alike (almost always one).
type Bucket<const N: usize, T> = Vec<([String; N], Arc<T>)>;

impl<const N: usize, T> Default for LabelCache<N, T> {
    fn default() -> Self {
        LabelCache {
            map: RwLock::new(HashMap::new()),
        }
    }
}

impl<const N: usize, T> LabelCache<N, T> {
    fn get_or_insert(&self, labels: &[&str; N], make: impl FnOnce() -> T) -> Arc<T> {
        let mut hasher = std::hash::DefaultHasher::new();
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
            circuit_open,
            active,
            revision_info,
            reloads,
            series: LabelCache::default(),
            request_counters: LabelCache::default(),
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

    fn request_finished(&self, o: &RequestOutcome) {
        self.active.dec();
        let code = o.status.to_string();
        let labels = [
            o.flag.as_str(),
            &o.variant,
            &o.model,
            &o.provider,
            o.operation,
            &code,
        ];
        self.request_counters
            .get_or_insert(&labels, || self.requests.with_label_values(&labels))
            .inc();
        let overhead = o.duration.saturating_sub(o.upstream_duration);
        self.overhead.observe(overhead.as_secs_f64());
        let series = self.series(&o.flag, &o.variant, &o.model);
        series.duration.observe(o.duration.as_secs_f64());
        if let Some(t) = o.time_to_first_token {
            series.ttft.observe(t.as_secs_f64());
        }
        if let Some(u) = &o.usage {
            series.input.inc_by(u.input_tokens);
            series.output.inc_by(u.output_tokens);
            series.cached_input.inc_by(u.cached_input_tokens);
            series.reasoning.inc_by(u.reasoning_tokens);
            if let Some(price) = price_for(&o.model, o.pricing.as_ref()) {
                series.cost.inc_by(cost_usd(u, &price));
            }
        }
        for (from, to, reason) in &o.fallbacks {
            self.fallbacks
                .with_label_values(&[&o.flag, from, to, reason])
                .inc();
        }
    }

    fn attempt_finished(&self, a: &AttemptOutcome<'_>) {
        self.attempts
            .with_label_values(&[a.provider, a.model, &a.outcome])
            .inc();
    }

    fn circuit_changed(&self, provider: &str, model: &str, open: bool) {
        self.circuit_open
            .with_label_values(&[provider, model])
            .set(i64::from(open));
    }

    fn config_reloaded(&self, result: &str, revision: Option<&str>) {
        self.reloads.with_label_values(&[result]).inc();
        if let Some(revision) = revision {
            self.revision_info.reset();
            self.revision_info.with_label_values(&[revision]).set(1);
        }
    }

    fn render(&self) -> String {
        let mut out = Vec::new();
        // Encoding our own well-formed families into a Vec cannot fail.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        String::from_utf8(out).unwrap_or_default()
    }
}
