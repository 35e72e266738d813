"""The operator: is it reconciling, how fast, with which errors, and what
state the flags it manages are in."""

from . import promql as q
from .panels import Query, dashboard, datasource_variable, graph, single

UID = "aiflags-operator"

RECONCILES = [
    graph("Reconciles per second", "Reconciliations of AIFeatureFlags by result.", "ops",
          [Query(q.sum_rate("aiflags_operator_reconciles_total", "result", ""), "{{result}}")],
          width=8),
    graph("Reconcile errors", "Failed reconciliations by reason; they are retried with backoff.",
          "ops",
          [Query(q.sum_rate("aiflags_operator_reconcile_errors_total", "reason", ""), "{{reason}}")],
          width=8),
    graph("Reconcile duration p50 / p95 / p99", "Time to reconcile one flag.", "s",
          [Query(q.quantile(p, "aiflags_operator_reconcile_duration_seconds", "", ""), f"p{n}")
           for p, n in ((0.5, 50), (0.95, 95), (0.99, 99))], width=8),
]

ADMISSION = [
    graph("Webhook admissions", "Pod admissions the injection webhook answered, by result "
          "(injected, already_injected, skipped, refused, malformed).", "ops",
          [Query(q.sum_rate("aiflags_operator_webhook_admissions_total", "result", ""), "{{result}}")],
          width=8),
    graph("Webhook answer time p50 / p99", "Time to answer one AdmissionReview; the API server "
          "waits for it on every pod creation.", "s",
          [Query(q.quantile(p, "aiflags_operator_webhook_duration_seconds", "", ""), f"p{n}")
           for p, n in ((0.5, 50), (0.99, 99))], width=8),
    graph("Rollout aborts", "Rollouts the operator aborted, per flag, in each interval.", "short",
          [Query(q.increase("aiflags_operator_rollout_aborts_total", "namespace, flag", "",
                            window=q.RATE), "{{namespace}}/{{flag}}")], width=8),
]

FLAGS = [
    graph("Flags by phase", "AIFeatureFlags in each phase.", "short",
          [Query("sum by (phase) (aiflags_operator_flag_phase)", "{{phase}}")], width=8),
    single("Flags not ready", "Flags whose latest generation does not compile; the last valid "
           "version keeps serving. `kubectl get aiff -A` shows which.", "short",
           [Query("sum(1 - aiflags_operator_flag_ready)")], width=8, height=8),
    graph("Flags per namespace config", "Flags in each namespace's compiled ConfigMap.", "short",
          [Query("sum by (namespace) (aiflags_operator_config_flags)", "{{namespace}}")], width=8),
]


def build():
    return dashboard(
        UID,
        "aiflags / Operator",
        "The aiflags operator: reconciles, errors, durations, webhook admissions and flag phases.",
        [datasource_variable()],
        [("Reconciles", RECONCILES), ("Admission and rollouts", ADMISSION), ("Flags", FLAGS)],
    )
