//! Parts of the request path the benchmark can switch off, to measure what
//! each costs (`bench/run.sh` case x; docs/benchmark.md, "What 0.8× would
//! take"). The switches exist only in a build with the `ablation` feature,
//! which nothing shipped has: there [`off`] is a constant `false` that the
//! optimiser removes, and nothing reads `AIFLAGS_ABLATE`.

use crate::settings::source::Source;

/// A part of a request's work that can be switched off.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Part {
    /// Judging a whole answer and reading its usage (the answer is served
    /// unjudged, with no usage).
    Judge,
    /// The request's report: its metrics and its access-log line.
    Report,
}

impl Part {
    const ALL: [(Part, &'static str); 2] = [(Part::Judge, "judge"), (Part::Report, "report")];

    fn bit(self) -> u8 {
        match self {
            Part::Judge => 1,
            Part::Report => 2,
        }
    }
}

/// The parts switched off.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Parts(u8);

impl Parts {
    /// `AIFLAGS_ABLATE` from `source`: part names, comma-separated (none
    /// when unset or empty).
    pub(crate) fn from_source(source: &dyn Source) -> Result<Parts, String> {
        let Some(value) = source.get("AIFLAGS_ABLATE") else {
            return Ok(Parts::default());
        };
        let mut parts = Parts::default();
        for name in value.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            let Some((part, _)) = Part::ALL.iter().find(|(_, known)| *known == name) else {
                let known: Vec<_> = Part::ALL.iter().map(|(_, n)| *n).collect();
                return Err(format!(
                    "AIFLAGS_ABLATE: unknown part {name:?} (known: {})",
                    known.join(", ")
                ));
            };
            parts.0 |= part.bit();
        }
        Ok(parts)
    }

    pub(crate) fn has(self, part: Part) -> bool {
        self.0 & part.bit() != 0
    }
}

#[cfg(feature = "ablation")]
static SWITCHED_OFF: std::sync::OnceLock<Parts> = std::sync::OnceLock::new();

/// Reads `AIFLAGS_ABLATE` once, before the sidecar starts; the parts it names
/// are off for the process's life.
#[cfg(feature = "ablation")]
pub fn init_ablation(source: &dyn Source) -> Result<(), String> {
    let parts = Parts::from_source(source)?;
    if parts != Parts::default() {
        tracing::warn!(
            ?parts,
            "ablation build: parts of the request path are switched off"
        );
    }
    SWITCHED_OFF
        .set(parts)
        .map_err(|_| "AIFLAGS_ABLATE was read twice".to_string())
}

/// Whether `part` is switched off: never, outside an ablation build.
#[inline(always)]
pub(crate) fn off(part: Part) -> bool {
    #[cfg(feature = "ablation")]
    {
        SWITCHED_OFF.get().is_some_and(|parts| parts.has(part))
    }
    #[cfg(not(feature = "ablation"))]
    {
        let _ = part;
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_are_read_by_name_and_unknown_ones_refused() {
        let parts = |value: &str| Parts::from_source(&[("AIFLAGS_ABLATE", value)]);
        assert_eq!(parts(""), Ok(Parts::default()));
        assert_eq!(
            Parts::from_source(&[("OTHER", "judge")]),
            Ok(Parts::default())
        );
        let both = parts(" report , judge").unwrap();
        assert!(both.has(Part::Judge) && both.has(Part::Report));
        let judge = parts("judge").unwrap();
        assert!(judge.has(Part::Judge) && !judge.has(Part::Report));
        let err = parts("judge,metrics").unwrap_err();
        assert!(
            err.contains("AIFLAGS_ABLATE") && err.contains("\"metrics\""),
            "{err}"
        );
    }

    #[cfg(not(feature = "ablation"))]
    #[test]
    fn nothing_is_off_without_the_feature() {
        assert!(!off(Part::Judge) && !off(Part::Report));
    }
}
