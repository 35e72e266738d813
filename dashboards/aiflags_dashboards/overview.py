"""The overview: every flag of the chosen namespaces side by side."""

from . import promql as q
from .panels import Query, dashboard, datasource_variable, graph, grid, query_variable, single

UID = "aiflags-overview"
NS = 'namespace=~"$namespace"'
SCOPE = f'{NS}, flag=~"$flag"'
BY_FLAG = "namespace, flag"
LEGEND = "{{namespace}}/{{flag}}"

VARIABLES = [
    datasource_variable(),
    query_variable(
        "namespace", "Namespace", "label_values(aiflags_config_revision_info, namespace)",
        multi=True, all_value=".*",
    ),
    # "All" is every flag but not pass-through traffic, which has flag="".
    query_variable(
        "flag", "Flag", f"label_values(aiflags_requests_total{{{NS}}}, flag)",
        multi=True, all_value=".+",
    ),
]

TOTALS = [
    single(
        "Requests per second", "Requests answered through the selected flags.", "reqps",
        [Query(q.sum_rate("aiflags_requests_total", "", SCOPE))],
    ),
    single(
        "Error rate",
        f"Share of requests answered with {q.ERROR_CODES_TEXT} after every retry and fallback.",
        "percentunit", [Query(q.error_ratio("", SCOPE))],
    ),
    single(
        "Cost per hour", "Estimated spend from the price table, extrapolated to an hour.",
        "currencyUSD", [Query(f'{q.sum_rate("aiflags_cost_usd_total", "", SCOPE)} * 3600')],
    ),
    single(
        "Requests in flight", "Requests (and streams) the sidecars of these namespaces are serving now.",
        "short", [Query(f"sum(aiflags_active_requests{{{NS}}})")],
    ),
]

FLAGS = [
    grid(
        "Flags", "Each flag's state (enabled, or disabled: the kill switch) and default variant, "
        "with the number of sidecars serving it so; two rows for a flag mean sidecars disagree.",
        "short",
        [Query(f"count by (namespace, flag, state, default_variant) (aiflags_flag_info{{{SCOPE}}})",
               instant=True)],
        {"namespace": "Namespace", "flag": "Flag", "state": "State",
         "default_variant": "Default variant", "Value": "Sidecars"},
        width=10,
    ),
    grid(
        "Split per flag: configured vs observed",
        "Configured weight of each variant against the share of requests it got over the time range.",
        "percentunit",
        [
            Query(f"avg by (namespace, flag, variant) (aiflags_variant_weight_ratio{{{SCOPE}}})",
                  instant=True),
            Query(q.share("aiflags_requests_total", "namespace, flag, variant", BY_FLAG, SCOPE),
                  instant=True),
        ],
        {"namespace": "Namespace", "flag": "Flag", "variant": "Variant",
         "Value #A": "Configured", "Value #B": "Observed"},
        width=14,
    ),
]

PER_FLAG = [
    graph("Requests per second", "Requests answered, per flag.", "reqps",
          [Query(q.sum_rate("aiflags_requests_total", BY_FLAG, SCOPE), LEGEND)]),
    graph("Error rate", f"Share of requests answered with {q.ERROR_CODES_TEXT}, per flag.", "percentunit",
          [Query(q.error_ratio(BY_FLAG, SCOPE), LEGEND)]),
    graph("Fallback rate", "Fallback hops per request, per flag: how often the chosen model failed "
          "and the next one in the chain was tried.", "percentunit",
          [Query(q.fallback_ratio(BY_FLAG, SCOPE), LEGEND)]),
    graph("Latency p95", "95th percentile of the whole request, per flag.", "s",
          [Query(q.quantile(0.95, "aiflags_request_duration_seconds", BY_FLAG, SCOPE), LEGEND)]),
    graph("Cost per hour", "Estimated spend per flag, extrapolated to an hour.", "currencyUSD",
          [Query(f'{q.sum_rate("aiflags_cost_usd_total", BY_FLAG, SCOPE)} * 3600', LEGEND)]),
    graph("Proxies at the current revision",
          "Per flag: sidecars serving the flag's latest compiled revision, of all sidecars it "
          "applies to (from the operator).", "short",
          [Query(f'sum by (namespace, flag) (aiflags_operator_flag_proxies{{{SCOPE}, state="at_revision"}})',
                 "{{namespace}}/{{flag}} at revision"),
           Query(f'sum by (namespace, flag) (aiflags_operator_flag_proxies{{{SCOPE}, state="total"}})',
                 "{{namespace}}/{{flag}} total")]),
]

SIDECARS = [
    graph("Proxies per config revision",
          "Sidecars by the config revision they serve; more than one line for minutes means some "
          "have not picked up the latest config.", "short",
          [Query(f"count by (namespace, revision) (aiflags_config_revision_info{{{NS}}})",
                 "{{namespace}} {{revision}}")]),
    graph("Config reloads", "Config loads by result; errors keep the last good config serving.", "ops",
          [Query(q.sum_rate("aiflags_config_reloads_total", "namespace, result", NS),
                 "{{namespace}} {{result}}")]),
    graph("Requests the sidecar could not read",
          "Requests on LLM paths passed through untouched because the sidecar could not read them, "
          "by reason: no flag applied to them.", "reqps",
          [Query(q.sum_rate("aiflags_unparsed_requests_total", "namespace, reason", NS),
                 "{{namespace}} {{reason}}")]),
    graph("Proxy overhead p99", "What the sidecar itself added to a request (total time minus "
          "upstream time), 99th percentile.", "s",
          [Query(q.quantile(0.99, "aiflags_proxy_overhead_seconds", "namespace", NS), "{{namespace}}")]),
]


def build():
    return dashboard(
        UID,
        "aiflags / Overview",
        "Every AI feature flag: traffic, errors, fallbacks, latency, cost and config propagation.",
        VARIABLES,
        [("Totals", TOTALS), ("Flags", FLAGS), ("Per flag", PER_FLAG), ("Sidecars", SIDECARS)],
    )
