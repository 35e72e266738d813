//! `AIFeatureFlag` specs → [`SidecarConfig`], with semantic validation whose
//! every error names the field it is about.
//!
//! The rule that makes bad input safe lives here: a flag whose new spec does
//! not compile keeps its last valid compiled version (taken from the previous
//! config) in the new document.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use crate::config::{
    CompiledFallback, CompiledFlag, CompiledTargeting, CompiledVariant, FailureClass, MAX_RETRIES,
    MAX_TIMEOUT_MS, Selector, SelectorOperator, SelectorRequirement, SidecarConfig, StickySource,
    TOTAL_BP, http_token,
};
use crate::crd::{AIFeatureFlag, AIFeatureFlagSpec, FlagState, Rollout, Variant};
use crate::duration::parse_duration_ms;

/// A validation error at a field path such as `spec.variants[1].name`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct FieldError {
    pub path: String,
    pub message: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

impl std::error::Error for FieldError {}

/// What the compiler needs of one flag.
#[derive(Clone, Debug)]
pub struct FlagInput<'a> {
    pub name: &'a str,
    pub namespace: Option<&'a str>,
    pub generation: i64,
    pub spec: &'a AIFeatureFlagSpec,
    /// Canary percent the rollout has reached; `None` starts at the first step.
    pub canary_weight: Option<f64>,
}

impl<'a> FlagInput<'a> {
    /// Reads name, namespace, generation and the canary position from a resource.
    pub fn from_resource(flag: &'a AIFeatureFlag) -> Self {
        let canary_weight = flag.spec.rollout.as_ref().and_then(|r| {
            let canary = r.canary.as_ref()?;
            let weights = flag.status.as_ref()?.current_weights.as_ref()?;
            weights.get(canary).copied()
        });
        FlagInput {
            name: flag.metadata.name.as_deref().unwrap_or_default(),
            namespace: flag.metadata.namespace.as_deref(),
            generation: flag.metadata.generation.unwrap_or_default(),
            spec: &flag.spec,
            canary_weight,
        }
    }
}

/// Result of compiling a namespace.
#[derive(Clone, Debug, PartialEq)]
pub struct Compilation {
    /// Valid flags plus, for invalid ones, their last valid version.
    pub config: SidecarConfig,
    /// Per flag name: its errors (empty when valid) and the generation now served.
    pub flags: BTreeMap<String, FlagOutcome>,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct FlagOutcome {
    pub errors: Vec<FieldError>,
    /// Generation whose compiled form is in the config; `None` if the flag has
    /// never been valid.
    pub serving_generation: Option<i64>,
}

impl FlagOutcome {
    pub fn is_valid(&self) -> bool {
        self.errors.is_empty()
    }
}

/// Compiles every flag of a namespace. `previous` is the config now served:
/// invalid flags keep their version from it.
pub fn compile(
    namespace: Option<&str>,
    inputs: &[FlagInput<'_>],
    previous: Option<&SidecarConfig>,
) -> Compilation {
    let mut compiled = Vec::with_capacity(inputs.len());
    let mut flags = BTreeMap::new();
    for input in inputs {
        let outcome = match compile_flag(input) {
            Ok(flag) => {
                let generation = flag.generation;
                compiled.push(flag);
                FlagOutcome {
                    errors: Vec::new(),
                    serving_generation: Some(generation),
                }
            }
            Err(errors) => {
                let last_valid = previous.and_then(|p| {
                    p.flags
                        .iter()
                        .find(|f| f.key == input.name && f.namespace.as_deref() == input.namespace)
                });
                if let Some(flag) = last_valid {
                    compiled.push(flag.clone());
                }
                FlagOutcome {
                    errors,
                    serving_generation: last_valid.map(|f| f.generation),
                }
            }
        };
        flags.insert(input.name.to_string(), outcome);
    }
    Compilation {
        config: SidecarConfig::new(namespace.map(str::to_string), compiled),
        flags,
    }
}

/// Compiles one flag, or returns every error found (not just the first).
pub fn compile_flag(input: &FlagInput<'_>) -> Result<CompiledFlag, Vec<FieldError>> {
    let mut errs = Errors::default();
    let spec = input.spec;

    let variants = check_variants(&spec.variants, &mut errs);
    let names: Vec<&str> = spec.variants.iter().map(|v| v.name.as_str()).collect();
    let known = |name: &str| names.contains(&name);
    if !known(&spec.default_variant) {
        errs.push(
            "spec.defaultVariant",
            format!(
                "{:?} is not one of the variants ({})",
                spec.default_variant,
                names.join(", ")
            ),
        );
    }

    let pod_selector = spec
        .pod_selector
        .as_ref()
        .map(|s| compile_selector(s, &mut errs));
    for (i, model) in spec.match_.models.iter().enumerate() {
        if model.trim().is_empty() {
            errs.push(format!("spec.match.models[{i}]"), "must not be empty");
        }
    }

    let (sticky_by, weights) = match &spec.rollout {
        Some(rollout) => compile_rollout(rollout, spec, input.canary_weight, &mut errs),
        None => (
            Vec::new(),
            default_only(&spec.variants, &spec.default_variant),
        ),
    };

    let mut targeting = Vec::with_capacity(spec.targeting.len());
    for (i, rule) in spec.targeting.iter().enumerate() {
        let path = format!("spec.targeting[{i}]");
        if !known(&rule.variant) {
            errs.push(
                format!("{path}.variant"),
                unknown_variant(&rule.variant, &names),
            );
        }
        if rule.when.header.is_empty() && rule.when.body.is_empty() {
            errs.push(
                format!("{path}.when"),
                "must name at least one header or body field",
            );
        }
        for name in rule.when.header.keys() {
            if name.is_empty() || !http_token(name) {
                errs.push(
                    format!("{path}.when.header"),
                    format!("{name:?} is not a valid header name"),
                );
            }
        }
        for field in rule.when.body.keys() {
            if StickySource::parse(&format!("body:{field}")).is_none() {
                errs.push(
                    format!("{path}.when.body"),
                    format!("{field:?} is not a field path such as user or metadata.tier"),
                );
            }
        }
        targeting.push(CompiledTargeting {
            headers: rule
                .when
                .header
                .iter()
                .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
                .collect(),
            body: rule.when.body.clone(),
            variant: rule.variant.clone(),
        });
    }

    let fallback = compile_fallback(spec, &names, &mut errs);

    errs.into_result(CompiledFlag {
        key: input.name.to_string(),
        namespace: input.namespace.map(str::to_string),
        generation: input.generation,
        enabled: spec.state == FlagState::Enabled,
        pod_selector,
        models: spec.match_.models.clone(),
        operations: {
            let set: BTreeSet<_> = spec.match_.operations.iter().copied().collect();
            set.into_iter().collect()
        },
        default_variant: spec.default_variant.clone(),
        variants,
        sticky_by,
        weights,
        targeting,
        fallback,
    })
}

#[derive(Default)]
struct Errors(Vec<FieldError>);

impl Errors {
    fn push(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(FieldError {
            path: path.into(),
            message: message.into(),
        });
    }

    fn into_result<T>(self, value: T) -> Result<T, Vec<FieldError>> {
        if self.0.is_empty() {
            Ok(value)
        } else {
            Err(self.0)
        }
    }
}

fn unknown_variant(name: &str, names: &[&str]) -> String {
    format!("unknown variant {name:?} (variants: {})", names.join(", "))
}

fn is_dns_label(s: &str) -> bool {
    let bytes = s.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 63
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        && bytes.first() != Some(&b'-')
        && bytes.last() != Some(&b'-')
}

fn check_variants(variants: &[Variant], errs: &mut Errors) -> Vec<CompiledVariant> {
    if variants.is_empty() {
        errs.push("spec.variants", "at least one variant is required");
    }
    let mut seen = BTreeSet::new();
    for (i, v) in variants.iter().enumerate() {
        let path = format!("spec.variants[{i}]");
        if !is_dns_label(&v.name) {
            errs.push(
                format!("{path}.name"),
                format!(
                    "{:?} must be a lowercase DNS label (a-z, 0-9, '-', at most 63)",
                    v.name
                ),
            );
        } else if !seen.insert(v.name.as_str()) {
            errs.push(
                format!("{path}.name"),
                format!("duplicate name {:?}", v.name),
            );
        }
        if v.model.trim().is_empty() {
            errs.push(format!("{path}.model"), "must not be empty");
        }
        if let Some(params) = &v.params {
            match params.as_object() {
                None => errs.push(
                    format!("{path}.params"),
                    "must be an object (a JSON merge patch onto the request body)",
                ),
                Some(obj) => {
                    for reserved in ["model", "stream"] {
                        if obj.contains_key(reserved) {
                            errs.push(
                                format!("{path}.params.{reserved}"),
                                format!("may not be set by params ({reserved} is chosen by the variant and the client)"),
                            );
                        }
                    }
                    // Other stream options may be patched, but whether the
                    // usage chunk is asked for (and hidden) is the proxy's
                    // call, made from what the client sent.
                    match obj.get("stream_options") {
                        Some(options) if !options.is_object() => errs.push(
                            format!("{path}.params.stream_options"),
                            "must be an object (null would delete the client's stream options)",
                        ),
                        Some(options) if options.get("include_usage").is_some() => errs.push(
                            format!("{path}.params.stream_options.include_usage"),
                            "may not be set by params (the proxy asks for usage itself and hides it from clients that did not)",
                        ),
                        _ => {}
                    }
                }
            }
        }
        if let Some(provider) = &v.provider {
            if let Err(msg) = check_base_url(&provider.base_url) {
                errs.push(format!("{path}.provider.baseUrl"), msg);
            }
            if let Some(key) = &provider.credential_key
                && !crate::config::is_secret_key(key)
            {
                errs.push(
                    format!("{path}.provider.credentialKey"),
                    format!("{key:?} is not a valid Secret key (letters, digits, '-', '.', '_')"),
                );
            }
        }
        if let Some(p) = &v.pricing {
            let prices = [
                ("inputPerMillion", Some(p.input_per_million)),
                ("outputPerMillion", Some(p.output_per_million)),
                ("cachedInputPerMillion", p.cached_input_per_million),
            ];
            for (field, price) in prices {
                if price.is_some_and(|x| !x.is_finite() || x < 0.0) {
                    errs.push(
                        format!("{path}.pricing.{field}"),
                        "must be a non-negative number",
                    );
                }
            }
        }
    }
    variants
        .iter()
        .map(|v| CompiledVariant {
            name: v.name.clone(),
            model: v.model.clone(),
            params: v.params.clone(),
            provider: v.provider.clone().map(|mut p| {
                p.base_url = p.base_url.trim_end_matches('/').to_string();
                p
            }),
            pricing: v.pricing.clone(),
        })
        .collect()
}

fn check_base_url(url: &str) -> Result<(), String> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .ok_or_else(|| format!("{url:?} must start with http:// or https://"))?;
    let authority = rest.split('/').next().unwrap_or_default();
    if authority.is_empty() {
        return Err(format!("{url:?} has no host"));
    }
    if url.contains(['?', '#', ' ']) || authority.contains('@') {
        return Err(format!(
            "{url:?} must be a plain base URL without credentials, query or fragment"
        ));
    }
    Ok(())
}

/// All traffic to the default variant.
fn default_only(variants: &[Variant], default: &str) -> Vec<u32> {
    variants
        .iter()
        .map(|v| if v.name == default { TOTAL_BP } else { 0 })
        .collect()
}

/// Percent with at most 2 decimals → basis points.
fn percent_to_bp(percent: f64) -> Result<u32, String> {
    if !percent.is_finite() || !(0.0..=100.0).contains(&percent) {
        return Err(format!("{percent} must be between 0 and 100"));
    }
    let bp = (percent * 100.0).round();
    if (percent * 100.0 - bp).abs() > 1e-6 {
        return Err(format!("{percent} has more than 2 decimals"));
    }
    Ok(bp as u32)
}

fn compile_rollout(
    rollout: &Rollout,
    spec: &AIFeatureFlagSpec,
    canary_weight: Option<f64>,
    errs: &mut Errors,
) -> (Vec<StickySource>, Vec<u32>) {
    let names: Vec<&str> = spec.variants.iter().map(|v| v.name.as_str()).collect();
    let mut sticky = Vec::with_capacity(rollout.sticky_by.len());
    for (i, s) in rollout.sticky_by.iter().enumerate() {
        match StickySource::parse(s) {
            Some(src) => sticky.push(src),
            None => errs.push(
                format!("spec.rollout.stickyBy[{i}]"),
                format!("{s:?} must be header:<name> or body:<field.path>"),
            ),
        }
    }

    if rollout.weights.is_some() && rollout.steps.is_some() {
        errs.push(
            "spec.rollout",
            "weights and steps are mutually exclusive: use fixed weights or a progressive canary",
        );
    }
    if rollout.steps.is_some() != rollout.canary.is_some() {
        errs.push(
            "spec.rollout.canary",
            "canary and steps go together: a progressive rollout needs both",
        );
    }

    let mut weights = default_only(&spec.variants, &spec.default_variant);
    if let Some(map) = &rollout.weights {
        let mut by_name = BTreeMap::new();
        let mut total_bp: u64 = 0;
        let mut all_parsed = true;
        for (name, percent) in map {
            let path = format!("spec.rollout.weights.{name}");
            if !names.contains(&name.as_str()) {
                errs.push(path.clone(), unknown_variant(name, &names));
            }
            match percent_to_bp(*percent) {
                Ok(bp) => {
                    total_bp += u64::from(bp);
                    by_name.insert(name.as_str(), bp);
                }
                Err(msg) => {
                    all_parsed = false;
                    errs.push(path, msg);
                }
            }
        }
        // A sum over only the readable weights would be a confusing second error.
        if all_parsed && total_bp != u64::from(TOTAL_BP) {
            errs.push(
                "spec.rollout.weights",
                format!("weights sum to {}, not 100", total_bp as f64 / 100.0),
            );
        }
        weights = spec
            .variants
            .iter()
            .map(|v| by_name.get(v.name.as_str()).copied().unwrap_or(0))
            .collect();
    }

    if let Some(steps) = &rollout.steps {
        if steps.is_empty() {
            errs.push("spec.rollout.steps", "at least one step is required");
        }
        let mut previous: Option<f64> = None;
        for (i, step) in steps.iter().enumerate() {
            let path = format!("spec.rollout.steps[{i}]");
            if let Err(msg) = percent_to_bp(step.weight) {
                errs.push(format!("{path}.weight"), msg);
            }
            if let Some(prev) = previous.filter(|p| step.weight < *p) {
                errs.push(
                    format!("{path}.weight"),
                    format!(
                        "{} is lower than the previous step's {prev}: steps must not decrease",
                        step.weight
                    ),
                );
            }
            previous = Some(step.weight);
            if let Some(pause) = &step.pause
                && let Err(msg) = parse_duration_ms(pause)
            {
                errs.push(format!("{path}.pause"), msg);
            }
        }
    }
    if let Some(canary) = &rollout.canary {
        if !names.contains(&canary.as_str()) {
            errs.push("spec.rollout.canary", unknown_variant(canary, &names));
        } else if *canary == spec.default_variant {
            errs.push(
                "spec.rollout.canary",
                format!("{canary:?} is the defaultVariant, which receives the remaining traffic; name another variant"),
            );
        } else if let Some(steps) = &rollout.steps {
            let first = steps.first().map(|s| s.weight).unwrap_or(0.0);
            let canary_bp = percent_to_bp(canary_weight.unwrap_or(first)).unwrap_or(0);
            weights = spec
                .variants
                .iter()
                .map(|v| {
                    if v.name == *canary {
                        canary_bp
                    } else if v.name == spec.default_variant {
                        TOTAL_BP - canary_bp
                    } else {
                        0
                    }
                })
                .collect();
        }
    }

    if let Some(a) = &rollout.analysis {
        if rollout.steps.is_none() {
            errs.push(
                "spec.rollout.analysis",
                "analysis gates canary steps; it needs rollout.steps",
            );
        }
        if let Some(interval) = &a.interval
            && let Err(msg) = parse_duration_ms(interval)
        {
            errs.push("spec.rollout.analysis.interval", msg);
        }
        let rates = [
            ("maxErrorRate", a.max_error_rate),
            ("maxFallbackRate", a.max_fallback_rate),
        ];
        for (field, rate) in rates {
            if rate.is_some_and(|r| !(0.0..=1.0).contains(&r)) {
                errs.push(
                    format!("spec.rollout.analysis.{field}"),
                    "must be a ratio between 0 and 1",
                );
            }
        }
        if a.max_p95_latency_seconds
            .is_some_and(|l| !l.is_finite() || l <= 0.0)
        {
            errs.push(
                "spec.rollout.analysis.maxP95LatencySeconds",
                "must be a positive number of seconds",
            );
        }
        if a.failure_limit == Some(0) {
            errs.push("spec.rollout.analysis.failureLimit", "must be at least 1");
        }
    }
    (sticky, weights)
}

fn compile_fallback(
    spec: &AIFeatureFlagSpec,
    names: &[&str],
    errs: &mut Errors,
) -> CompiledFallback {
    let Some(f) = &spec.fallback else {
        return CompiledFallback::default();
    };
    let on = if f.on.is_empty() {
        ["timeout", "connect", "429", "5xx"]
            .iter()
            .filter_map(|s| FailureClass::parse(s))
            .collect()
    } else {
        let mut on = Vec::with_capacity(f.on.len());
        for (i, s) in f.on.iter().enumerate() {
            match FailureClass::parse(s) {
                Some(c) => on.push(c),
                None => errs.push(
                    format!("spec.fallback.on[{i}]"),
                    format!(
                        "{s:?} is not one of timeout, connect, 4xx, 5xx or a status code 400-599"
                    ),
                ),
            }
        }
        on
    };
    let mut out = CompiledFallback {
        on,
        ..CompiledFallback::default()
    };
    for (i, name) in f.chain.iter().enumerate() {
        if !names.contains(&name.as_str()) {
            errs.push(
                format!("spec.fallback.chain[{i}]"),
                unknown_variant(name, names),
            );
        }
    }
    out.chain = f.chain.clone();
    if let Some(r) = f.retries {
        if r > MAX_RETRIES {
            errs.push(
                "spec.fallback.retries",
                format!("{r} is more than the maximum of {MAX_RETRIES}"),
            );
        }
        out.retries = r;
    }
    let mut duration = |field: &str, value: &Option<String>| -> Option<u64> {
        let ms = parse_duration_ms(value.as_ref()?)
            .map_err(|msg| errs.push(format!("spec.fallback.{field}"), msg))
            .ok()?;
        if ms == 0 {
            errs.push(format!("spec.fallback.{field}"), "must be longer than 0");
        } else if ms > MAX_TIMEOUT_MS {
            errs.push(
                format!("spec.fallback.{field}"),
                "must be at most 168h (a week)",
            );
        }
        Some(ms)
    };
    let per_attempt = duration("perAttemptTimeout", &f.per_attempt_timeout);
    let first_token = duration("firstTokenTimeout", &f.first_token_timeout);
    let deadline = duration("deadline", &f.deadline);
    if let Some(ms) = per_attempt {
        out.per_attempt_timeout_ms = ms;
    }
    out.first_token_timeout_ms = first_token;
    if let Some(ms) = deadline {
        out.deadline_ms = ms;
    }
    if let (Some(p), Some(d)) = (per_attempt, deadline)
        && d < p
    {
        errs.push(
            "spec.fallback.deadline",
            format!(
                "{} is shorter than perAttemptTimeout {}",
                f.deadline.as_deref().unwrap_or_default(),
                f.per_attempt_timeout.as_deref().unwrap_or_default()
            ),
        );
    }
    if let (Some(t), Some(p)) = (first_token, per_attempt)
        && t > p
    {
        errs.push(
            "spec.fallback.firstTokenTimeout",
            format!(
                "{} is longer than perAttemptTimeout {}",
                f.first_token_timeout.as_deref().unwrap_or_default(),
                f.per_attempt_timeout.as_deref().unwrap_or_default()
            ),
        );
    }
    out
}

fn compile_selector(s: &LabelSelector, errs: &mut Errors) -> Selector {
    let mut out = Selector {
        match_labels: s.match_labels.clone().unwrap_or_default(),
        match_expressions: Vec::new(),
    };
    for (i, e) in s.match_expressions.iter().flatten().enumerate() {
        let path = format!("spec.podSelector.matchExpressions[{i}]");
        let values = e.values.clone().unwrap_or_default();
        let operator = match e.operator.as_str() {
            "In" => SelectorOperator::In,
            "NotIn" => SelectorOperator::NotIn,
            "Exists" => SelectorOperator::Exists,
            "DoesNotExist" => SelectorOperator::DoesNotExist,
            other => {
                errs.push(
                    format!("{path}.operator"),
                    format!("{other:?} is not one of In, NotIn, Exists, DoesNotExist"),
                );
                continue;
            }
        };
        let needs_values = matches!(operator, SelectorOperator::In | SelectorOperator::NotIn);
        if needs_values == values.is_empty() {
            let msg = if needs_values {
                "must be non-empty for In and NotIn"
            } else {
                "must be empty for Exists and DoesNotExist"
            };
            errs.push(format!("{path}.values"), msg);
        }
        out.match_expressions.push(SelectorRequirement {
            key: e.key.clone(),
            operator,
            values,
        });
    }
    out
}
