//! What `kubectl aiflags get` shows of a flag's rollout, as data (for
//! `-o json|yaml`) and as text, in the manner of `kubectl argo rollouts
//! get`: status, steps, weights, analysis checks, proxies at revision,
//! conditions. Pure.

use std::collections::BTreeMap;

use aiflags_api::{AIFeatureFlag, AnalysisCheck, CheckResult, RolloutState};
use serde::Serialize;

/// One flag's rollout, as the CLI shows it.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RolloutView {
    pub name: String,
    pub namespace: String,
    pub state: String,
    pub phase: Option<String>,
    pub message: Option<String>,
    pub canary: Option<String>,
    /// Counted from 1.
    pub current_step: Option<u32>,
    pub canary_weight: Option<f64>,
    /// The split served now, per variant.
    pub weights: BTreeMap<String, f64>,
    pub steps: Vec<StepView>,
    pub failed_checks: u32,
    pub failure_limit: Option<u32>,
    pub analysis_interval: Option<String>,
    pub checks: Vec<AnalysisCheck>,
    pub config_revision: Option<String>,
    pub serving_generation: Option<i64>,
    pub generation: Option<i64>,
    pub proxies: Option<ProxiesView>,
    pub conditions: Vec<ConditionView>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StepView {
    pub weight: f64,
    pub pause: Option<String>,
    /// `done`, `current` or `pending`.
    pub state: &'static str,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ProxiesView {
    pub at_revision: u32,
    pub total: u32,
    pub revision: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ConditionView {
    #[serde(rename = "type")]
    pub type_: String,
    pub status: String,
    pub reason: String,
    pub message: String,
}

impl RolloutView {
    pub fn of(flag: &AIFeatureFlag) -> RolloutView {
        let status = flag.status.clone().unwrap_or_default();
        let rollout_spec = flag.spec.rollout.as_ref();
        let record = status.rollout.as_ref();
        let current = status.current_step.filter(|_| record.is_some());
        let settled = record.is_some_and(|r| r.state == RolloutState::Completed);
        let steps = rollout_spec
            .and_then(|r| r.steps.as_ref())
            .map(|steps| {
                steps
                    .iter()
                    .enumerate()
                    .map(|(i, step)| {
                        let n = u32::try_from(i + 1).unwrap_or(u32::MAX);
                        let state = match current {
                            Some(c) if n < c || (n == c && settled) => "done",
                            Some(c) if n == c => "current",
                            _ => "pending",
                        };
                        StepView {
                            weight: step.weight,
                            pause: step.pause.clone(),
                            state,
                        }
                    })
                    .collect()
            })
            .unwrap_or_default();
        let analysis = rollout_spec.and_then(|r| r.analysis.as_ref());
        let state = match (record, rollout_spec.and_then(|r| r.steps.as_ref())) {
            (Some(r), _) => format!("{:?}", r.state),
            (None, Some(_)) => "NotStarted".into(),
            (None, None) => "NoRollout".into(),
        };
        RolloutView {
            name: flag.metadata.name.clone().unwrap_or_default(),
            namespace: flag.metadata.namespace.clone().unwrap_or_default(),
            state,
            phase: status.phase.map(|p| format!("{p:?}")),
            message: record
                .map(|r| r.message.clone())
                .filter(|m| !m.is_empty())
                .or(status.message.clone()),
            canary: rollout_spec.and_then(|r| r.canary.clone()),
            current_step: current,
            canary_weight: record.map(|r| r.canary_weight),
            weights: status.current_weights.clone().unwrap_or_default(),
            steps,
            failed_checks: status.failed_checks.unwrap_or(0),
            failure_limit: analysis.map(|a| a.failure_limit.unwrap_or(2)),
            analysis_interval: analysis.map(|a| a.interval.clone().unwrap_or_else(|| "1m".into())),
            checks: record.map(|r| r.checks.clone()).unwrap_or_default(),
            config_revision: status.config_revision.clone(),
            serving_generation: status.serving_generation,
            generation: flag.metadata.generation,
            proxies: status.proxies.as_ref().map(|p| ProxiesView {
                at_revision: p.at_revision,
                total: p.total,
                revision: p.revision.clone(),
            }),
            conditions: status
                .conditions
                .iter()
                .map(|c| ConditionView {
                    type_: c.type_.clone(),
                    status: c.status.clone(),
                    reason: c.reason.clone(),
                    message: c.message.clone(),
                })
                .collect(),
        }
    }

    /// Done: completed, aborted, stopped or no rollout at all.
    pub fn settled(&self) -> bool {
        matches!(
            self.state.as_str(),
            "Completed" | "Aborted" | "Stopped" | "NoRollout"
        )
    }

    /// The text of `get`.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let mut line = |label: &str, value: &str| {
            out.push_str(&format!("{:<15}{value}\n", format!("{label}:")));
        };
        line("Name", &self.name);
        line("Namespace", &self.namespace);
        line("Status", &format!("{} {}", symbol(&self.state), self.state));
        if let Some(phase) = &self.phase {
            line("Phase", phase);
        }
        if let Some(message) = &self.message {
            line("Message", message);
        }
        if let Some(canary) = &self.canary {
            line("Strategy", &format!("Canary ({canary})"));
        }
        if let Some(step) = self.current_step {
            line("  Step", &format!("{step}/{}", self.steps.len()));
        }
        if let Some(weight) = self.canary_weight {
            line("  SetWeight", &number(weight));
        }
        if !self.weights.is_empty() {
            let split: Vec<String> = self
                .weights
                .iter()
                .map(|(v, w)| format!("{v}={}", number(*w)))
                .collect();
            line("  Weights", &split.join(" "));
        }
        if let (Some(interval), Some(limit)) = (&self.analysis_interval, self.failure_limit) {
            line(
                "Analysis",
                &format!(
                    "every {interval}; {} of {limit} failed checks abort",
                    self.failed_checks
                ),
            );
        }
        let config = match (&self.config_revision, self.serving_generation) {
            (Some(revision), Some(serving)) => {
                format!(
                    "revision {revision}, generation {serving} serving (latest {})",
                    self.generation.unwrap_or_default()
                )
            }
            _ => "not in the namespace's config".into(),
        };
        line("Config", &config);
        if let Some(proxies) = &self.proxies {
            line(
                "Proxies",
                &format!(
                    "{}/{} at revision {}",
                    proxies.at_revision,
                    proxies.total,
                    proxies.revision.as_deref().unwrap_or("-")
                ),
            );
        }
        if !self.steps.is_empty() {
            out.push_str("\nSteps:\n");
            for (i, step) in self.steps.iter().enumerate() {
                let mark = match step.state {
                    "done" => "✔",
                    "current" => "●",
                    _ => " ",
                };
                let pause = match (&step.pause, i + 1 == self.steps.len()) {
                    (Some(p), _) => format!("pause {p}"),
                    (None, true) => String::new(),
                    (None, false) => "pause until resumed".into(),
                };
                out.push_str(
                    format!(
                        "  {mark} {:<3}weight {:<7}{pause}",
                        i + 1,
                        format!("{}%", number(step.weight))
                    )
                    .trim_end(),
                );
                out.push('\n');
            }
        }
        if !self.checks.is_empty() {
            out.push_str("\nChecks (latest last):\n");
            for check in &self.checks {
                out.push_str(&format!(
                    "  {}  step {}  {} {:<12}  {}\n",
                    check.time.0.strftime("%H:%M:%S"),
                    check.step,
                    result_symbol(check.result),
                    format!("{:?}", check.result),
                    check.message
                ));
            }
        }
        if !self.conditions.is_empty() {
            out.push_str("\nConditions:\n");
            for c in &self.conditions {
                out.push_str(&format!(
                    "  {:<12} {:<6} {:<21} {}\n",
                    c.type_, c.status, c.reason, c.message
                ));
            }
        }
        out
    }

    /// The one line of `status`.
    pub fn summary(&self) -> String {
        let mut line = format!("{} {}", symbol(&self.state), self.state);
        if let (Some(step), Some(weight)) = (self.current_step, self.canary_weight) {
            line.push_str(&format!(
                " - step {step}/{}, canary {}%",
                self.steps.len(),
                number(weight)
            ));
        }
        if let Some(message) = &self.message {
            line.push_str(&format!(": {message}"));
        }
        line
    }
}

fn symbol(state: &str) -> &'static str {
    match state {
        "Completed" => "✔",
        "Aborted" => "✖",
        "Paused" => "॥",
        "Progressing" => "◌",
        _ => "•",
    }
}

fn result_symbol(result: CheckResult) -> &'static str {
    match result {
        CheckResult::Pass => "✔",
        CheckResult::Fail => "✖",
        CheckResult::Inconclusive => "?",
    }
}

/// `10` rather than `10.0`, `2.5` as is.
fn number(value: f64) -> String {
    if value.fract() == 0.0 {
        format!("{value:.0}")
    } else {
        format!("{value}")
    }
}
