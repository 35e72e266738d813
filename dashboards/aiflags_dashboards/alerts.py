"""Prometheus alerting rules. Each rule names what it is about (namespace,
flag, variant or model) and links its runbook in docs/alerts.md."""

from . import promql as q

# Thresholds: change them here and regenerate (dashboards/generate.py).
ERROR_RATE = 0.05
FALLBACK_RATE = 0.10
# Below this many requests in the window a ratio is noise, not a signal.
MIN_REQUESTS = 20

RUNBOOK = "docs/alerts.md#"
# Requests through a flag; pass-through traffic has flag="".
FLAGGED = 'flag!=""'


def _rule(name, expr, for_, severity, summary, description):
    rule = {"alert": name, "expr": expr}
    if for_:
        rule["for"] = for_
    rule["labels"] = {"severity": severity}
    rule["annotations"] = {
        "summary": summary,
        "description": description,
        "runbook": RUNBOOK + name.lower(),
    }
    return rule


def _enough_requests(by, window):
    return f'{q.increase("aiflags_requests_total", by, FLAGGED, window=window)} >= {MIN_REQUESTS}'


SIDECAR = [
    _rule(
        "AIFlagsVariantErrorRateHigh",
        f'{q.error_ratio("namespace, flag, variant", FLAGGED, window="5m")} > {ERROR_RATE}\n'
        f"and on (namespace, flag, variant) {_enough_requests('namespace, flag, variant', '5m')}",
        "5m", "critical",
        "A variant of an AI feature flag is failing requests.",
        "{{ $value | humanizePercentage }} of requests to variant {{ $labels.variant }} of flag "
        "{{ $labels.flag }} in namespace {{ $labels.namespace }} ended in an error "
        f"({q.ERROR_CODES_TEXT}) after retries and fallbacks over the last 5 minutes "
        f"(threshold {ERROR_RATE:.0%}).",
    ),
    _rule(
        "AIFlagsFallbackRateHigh",
        f'{q.total("namespace, flag, from_model", q.rate("aiflags_fallbacks_total", "", window="10m"))}\n'
        f'/ on (namespace, flag) group_left '
        f'{q.sum_rate("aiflags_requests_total", "namespace, flag", FLAGGED, window="10m")}\n'
        f"> {FALLBACK_RATE}\n"
        f"and on (namespace, flag) {_enough_requests('namespace, flag', '10m')}",
        "10m", "warning",
        "An AI feature flag keeps falling back from one model.",
        "Flag {{ $labels.flag }} in namespace {{ $labels.namespace }} fell back from model "
        "{{ $labels.from_model }} on {{ $value | humanizePercentage }} of its requests over the last "
        f"10 minutes (threshold {FALLBACK_RATE:.0%}): that model is failing; clients are served by "
        "the next model in the chain.",
    ),
    _rule(
        "AIFlagsCircuitOpen",
        "max by (namespace, pod, instance, provider, model) "
        "(max_over_time(aiflags_circuit_open[2m])) == 1",
        "10m", "warning",
        "A sidecar keeps skipping a model: its circuit breaker stays open.",
        "The circuit for model {{ $labels.model }} at {{ $labels.provider }} has been open for 10 "
        "minutes in sidecar {{ $labels.pod }} ({{ $labels.instance }}) of namespace "
        "{{ $labels.namespace }}: every probe fails, and requests go down their fallback chain.",
    ),
    _rule(
        "AIFlagsProxiesBehindRevision",
        "count by (namespace) (count by (namespace, revision) (aiflags_config_revision_info)) > 1",
        "10m", "warning",
        "Sidecars of a namespace serve different config revisions.",
        "Sidecars in namespace {{ $labels.namespace }} have served {{ $value }} different config "
        "revisions for 10 minutes: some have not picked up the latest aiflags-config.",
    ),
    _rule(
        "AIFlagsConfigReloadFailing",
        "sum by (namespace, pod, instance) "
        '(increase(aiflags_config_reloads_total{result="error"}[10m])) > 0',
        None, "warning",
        "A sidecar rejected a config update.",
        "Sidecar {{ $labels.pod }} ({{ $labels.instance }}) in namespace {{ $labels.namespace }} "
        "failed to load its config in the last 10 minutes; it keeps serving its last good config.",
    ),
]

OPERATOR = [
    _rule(
        "AIFlagsOperatorReconcileErrors",
        f'{q.sum_rate("aiflags_operator_reconcile_errors_total", "namespace, reason", "", window="10m")}'
        " > 0",
        "15m", "warning",
        "The aiflags operator keeps failing to reconcile flags.",
        "The aiflags operator in namespace {{ $labels.namespace }} has failed reconciles with reason "
        "{{ $labels.reason }} for 15 minutes.",
    ),
    _rule(
        "AIFlagsFlagInvalid",
        "max by (namespace, flag) (aiflags_operator_flag_ready) == 0",
        "10m", "warning",
        "An AI feature flag's latest change does not compile.",
        "Flag {{ $labels.flag }} in namespace {{ $labels.namespace }} has been invalid for 10 "
        "minutes; its last valid version keeps serving. `kubectl describe aiff {{ $labels.flag }} "
        "-n {{ $labels.namespace }}` names the field.",
    ),
    _rule(
        "AIFlagsRolloutAborted",
        f'{q.increase("aiflags_operator_rollout_aborts_total", "namespace, flag", "", window="10m")}'
        " > 0",
        None, "warning",
        "A progressive rollout was aborted.",
        "The rollout of flag {{ $labels.flag }} in namespace {{ $labels.namespace }} was aborted: "
        "its canary failed analysis (or someone aborted it) and its weight is back to 0.",
    ),
]


def build():
    return {
        "groups": [
            {"name": "aiflags-sidecar", "rules": SIDECAR},
            {"name": "aiflags-operator", "rules": OPERATOR},
        ]
    }
