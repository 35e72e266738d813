//! What the demo saw, summed up and printed. Pure: results in, text out.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use aiflags_api::{SidecarConfig, TOTAL_BP};

use aiflags_sidecar::Usage;
use aiflags_sidecar::{cost_usd, price_for};

/// One request as the demo's client saw it.
#[derive(Clone, Debug, Default)]
pub struct Observed {
    pub status: u16,
    pub flag: String,
    /// The split's assignment (`x-aiflags-variant`).
    pub variant: String,
    /// The model that served (`x-aiflags-model`).
    pub model: String,
    pub attempts: u32,
    /// Sent with a targeting header, so the split did not decide it.
    pub targeted: bool,
    pub latency: Duration,
    pub usage: Option<Usage>,
}

/// One variant's row.
#[derive(Clone, Debug, PartialEq)]
pub struct SplitRow {
    pub flag: String,
    pub variant: String,
    pub model: String,
    /// Configured percent.
    pub configured: f64,
    /// Percent of the flag's split-decided requests that got this variant.
    pub observed: f64,
    pub requests: u64,
    pub targeted: u64,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Report {
    pub total: u64,
    pub errors: u64,
    pub rows: Vec<SplitRow>,
    /// `(flag, from model, to model)` → count.
    pub fallbacks: BTreeMap<(String, String, String), u64>,
    /// Requests that needed more than one attempt (retries and fallbacks).
    pub retried: u64,
    pub p50: Duration,
    pub p95: Duration,
    pub p99: Duration,
    pub usage: Usage,
    pub cost_usd: f64,
}

impl Report {
    pub fn new(config: &SidecarConfig, results: &[Observed]) -> Report {
        let mut report = Report {
            total: results.len() as u64,
            ..Report::default()
        };
        for flag in &config.flags {
            let of_flag: Vec<&Observed> = results.iter().filter(|o| o.flag == flag.key).collect();
            let split_total = of_flag.iter().filter(|o| !o.targeted).count().max(1) as f64;
            let weights = flag.effective_weights();
            for (variant, weight) in flag.variants.iter().zip(weights) {
                let mine = of_flag.iter().filter(|o| o.variant == variant.name);
                let (targeted, split): (Vec<&&Observed>, Vec<&&Observed>) =
                    mine.partition(|o| o.targeted);
                report.rows.push(SplitRow {
                    flag: flag.key.clone(),
                    variant: variant.name.clone(),
                    model: variant.model.clone(),
                    configured: f64::from(weight) * 100.0 / f64::from(TOTAL_BP),
                    observed: split.len() as f64 * 100.0 / split_total,
                    requests: split.len() as u64,
                    targeted: targeted.len() as u64,
                });
                for o in split.iter().chain(targeted.iter()) {
                    if o.model != variant.model && o.status == 200 {
                        let hop = (flag.key.clone(), variant.model.clone(), o.model.clone());
                        *report.fallbacks.entry(hop).or_default() += 1;
                    }
                }
            }
        }
        let mut latencies: Vec<Duration> = results.iter().map(|o| o.latency).collect();
        latencies.sort_unstable();
        let at = |q: f64| -> Duration {
            let index = ((latencies.len() as f64 - 1.0) * q).round() as usize;
            latencies.get(index).copied().unwrap_or_default()
        };
        (report.p50, report.p95, report.p99) = (at(0.50), at(0.95), at(0.99));
        for o in results {
            if o.status != 200 {
                report.errors += 1;
            }
            if o.attempts > 1 {
                report.retried += 1;
            }
            if let Some(u) = &o.usage {
                report.usage.input_tokens += u.input_tokens;
                report.usage.output_tokens += u.output_tokens;
                report.usage.cached_input_tokens += u.cached_input_tokens;
                if let Some(price) = price_for(&o.model, None) {
                    report.cost_usd += cost_usd(u, &price);
                }
            }
        }
        report
    }

    /// The table the demo prints.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "\n{:<22} {:<10} {:<20} {:>10} {:>9} {:>9} {:>9}",
            "flag", "variant", "model", "configured", "observed", "requests", "targeted"
        );
        let mut last_flag = "";
        for r in &self.rows {
            let flag = if r.flag == last_flag {
                ""
            } else {
                r.flag.as_str()
            };
            last_flag = &r.flag;
            let _ = writeln!(
                out,
                "{:<22} {:<10} {:<20} {:>9.2}% {:>8.2}% {:>9} {:>9}",
                flag, r.variant, r.model, r.configured, r.observed, r.requests, r.targeted
            );
        }
        let taken: u64 = self.fallbacks.values().sum();
        let _ = writeln!(
            out,
            "\nfallbacks taken: {taken} ({} requests needed more than one attempt)",
            self.retried
        );
        for ((flag, from, to), n) in &self.fallbacks {
            let _ = writeln!(out, "  {flag}: {from} -> {to}  x{n}");
        }
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        let _ = writeln!(
            out,
            "latency: p50 {:.1} ms, p95 {:.1} ms, p99 {:.1} ms over {} requests ({} errors)",
            ms(self.p50),
            ms(self.p95),
            ms(self.p99),
            self.total,
            self.errors
        );
        let _ = writeln!(
            out,
            "tokens: {} input, {} output; estimated cost ${:.4}",
            self.usage.input_tokens, self.usage.output_tokens, self.cost_usd
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aiflags_api::{compile_manifests, parse_manifests};

    const FLAG: &str = "apiVersion: aiflags.dev/v1alpha1\nkind: AIFeatureFlag\nmetadata: {name: f}\nspec:\n  defaultVariant: a\n  variants: [{name: a, model: gpt-4o-mini}, {name: b, model: gpt-4.1-mini}]\n  rollout: {weights: {a: 75, b: 25}}\n";

    fn seen(variant: &str, model: &str, targeted: bool, ms: u64) -> Observed {
        Observed {
            status: 200,
            flag: "f".into(),
            variant: variant.into(),
            model: model.into(),
            attempts: 1,
            targeted,
            latency: Duration::from_millis(ms),
            usage: Some(Usage {
                input_tokens: 1_000_000,
                output_tokens: 0,
                ..Usage::default()
            }),
        }
    }

    #[test]
    fn split_fallbacks_latency_and_cost() {
        let (manifests, _) = parse_manifests("f", FLAG);
        let (config, _) = compile_manifests(&manifests, None);
        let results = vec![
            seen("a", "gpt-4o-mini", false, 10),
            seen("a", "gpt-4o-mini", false, 20),
            seen("a", "gpt-4o-mini", false, 30),
            seen("b", "gpt-4o-mini", false, 40), // b fell back to a's model
            seen("b", "gpt-4.1-mini", true, 50), // targeted: not part of the split
        ];
        let report = Report::new(&config, &results);
        let rows: Vec<(f64, f64, u64, u64)> = report
            .rows
            .iter()
            .map(|r| (r.configured, r.observed, r.requests, r.targeted))
            .collect();
        assert_eq!(rows, vec![(75.0, 75.0, 3, 0), (25.0, 25.0, 1, 1)]);
        let hop = (
            "f".to_string(),
            "gpt-4.1-mini".to_string(),
            "gpt-4o-mini".to_string(),
        );
        assert_eq!(report.fallbacks.get(&hop), Some(&1));
        assert_eq!(report.p50, Duration::from_millis(30));
        assert_eq!(report.p99, Duration::from_millis(50));
        // 4M input on gpt-4o-mini at $0.15 + 1M on gpt-4.1-mini at $0.40.
        assert!((report.cost_usd - 1.0).abs() < 1e-9, "{}", report.cost_usd);
        let text = report.render();
        assert!(text.contains("fallbacks taken: 1"), "{text}");
        assert!(text.contains("75.00%"), "{text}");
    }
}
