"""Every dashboard panel against a real Prometheus scraping real sidecars.

Two sidecars ("pods" of namespace shop) each in front of a mock upstream get
traffic from the official openai SDK: a 90/10 split with a canary whose model
fails at first and falls back, a flag whose model always fails and falls back
(its circuit opens), one that fails outright, streams, and a body the sidecar
cannot read. Then the split goes to 70/30 by a config reload (one sidecar
first fails to load a vanished file). Prometheus scrapes every second; every
wait is on what Prometheus shows. Then each panel's query, with its variables filled
in, must parse and return data, and the split panels must show the weights.

Run alone: .venv/bin/python -m pytest -q tests/e2e/test_dashboards_prometheus.py
AIFLAGS_UPDATE_DOCS=1 also redraws docs/img/dashboard-split.png."""

import contextlib
import json
import math
import os
import re
import time
import urllib.request

import pytest

from conftest import ROOT, running_stack
from promstack import (
    OperatorMetrics,
    dashboards,
    metrics_in,
    render_split,
    running_prometheus,
    scrape_config,
    serving_operator_metrics,
    substitute,
    targets,
    variable_values,
)

NAMESPACE = "shop"
MESSAGES = [{"role": "user", "content": "Summarize the order history."}]
USERS_PER_BATCH = 40
BATCHES_PER_PHASE = 12
# The observed share of a sticky split over ~480 users: three standard deviations at 30%.
TOLERANCE = 0.07


def flags(stable, candidate):
    return f"""
apiVersion: aiflags.dev/v1alpha1
kind: AIFeatureFlag
metadata: {{name: summarizer}}
spec:
  match: {{models: ["gpt-4o-mini"]}}
  defaultVariant: stable
  variants:
    - {{name: stable, model: gpt-4o-mini}}
    - name: candidate
      model: mock-flaky-4
      pricing: {{inputPerMillion: 0.05, outputPerMillion: 0.2}}
  rollout:
    stickyBy: ["header:x-user-id"]
    weights: {{stable: {stable}, candidate: {candidate}}}
  fallback: {{on: ["5xx"], chain: [stable]}}
---
apiVersion: aiflags.dev/v1alpha1
kind: AIFeatureFlag
metadata: {{name: fragile}}
spec:
  match: {{models: ["fragile"]}}
  defaultVariant: primary
  variants:
    - {{name: primary, model: mock-error-500}}
    - {{name: backup, model: gpt-4o-mini}}
  fallback: {{on: ["5xx", connect], chain: [backup]}}
---
apiVersion: aiflags.dev/v1alpha1
kind: AIFeatureFlag
metadata: {{name: broken}}
spec:
  match: {{models: ["broken"]}}
  defaultVariant: only
  variants:
    - {{name: only, model: mock-error-500}}
"""


class Run:
    """What the traffic did and when, for the checks to query."""

    def __init__(self, prom):
        self.prom = prom
        self.phases = {}  # weight of the candidate -> (start, end) in Prometheus time
        self.metric_names = set()

    def window(self, start, end):
        return f"{max(1, math.ceil((end - start) * 1000))}ms"


def scraped_after(prom, moment):
    """Waits until every sidecar has been scraped after `moment`."""
    prom.wait_for('min(timestamp(up{job="aiflags-sidecar"}))', lambda t: t > moment, "a fresh scrape")


SUMMARIZER_REQUESTS = f'sum(aiflags_requests_total{{namespace="{NAMESPACE}", flag="summarizer"}})'


def send_failing(clients):
    """A request to each failing flag per sidecar: one falls back, one fails."""
    import openai

    for client in clients:
        client.chat.completions.create(model="fragile", messages=MESSAGES)
        with pytest.raises(openai.InternalServerError):
            client.chat.completions.create(model="broken", messages=MESSAGES)


def send_phase(prom, clients, first_user, sent):
    """Batches of distinct users, alternating sidecars; every fifth a stream;
    and steady failing traffic beside. Each batch waits until Prometheus has
    counted it, which paces the traffic over enough scrapes for rates (which
    start from a counter's first scrape) to have a shape."""
    user = first_user
    for _ in range(BATCHES_PER_PHASE):
        send_failing(clients)
        for _ in range(USERS_PER_BATCH):
            client = clients[user % len(clients)]
            headers = {"x-user-id": f"user-{user}"}
            if user % 5 == 0:
                for _ in client.chat.completions.create(
                        model="gpt-4o-mini", messages=MESSAGES, stream=True, extra_headers=headers):
                    pass
            else:
                client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, extra_headers=headers)
            user += 1
        sent += USERS_PER_BATCH
        prom.wait_for(SUMMARIZER_REQUESTS, lambda v, n=sent: v >= n, f"{sent} summarizer requests")
    return user, sent


def served_revision(stack):
    with urllib.request.urlopen(f"{stack.admin}/config", timeout=5) as response:
        return json.load(response)["revision"]


def unreadable_request(stack):
    """A chat request whose body is not JSON: passed through untouched."""
    request = urllib.request.Request(f"{stack.base}/v1/chat/completions", data=b"not json at all",
                                     headers={"content-type": "application/json"})
    try:
        urllib.request.urlopen(request, timeout=10).close()
    except urllib.error.HTTPError:
        pass


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    import openai

    args = ["--breaker-threshold", "2", "--breaker-cooldown", "1s"]
    with contextlib.ExitStack() as stack:
        dirs = {pod: tmp_path_factory.mktemp(pod) for pod in ("summarizer-a", "summarizer-b")}
        sidecars = {pod: stack.enter_context(running_stack(tmp, flags(90, 10), args)) for pod, tmp in dirs.items()}
        operator_port = stack.enter_context(serving_operator_metrics(OperatorMetrics(NAMESPACE, "summarizer")))
        config = scrape_config({p: s.admin.removeprefix("http://") for p, s in sidecars.items()},
                               operator_port, NAMESPACE)
        prom = stack.enter_context(running_prometheus(tmp_path_factory.mktemp("prometheus"), config))
        clients = [openai.OpenAI(base_url=f"{s.base}/v1", api_key="sk-dashboards", max_retries=0, timeout=30)
                   for s in sidecars.values()]
        result = Run(prom)

        # Warm-up: every series the phases add to exists before they start.
        send_failing(clients)
        for s in sidecars.values():
            unreadable_request(s)
        prom.wait_for(f'sum(aiflags_requests_total{{namespace="{NAMESPACE}", flag="broken"}})',
                      lambda v: v >= 2, "the warm-up")

        start = time.time()
        scraped_after(prom, start)
        user, sent = send_phase(prom, clients, 0, 0)
        result.phases[0.10] = (start, time.time())

        # The reload: sidecar b first loses its file (a failed load; it keeps
        # serving), then both get 70/30.
        old = served_revision(sidecars["summarizer-b"])
        (dirs["summarizer-b"] / "flags.yaml").unlink()
        prom.wait_for('sum(aiflags_config_reloads_total{pod="summarizer-b", result="error"})',
                      lambda v: v >= 1, "the rejected config")
        for pod in ("summarizer-a", "summarizer-b"):
            (dirs[pod] / "flags.yaml").write_text(flags(70, 30))
            prom.wait_for(f'count(aiflags_config_revision_info{{pod="{pod}", revision!="{old}"}})',
                          lambda v: v == 1, f"{pod} serving the new revision")

        start = time.time()
        scraped_after(prom, start)
        user, sent = send_phase(prom, clients, user, sent)
        result.phases[0.30] = (start, time.time())
        # A last scrape of everything, the operator stand-in included.
        scraped_after(prom, time.time())
        result.metric_names = {re.sub(r"_(bucket|sum|count)$", "", n) for n in prom.api("label/__name__/values")}
        yield result


def _cases():
    for name, board in dashboards().items():
        for panel, target in targets(board):
            yield pytest.param(board, OPENS_WITH[name], panel, target,
                               id=f"{name}: {panel['title']} [{target['refId']}]")


CHOSEN = {"namespace": NAMESPACE, "flag": "summarizer"}
# The overview is checked as it opens: every namespace, every flag ("All").
OPENS_WITH = {"aiflags-overview": {}, "aiflags-rollout": CHOSEN, "aiflags-operator": {}}


@pytest.mark.parametrize("board, chosen, panel, target", list(_cases()))
def test_every_panel_query_returns_data(run, board, chosen, panel, target):
    missing = metrics_in(target["expr"]) - run.metric_names
    assert not missing, f"no series of {sorted(missing)} in Prometheus"

    start, end = run.phases[0.10][0], run.phases[0.30][1]
    values = variable_values(board, chosen, rate_window="10s", range_window=run.window(start, end))
    expr = substitute(target["expr"], values)
    if target.get("instant"):
        result = run.prom.instant(expr, at=end)
        assert result, f"no series: {expr}"
    else:
        result = run.prom.series_range(expr, start, end)
        points = [v for series in result for _, v in series["values"] if v not in ("NaN", "+Inf", "-Inf")]
        assert points, f"no data points: {expr}"


@pytest.mark.parametrize("name", ["aiflags-overview", "aiflags-rollout"])
def test_variables_list_the_namespace_and_the_flag(run, name):
    for variable in dashboards()[name]["templating"]["list"]:
        if variable["type"] != "query":
            continue
        query = substitute(variable["query"], {"namespace": NAMESPACE})
        metric, label = query.removeprefix("label_values(").removesuffix(")").rsplit(", ", 1)
        values = run.prom.label_values(label, metric)
        assert CHOSEN[variable["name"]] in values, (query, values)


def _panel(board, title):
    return next(p for p in board["panels"] if p["title"] == title)


def _shares(prom, expr, at):
    return {s["metric"]["variant"]: float(s["value"][1]) for s in prom.instant(expr, at=at)}


@pytest.mark.parametrize("candidate", [0.10, 0.30])
def test_the_split_panels_show_the_configured_weights(run, candidate):
    start, end = run.phases[candidate]
    window = run.window(start, end)
    expected = {"stable": 1 - candidate, "candidate": candidate}
    boards = dashboards()
    rollout = boards["aiflags-rollout"]
    overview = boards["aiflags-overview"]
    observed = [
        substitute(_panel(rollout, "Configured weight vs observed share")["targets"][1]["expr"],
                   variable_values(rollout, CHOSEN, window, window)),
        substitute(_panel(overview, "Split per flag: configured vs observed")["targets"][1]["expr"],
                   variable_values(overview, CHOSEN, window, window)),
    ]
    for expr in observed:
        shares = _shares(run.prom, expr, end)
        assert shares.keys() == expected.keys(), shares
        for variant, weight in expected.items():
            assert abs(shares[variant] - weight) <= TOLERANCE, (variant, shares, expr)

    configured = substitute(_panel(rollout, "Configured weight vs observed share")["targets"][0]["expr"],
                            variable_values(rollout, CHOSEN, window, window))
    assert _shares(run.prom, configured, end) == pytest.approx(expected)


def test_the_alert_rules_load_and_match_the_real_series(run):
    groups = run.prom.api("rules")["groups"]
    assert {g["name"] for g in groups} == {"aiflags-sidecar", "aiflags-operator"}
    assert all(r["health"] == "ok" for g in groups for r in g["rules"]), groups
    active = {(a["labels"]["alertname"], a["labels"].get("flag", a["labels"].get("pod")), a["state"])
              for a in run.prom.api("alerts")["alerts"]}
    names = {(name, who) for name, who, _ in active}
    # Rules without `for` fire at once; the others are pending, which proves
    # their expressions match the sidecars' real label sets.
    assert ("AIFlagsConfigReloadFailing", "summarizer-b", "firing") in active, active
    assert ("AIFlagsVariantErrorRateHigh", "broken") in names, active
    assert ("AIFlagsFallbackRateHigh", "fragile") in names, active
    assert ("AIFlagsCircuitOpen", "summarizer-a") in names, active
    # The canary falls back rather than fail: clients never see its errors.
    assert ("AIFlagsVariantErrorRateHigh", "summarizer") not in names, active


def test_the_split_over_time_renders_to_a_picture(run, tmp_path):
    rollout = dashboards()["aiflags-rollout"]
    panel = _panel(rollout, "Configured weight vs observed share")
    start, end = run.phases[0.10][0], run.phases[0.30][1]
    series = {}
    for target in panel["targets"]:
        expr = substitute(target["expr"], variable_values(rollout, CHOSEN, "5s", "5s"))
        for s in run.prom.series_range(expr, start, end):
            label = target["legendFormat"].replace("{{variant}}", s["metric"]["variant"])
            series[label] = [(float(t), float(v)) for t, v in s["values"] if v != "NaN"]
    assert any(label.endswith("observed") for label in series), series.keys()
    out = tmp_path / "dashboard-split.png"
    render_split(series, out, f'{panel["title"]}: 10% → 30% canary, real sidecars and Prometheus')
    assert out.stat().st_size > 10_000
    if os.environ.get("AIFLAGS_UPDATE_DOCS") == "1":
        render_split(series, ROOT / "docs" / "img" / "dashboard-split.png",
                     f'{panel["title"]}: 10% → 30% canary, real sidecars and Prometheus')
