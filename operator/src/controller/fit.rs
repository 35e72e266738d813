//! Keeping a namespace's config under the ConfigMap size limit. Pure.
//!
//! The API server refuses a ConfigMap past 1 MiB, and would refuse the
//! whole namespace's config with it. Instead, when the compiled config does
//! not fit even compressed, the flags that make it too large are held back,
//! as an invalid update is: what is served keeps serving, and the flags held
//! back say why in their status.
//!
//! Which flags: every flag keeps the version served now, and the changes
//! are admitted in a fixed order while the config still fits: first updates
//! that do not make their flag larger, then the other updates and the new
//! flags, oldest flag first (by `creationTimestamp`, then name); the first
//! change that does not fit waits, and every change after it. So a new or
//! growing flag never pushes out what already serves, and the choice does
//! not depend on the order of reconciles. Only if even what is served now no
//! longer fits (say, a served document written under other limits) are
//! flags admitted oldest first from nothing, and the newest left out.

use std::collections::BTreeMap;
use std::sync::Arc;

use aiflags_api::{
    CompiledFlag, EncodedConfig, MAX_CONFIG_MAP_BYTES, MAX_DECODED_BYTES, SidecarConfig,
    encode_config,
};

/// What a stored config may take.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Bytes of the ConfigMap value (compressed when gzipped).
    pub stored: usize,
    /// Bytes of the JSON a reader parses.
    pub json: usize,
}

impl Default for Limits {
    /// The API server's and the sidecar's limits.
    fn default() -> Self {
        Limits {
            stored: MAX_CONFIG_MAP_BYTES,
            json: MAX_DECODED_BYTES,
        }
    }
}

impl Limits {
    pub fn admit(&self, encoded: &EncodedConfig) -> bool {
        encoded.stored_len() <= self.stored && encoded.json_len() <= self.json
    }
}

/// The config to write, and the flags held back to make it fit.
#[derive(Clone, Debug, PartialEq)]
pub struct Fitted {
    pub config: SidecarConfig,
    pub encoded: EncodedConfig,
    /// Per flag key: why its compiled version is not in `config`.
    pub refused: BTreeMap<String, Refusal>,
}

/// A flag whose compiled version was held back for size.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// Generation still in the config (the one served before), if any.
    pub serving_generation: Option<i64>,
    /// The config with every flag admitted: its stored bytes and format.
    pub full_stored_len: usize,
    pub full_json_len: usize,
    pub full_format: &'static str,
    pub limits: Limits,
}

/// Fits `compiled` (the namespace's whole compiled config) under `limits`.
/// `previous` is the config served now; `age_order` names the namespace's
/// flags oldest first (flags it does not name come last, by key).
pub fn fit_config(
    compiled: &SidecarConfig,
    previous: Option<&SidecarConfig>,
    age_order: &[&str],
    limits: Limits,
) -> Fitted {
    let encoded = encode_config(compiled);
    if limits.admit(&encoded) {
        return Fitted {
            config: compiled.clone(),
            encoded,
            refused: BTreeMap::new(),
        };
    }
    let new: BTreeMap<&str, &Arc<CompiledFlag>> =
        compiled.flags.iter().map(|f| (f.key.as_str(), f)).collect();
    let served: BTreeMap<&str, &Arc<CompiledFlag>> = previous
        .map(|p| p.flags.iter().map(|f| (f.key.as_str(), f)).collect())
        .unwrap_or_default();
    let mut ordered: Vec<&str> = age_order
        .iter()
        .copied()
        .filter(|k| new.contains_key(k))
        .collect();
    for key in new.keys() {
        if !ordered.contains(key) {
            ordered.push(key);
        }
    }
    let namespace = compiled.namespace.clone();
    let build = |flags: Vec<Arc<CompiledFlag>>| {
        let config = SidecarConfig::new(namespace.clone(), flags);
        let encoded = encode_config(&config);
        limits.admit(&encoded).then_some((config, encoded))
    };

    // Updates that do not make a flag larger go first: they make room, or
    // nearly so. Then the others, oldest flag first.
    let mut changes: Vec<(bool, usize, &str)> = ordered
        .iter()
        .enumerate()
        .filter(|(_, k)| served.get(*k) != new.get(*k))
        .map(|(age, k)| {
            let grows = match (served.get(k), new.get(k)) {
                (Some(old), Some(new)) => json_len(new) > json_len(old),
                _ => true,
            };
            (grows, age, *k)
        })
        .collect();
    changes.sort_unstable();
    let changes: Vec<&str> = changes.into_iter().map(|(_, _, k)| k).collect();
    // Flag versions with the first `n` changes admitted, the others served as before.
    let with_changes = |n: usize| {
        let admitted = changes.get(..n).unwrap_or_default();
        let flags = ordered
            .iter()
            .filter_map(|k| {
                if admitted.contains(k) {
                    new.get(k)
                } else {
                    served.get(k)
                }
            })
            .map(|f| (*f).clone())
            .collect();
        build(flags)
    };
    // Or, when even that does not fit, only the first `n` flags.
    let oldest = |n: usize| {
        let flags = ordered.iter().take(n).filter_map(|k| new.get(k));
        build(flags.map(|f| (*f).clone()).collect())
    };

    let (held_back, (config, fitting), keeps_served) = match with_changes(0) {
        Some(base) => {
            let (n, fitting) = largest_fitting(changes.len(), base, with_changes);
            (changes.get(n..).unwrap_or_default(), fitting, true)
        }
        None => {
            // The empty config always fits.
            let empty = build(Vec::new()).unwrap_or_else(|| {
                let config = SidecarConfig::empty(namespace.clone());
                let encoded = encode_config(&config);
                (config, encoded)
            });
            let (n, fitting) = largest_fitting(ordered.len(), empty, oldest);
            (ordered.get(n..).unwrap_or_default(), fitting, false)
        }
    };
    let refused = held_back
        .iter()
        .map(|k| {
            let serving = served.get(k).filter(|_| keeps_served);
            let refusal = Refusal {
                serving_generation: serving.map(|f| f.generation),
                full_stored_len: encoded.stored_len(),
                full_json_len: encoded.json_len(),
                full_format: encoded.format(),
                limits,
            };
            (k.to_string(), refusal)
        })
        .collect();
    Fitted {
        config,
        encoded: fitting,
        refused,
    }
}

fn json_len(flag: &CompiledFlag) -> usize {
    serde_json::to_vec(flag).map_or(0, |json| json.len())
}

/// The largest `n` in `0..len` for which `build(n)` fits, by bisection:
/// `build(0)` is known to fit (`fits_at_zero`) and `build(len)` is the whole
/// config, known not to. Sizes grow with `n` in practice; where compression
/// makes them wobble, the answer still fits, it may just not be the largest.
fn largest_fitting<T>(
    len: usize,
    fits_at_zero: T,
    build: impl Fn(usize) -> Option<T>,
) -> (usize, T) {
    let (mut lo, mut hi, mut best) = (0, len, fits_at_zero);
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        match build(mid) {
            Some(fitting) => (lo, best) = (mid, fitting),
            None => hi = mid,
        }
    }
    (lo, best)
}

#[cfg(test)]
mod tests;
