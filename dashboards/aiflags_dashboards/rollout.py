"""The rollout of one flag: what its variants get, and how each one does."""

from . import promql as q
from .panels import Query, dashboard, datasource_variable, graph, query_variable, single

UID = "aiflags-rollout"
NS = 'namespace="$namespace"'
SCOPE = f'{NS}, flag="$flag"'
V = "{{variant}}"

VARIABLES = [
    datasource_variable(),
    query_variable("namespace", "Namespace", "label_values(aiflags_config_revision_info, namespace)",
                   multi=False),
    query_variable("flag", "Flag", f"label_values(aiflags_requests_total{{{NS}}}, flag)", multi=False),
]

# The split panel: the docs' picture is drawn from its queries.
SPLIT_TITLE = "Configured weight vs observed share"

SPLIT = [
    graph(SPLIT_TITLE,
          "Solid: the weight each variant is configured with in the config the sidecars serve. "
          "Observed: its share of the flag's requests. A sticky split tracks the weight within a "
          "few percent once a few hundred users have come by.", "percentunit",
          [Query(f"avg by (variant) (aiflags_variant_weight_ratio{{{SCOPE}}})", f"{V} configured"),
           Query(q.share("aiflags_requests_total", "variant", "", SCOPE, window=q.RATE),
                 f"{V} observed")],
          width=12),
    graph("Rollout weight (operator)",
          "The weight the operator's rollout gives each variant, in percent.", "percent",
          [Query(f"max by (variant) (aiflags_operator_flag_weight_percent{{{SCOPE}}})", V)], width=6),
    graph("Rollout step", "The progressive rollout's current step (0 before the first).", "none",
          [Query(f"max(aiflags_operator_rollout_step{{{SCOPE}}})", "step")], width=6),
    graph("Analysis checks",
          "The operator's analysis of the canary by result; failed checks up to failureLimit abort.",
          "short",
          [Query(q.increase("aiflags_operator_analysis_checks_total", "result", SCOPE, window=q.RATE),
                 "{{result}}")], width=8),
    single("Rollout aborts", "Times the rollout aborted in the time range.", "none",
           [Query(q.increase("aiflags_operator_rollout_aborts_total", "", SCOPE))], width=4, height=8),
    single("Phase", "The flag's phase as the operator reports it.", "none",
           [Query(f"max by (phase) (aiflags_operator_flag_phase{{{SCOPE}}}) == 1", "{{phase}}")],
           width=4, height=8, show_name=True),
    graph("Proxies at the current revision",
          "Sidecars serving the flag's latest compiled revision, of all it applies to.", "short",
          [Query(f'sum(aiflags_operator_flag_proxies{{{SCOPE}, state="at_revision"}})', "at revision"),
           Query(f'sum(aiflags_operator_flag_proxies{{{SCOPE}, state="total"}})', "total")], width=8),
]

TRAFFIC = [
    graph("Requests per second", "Requests answered, per variant.", "reqps",
          [Query(q.sum_rate("aiflags_requests_total", "variant", SCOPE), V)], width=6),
    graph("Error rate", f"Share of each variant's requests answered with {q.ERROR_CODES_TEXT} after every "
          "retry and fallback.", "percentunit", [Query(q.error_ratio("variant", SCOPE), V)], width=6),
    graph("Empty or filtered answers", "Share of the answers each variant's model gave (2xx) that were "
          "empty or stopped by its content filter, whether or not the flag fell back from them: a canary "
          "that answers badly shows here even while fallbacks hide it from the error rate.",
          "percentunit", [Query(q.bad_answer_ratio("variant", SCOPE), V)], width=6),
    graph("Served by model", "Requests per variant and the model that answered them: after a "
          "fallback a variant is served by another model.", "reqps",
          [Query(q.sum_rate("aiflags_requests_total", "variant, model", SCOPE), f"{V} → {{{{model}}}}")],
          width=6),
]

LATENCY = [
    graph("Latency p50 / p95 / p99", "Request duration per variant, arrival to the end of the "
          "response.", "s",
          [Query(q.quantile(p, "aiflags_request_duration_seconds", "variant", SCOPE), f"{V} p{n}")
           for p, n in ((0.5, 50), (0.95, 95), (0.99, 99))]),
    graph("Time to first token p50 / p95", "Streams: arrival to the first content sent to the client.",
          "s",
          [Query(q.quantile(p, "aiflags_time_to_first_token_seconds", "variant", SCOPE), f"{V} p{n}")
           for p, n in ((0.5, 50), (0.95, 95))]),
]

COST = [
    graph("Tokens per second", "Input and output tokens the upstreams reported, per variant.",
          "suffix:tok/s",
          [Query(q.sum_rate("aiflags_tokens_total", "variant, type", SCOPE, 'type=~"input|output"'),
                 f"{V} {{{{type}}}}")], width=8),
    graph("Cost per hour", "Estimated spend per variant, extrapolated to an hour.", "currencyUSD",
          [Query(f'{q.sum_rate("aiflags_cost_usd_total", "variant", SCOPE)} * 3600', V)], width=8),
    graph("Cost per 1,000 requests", "What a thousand requests cost on each variant: what a canary "
          "of a cheaper model saves.", "currencyUSD",
          [Query(f'{q.sum_rate("aiflags_cost_usd_total", "variant", SCOPE)} / '
                 f'{q.sum_rate("aiflags_requests_total", "variant", SCOPE)} * 1000', V)], width=8),
]

MODELS = q.models_of_flag(SCOPE)

UPSTREAMS = [
    graph("Fallbacks by reason", "Fallback hops per second by what failed: timeout, connect "
          "(also an open circuit), an HTTP status, or a bad answer.", "ops",
          [Query(q.sum_rate("aiflags_fallbacks_total", "reason", SCOPE), "{{reason}}")], width=6),
    graph("Fallbacks from → to model", "Fallback hops per second from the model that failed to the "
          "one tried next.", "ops",
          [Query(q.sum_rate("aiflags_fallbacks_total", "from_model, to_model", SCOPE),
                 "{{from_model}} → {{to_model}}")], width=6),
    graph("Upstream attempts by outcome", "Every attempt at the models this flag uses, by outcome "
          "(ok, timeout, connect, status_NNN, circuit_open, empty, content_filter).", "ops",
          [Query(f"sum by (model, outcome) ({q.rate('aiflags_upstream_attempts_total', NS)} "
                 f"and on (namespace, model) {MODELS})", "{{model}} {{outcome}}")], width=6),
    graph("Open circuits", "Sidecars whose circuit breaker for a model of this flag is open "
          "(the target is skipped until a probe succeeds).", "short",
          [Query(f"sum by (provider, model) (aiflags_circuit_open{{{NS}}} "
                 f"and on (namespace, model) {MODELS})", "{{provider}} {{model}}")], width=6),
    graph("Proxies per config revision", "Sidecars of the namespace by the config revision they "
          "serve.", "short",
          [Query(f"count by (revision) (aiflags_config_revision_info{{{NS}}})", "{{revision}}")],
          width=24),
]


def build():
    return dashboard(
        UID,
        "aiflags / Rollout",
        "One flag's rollout: configured vs observed split, errors, latency, time to first token, "
        "tokens, cost and fallbacks per variant.",
        VARIABLES,
        [("Split and rollout", SPLIT), ("Traffic and errors", TRAFFIC), ("Latency", LATENCY),
         ("Tokens and cost", COST), ("Fallbacks and upstreams", UPSTREAMS)],
    )
