"""PromQL building blocks shared by the dashboards and the alerts, so that a
panel and the alert beside it mean the same thing by "error" or "fallback rate".

Every function returns a query string; `scope` is the label matchers a
dashboard narrows by (e.g. `namespace=~"$namespace", flag=~"$flag"`)."""

# Responses counted as errors: the upstream (or the proxy) failed the request
# once every retry and fallback was spent. 499 (the client left) is not the
# variant's fault; other 4xx are the client's.
ERROR_CODES = "5..|429"
ERROR_CODES_TEXT = "5xx or 429"

# Grafana's rate window: at least four scrapes.
RATE = "$__rate_interval"
# The dashboard's whole time range (tables).
RANGE = "$__range"


def selector(metric, *matchers):
    """`metric{m1, m2}` with empty matchers dropped."""
    inner = ", ".join(m for m in matchers if m)
    return f"{metric}{{{inner}}}" if inner else metric


def rate(metric, scope, extra="", window=RATE):
    return f"rate({selector(metric, scope, extra)}[{window}])"


def total(by, expr):
    """`sum by (by) (expr)`, or `sum (expr)` over everything when `by` is empty."""
    return f"sum by ({by}) ({expr})" if by else f"sum ({expr})"


def sum_rate(metric, by, scope, extra="", window=RATE):
    return total(by, rate(metric, scope, extra, window))


def increase(metric, by, scope, extra="", window=RANGE):
    return total(by, f"increase({selector(metric, scope, extra)}[{window}])")


def ratio_or_zero(numerator, denominator):
    """`numerator / denominator`, 0 (not "no data") where the numerator has no
    series yet: a flag with no errors shows an error rate of 0."""
    return f"({numerator} or {denominator} * 0) / {denominator}"


def error_ratio(by, scope, window=RATE):
    """Share of requests answered with an error code, per `by`."""
    errors = sum_rate("aiflags_requests_total", by, scope, f'code=~"{ERROR_CODES}"', window)
    total = sum_rate("aiflags_requests_total", by, scope, window=window)
    return ratio_or_zero(errors, total)


def fallback_ratio(by, scope, window=RATE):
    """Fallback hops per request, per `by` (labels both families share)."""
    hops = sum_rate("aiflags_fallbacks_total", by, scope, window=window)
    total = sum_rate("aiflags_requests_total", by, scope, window=window)
    return ratio_or_zero(hops, total)


def bad_answer_ratio(by, scope, window=RATE):
    """Share of answers (2xx) judged empty or stopped by a content filter,
    per `by`; `variant` here is the variant that gave the answer."""
    bad = sum_rate("aiflags_answers_total", by, scope, 'verdict=~"empty|content_filter"', window)
    total = sum_rate("aiflags_answers_total", by, scope, window=window)
    return ratio_or_zero(bad, total)


def quantile(q, histogram, by, scope, window=RATE):
    by_le = f"{by}, le" if by else "le"
    return f"histogram_quantile({q}, {sum_rate(histogram + '_bucket', by_le, scope, window=window)})"


def share(metric, by, group, scope, window=RANGE):
    """Each `by` group's share of its `group` total over `window`: the observed
    split (`by` = group plus variant)."""
    part = increase(metric, by, scope, window=window)
    whole = increase(metric, group, scope, window=window)
    return f"{part} / ignoring (variant) group_left {whole}"


def models_of_flag(scope):
    """The (namespace, model) pairs a flag sends to: models that served it and
    models it fell back from (a failing canary model never serves)."""
    served = f"group by (namespace, model) ({selector('aiflags_requests_total', scope)})"
    left = (
        f"group by (namespace, model) (label_replace("
        f'{selector("aiflags_fallbacks_total", scope)}, "model", "$1", "from_model", "(.+)"))'
    )
    return f"({served} or {left})"
