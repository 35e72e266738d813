//! `AIFeatureFlag` specs → [`SidecarConfig`], with semantic validation whose
//! every error names the field it is about.
//!
//! The rule that makes bad input safe lives here: a flag whose new spec does
//! not compile keeps its last valid compiled version (taken from the previous
//! config) in the new document.

//!
//! One submodule per spec section: `variants`, `rollout`, `targeting`,
//! `fallback`, `selector` (`podSelector`). Each pushes its errors, with
//! their field paths, into the one list a flag's compile returns.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::Arc;

use self::fallback::compile_fallback;
pub use self::rollout::rollout_identity;
use self::rollout::{compile_rollout, default_only};
use self::selector::compile_selector;
use self::targeting::compile_targeting;
use self::variants::check_variants;
use crate::config::{CompiledFlag, SidecarConfig};
use crate::crd::{AIFeatureFlag, AIFeatureFlagSpec, FlagState};

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
    /// Reads name, namespace, generation and the canary position from a
    /// resource. The position is the rollout engine's (`status.rollout`),
    /// and only while it runs this very spec: after a spec change the
    /// canary starts again at the first step, whoever compiles it first.
    pub fn from_resource(flag: &'a AIFeatureFlag) -> Self {
        let canary_weight = flag.spec.rollout.as_ref().and_then(|r| {
            r.steps.as_ref()?;
            let rollout = flag.status.as_ref()?.rollout.as_ref()?;
            (rollout.spec_hash == rollout_identity(&flag.spec)).then_some(rollout.canary_weight)
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
                compiled.push(Arc::new(flag));
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
    if !names.contains(&spec.default_variant.as_str()) {
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

    let targeting = compile_targeting(&spec.targeting, &names, &mut errs);

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

mod fallback;
mod rollout;
mod selector;
mod targeting;
mod variants;
