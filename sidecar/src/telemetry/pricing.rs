//! What a request cost, in USD, from its token usage and a price table.
//!
//! Defaults cover common OpenAI and Anthropic models (list prices, USD per
//! million tokens, as published at the time of writing); a variant's
//! `pricing` overrides them, which is also how self-hosted models get a cost.

use aiflags_api::Pricing;

use crate::usage::Usage;

/// `(model prefix, input, output, cached input)` in USD per million tokens.
/// Longest prefix wins, so dated snapshots (`gpt-4o-2024-08-06`) inherit their
/// family's price and `gpt-4o-mini` is not priced as `gpt-4o`.
const DEFAULT_PRICES: &[(&str, f64, f64, f64)] = &[
    ("gpt-5", 1.25, 10.0, 0.125),
    ("gpt-5-mini", 0.25, 2.0, 0.025),
    ("gpt-5-nano", 0.05, 0.4, 0.005),
    ("gpt-4.1", 2.0, 8.0, 0.5),
    ("gpt-4.1-mini", 0.4, 1.6, 0.1),
    ("gpt-4.1-nano", 0.1, 0.4, 0.025),
    ("gpt-4o", 2.5, 10.0, 1.25),
    ("gpt-4o-mini", 0.15, 0.6, 0.075),
    ("o3", 2.0, 8.0, 0.5),
    ("o4-mini", 1.1, 4.4, 0.275),
    ("text-embedding-3-small", 0.02, 0.0, 0.0),
    ("text-embedding-3-large", 0.13, 0.0, 0.0),
    ("claude-opus-4", 15.0, 75.0, 1.5),
    ("claude-sonnet-4", 3.0, 15.0, 0.3),
    ("claude-haiku-4", 1.0, 5.0, 0.1),
    ("claude-3-5-haiku", 0.8, 4.0, 0.08),
];

/// The price of a model: the variant's override, else the default table.
pub fn price_for(model: &str, overridden: Option<&Pricing>) -> Option<Pricing> {
    if let Some(p) = overridden {
        return Some(p.clone());
    }
    DEFAULT_PRICES
        .iter()
        .filter(|(prefix, ..)| model.starts_with(prefix))
        .max_by_key(|(prefix, ..)| prefix.len())
        .map(|(_, input, output, cached)| Pricing {
            input_per_million: *input,
            output_per_million: *output,
            cached_input_per_million: Some(*cached),
        })
}

/// USD for this usage. Cached input tokens are part of the input count and
/// billed at the cached rate; reasoning tokens are part of the output count.
pub fn cost_usd(usage: &Usage, price: &Pricing) -> f64 {
    let cached = usage.cached_input_tokens.min(usage.input_tokens);
    let uncached = usage.input_tokens - cached;
    let cached_rate = price
        .cached_input_per_million
        .unwrap_or(price.input_per_million);
    (uncached as f64 * price.input_per_million
        + cached as f64 * cached_rate
        + usage.output_tokens as f64 * price.output_per_million)
        / 1_000_000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usage(input: u64, cached: u64, output: u64) -> Usage {
        Usage {
            input_tokens: input,
            output_tokens: output,
            cached_input_tokens: cached,
            ..Usage::default()
        }
    }

    #[test]
    fn longest_prefix_prices_a_model() {
        let mini = price_for("gpt-4o-mini-2024-07-18", None).expect("priced");
        assert_eq!(mini.input_per_million, 0.15);
        let full = price_for("gpt-4o-2024-08-06", None).expect("priced");
        assert_eq!(full.input_per_million, 2.5);
        assert_eq!(price_for("my-local-llama", None), None);
    }

    #[test]
    fn a_variant_override_wins() {
        let custom = Pricing {
            input_per_million: 1.0,
            output_per_million: 2.0,
            cached_input_per_million: None,
        };
        assert_eq!(price_for("gpt-4o", Some(&custom)), Some(custom));
    }

    #[test]
    fn cached_input_is_billed_at_its_rate() {
        let price = price_for("gpt-4o-mini", None).expect("priced");
        // 1M input of which 400k cached, 100k output:
        // 600k × 0.15 + 400k × 0.075 + 100k × 0.6 = 0.09 + 0.03 + 0.06
        let cost = cost_usd(&usage(1_000_000, 400_000, 100_000), &price);
        assert!((cost - 0.18).abs() < 1e-12, "{cost}");
    }
}
