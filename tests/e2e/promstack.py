"""A real Prometheus (Debian's package) on loopback for the dashboard tests,
the dashboards' queries with their variables filled in as Grafana would, and
a stand-in for the operator's /metrics (the operator needs a Kubernetes API
server, which these tests do not have)."""

import contextlib
import http.server
import json
import pathlib
import re
import shutil
import threading
import time
import urllib.parse
import urllib.request

import yaml

from conftest import ROOT, Process, http_status, wait_until

CHART = ROOT / "charts" / "aiflags"
RULES = CHART / "alerts" / "aiflags.rules.yaml"
METRIC = re.compile(r"\baiflags_[a-z_]+")
# Longest the tests wait for Prometheus to show something: a hang guard only.
PATIENCE = 60


def dashboards():
    return {p.stem: json.loads(p.read_text()) for p in sorted((CHART / "dashboards").glob("*.json"))}


def targets(board):
    """(panel, target) for every query of every panel."""
    for panel in board["panels"]:
        for target in panel.get("targets", []):
            yield panel, target


def metrics_in(expr):
    """The aiflags metric families a query reads (histogram series folded)."""
    return {re.sub(r"_(bucket|sum|count)$", "", m) for m in METRIC.findall(expr)}


def substitute(text, values):
    """Fills `$name` / `${name}` as Grafana does. A multi-value variable set to
    All becomes its allValue regex; values are the test's choices."""
    return re.sub(r"\$\{?(\w+)\}?", lambda m: values.get(m.group(1), m.group(0)), text)


def variable_values(board, chosen, rate_window, range_window):
    values = {"__rate_interval": rate_window, "__range": range_window, "__interval": "1s"}
    for variable in board["templating"]["list"]:
        name = variable["name"]
        if name in chosen:
            values[name] = chosen[name]
        elif variable.get("includeAll"):
            values[name] = variable["allValue"]
    return values


class Prometheus:
    def __init__(self, url, proc=None):
        self.url = url
        self.proc = proc

    def stop(self):
        """Stops the server now (a test of what happens without it)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=20)

    def api(self, path, **params):
        query = urllib.parse.urlencode(params, doseq=True)
        try:
            with urllib.request.urlopen(f"{self.url}/api/v1/{path}?{query}", timeout=30) as response:
                body = json.load(response)
        except urllib.error.HTTPError as error:
            body = json.load(error)
        if body.get("status") != "success":
            raise AssertionError(f"{path} {params}: {body.get('errorType')}: {body.get('error')}")
        return body["data"]

    def instant(self, expr, at=None):
        params = {"query": expr}
        if at is not None:
            params["time"] = at
        return self.api("query", **params)["result"]

    def series_range(self, expr, start, end, step=1):
        return self.api("query_range", query=expr, start=start, end=end, step=step)["result"]

    def label_values(self, label, match):
        return self.api(f"label/{label}/values", **{"match[]": match})

    def value(self, expr):
        """The single value of a scalar-like query, or None while it has no series."""
        result = self.instant(expr)
        return float(result[0]["value"][1]) if result else None

    def wait_for(self, expr, predicate, what):
        """Queries until `predicate(value)` holds: waits on what Prometheus saw."""
        deadline = time.monotonic() + PATIENCE
        while True:
            value = self.value(expr)
            if value is not None and predicate(value):
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"Prometheus never showed {what}: {expr} = {value}")
            time.sleep(0.2)


def scrape_config(sidecars, operator_port, namespace):
    """One job per kind of target; `namespace` and `pod` are static labels,
    as a PodMonitor adds them in a cluster. The operator's job honours the
    namespace its per-flag series carry, as its ServiceMonitor must."""
    return {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(RULES)],
        "scrape_configs": [
            {
                "job_name": "aiflags-sidecar",
                "static_configs": [
                    {"targets": [admin], "labels": {"namespace": namespace, "pod": pod}}
                    for pod, admin in sidecars.items()
                ],
            },
            {
                "job_name": "aiflags-operator",
                "honor_labels": True,
                "static_configs": [
                    {"targets": [f"127.0.0.1:{operator_port}"], "labels": {"namespace": "aiflags-system"}}
                ],
            },
        ],
    }


# Prometheus's log line when its web server is up, naming the address it got.
LISTENING = re.compile(r"Listening on.*?address=\[?127\.0\.0\.1\]?:(\d+)")


@contextlib.contextmanager
def running_prometheus(tmp, config):
    """Prometheus on a port the kernel picks (`127.0.0.1:0`), read back from
    the line its log names it in: no port is chosen here and then reused."""
    binary = shutil.which("prometheus")
    if binary is None:
        raise AssertionError("prometheus not found: run scripts/setup-dashboard-deps.sh")
    (tmp / "prometheus.yml").write_text(yaml.safe_dump(config))
    prometheus = Process("prometheus", [
        binary, f"--config.file={tmp / 'prometheus.yml'}", f"--storage.tsdb.path={tmp / 'data'}",
        "--web.listen-address=127.0.0.1:0", "--web.enable-lifecycle",
    ], tmp / "prometheus.log")
    try:
        port = prometheus.wait_for("its address", lambda line: (found := LISTENING.search(line)) and found.group(1))
        base = f"http://127.0.0.1:{port}"
        wait_until("Prometheus to be ready", lambda: http_status(f"{base}/-/ready") == 200)
        yield Prometheus(base, prometheus.proc)
    finally:
        prometheus.stop()


class OperatorMetrics:
    """The operator's exposition as operator/src/metrics.rs and
    operator/src/rollout/metrics.rs write it, with counters that grow on every
    scrape. Stands in for a running operator."""

    def __init__(self, namespace, flag):
        self.namespace, self.flag = namespace, flag
        self.scrapes = 0

    def render(self):
        n = self.scrapes = self.scrapes + 1
        f = f'namespace="{self.namespace}",flag="{self.flag}"'
        lines = [
            f'aiflags_operator_reconciles_total{{result="success"}} {5 * n}',
            f'aiflags_operator_reconciles_total{{result="error"}} {n}',
            f'aiflags_operator_reconcile_errors_total{{reason="conflict"}} {n}',
            *[f'aiflags_operator_reconcile_duration_seconds_bucket{{le="{le}"}} {c * n}'
              for le, c in (("0.01", 2), ("0.1", 5), ("1", 6), ("+Inf", 6))],
            f"aiflags_operator_reconcile_duration_seconds_sum {0.2 * n}",
            f"aiflags_operator_reconcile_duration_seconds_count {6 * n}",
            *[f'aiflags_operator_flag_phase{{{f},phase="{p}"}} {int(p == "Progressing")}'
              for p in ("Healthy", "Progressing", "Paused", "Degraded", "Disabled")],
            f"aiflags_operator_flag_ready{{{f}}} 1",
            f'aiflags_operator_flag_weight_percent{{{f},variant="stable"}} 70',
            f'aiflags_operator_flag_weight_percent{{{f},variant="candidate"}} 30',
            f'aiflags_operator_config_flags{{namespace="{self.namespace}"}} 3',
            f"aiflags_operator_rollout_step{{{f}}} 2",
            f'aiflags_operator_analysis_checks_total{{{f},result="pass"}} {n}',
            f'aiflags_operator_analysis_checks_total{{{f},result="fail"}} {n // 3}',
            f"aiflags_operator_rollout_aborts_total{{{f}}} {n // 10}",
            f'aiflags_operator_webhook_admissions_total{{result="injected"}} {2 * n}',
            f'aiflags_operator_webhook_admissions_total{{result="skipped"}} {n}',
            *[f'aiflags_operator_webhook_duration_seconds_bucket{{le="{le}"}} {c * n}'
              for le, c in (("0.001", 1), ("0.01", 3), ("+Inf", 3))],
            f"aiflags_operator_webhook_duration_seconds_sum {0.01 * n}",
            f"aiflags_operator_webhook_duration_seconds_count {3 * n}",
            f'aiflags_operator_flag_proxies{{{f},state="total"}} 2',
            f'aiflags_operator_flag_proxies{{{f},state="at_revision"}} 2',
        ]
        return "\n".join(lines) + "\n"


@contextlib.contextmanager
def serving_operator_metrics(metrics):
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = metrics.render().encode()
            self.send_response(200)
            self.send_header("content-type", "text/plain; version=0.0.4")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def render_split(series_by_label, path, title):
    """Draws the split panel's data (share per variant over time) to a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 3.6), dpi=110)
    start = min(t for points in series_by_label.values() for t, _ in points)
    for label, points in sorted(series_by_label.items()):
        style = "--" if label.endswith("configured") else "-"
        ax.plot([t - start for t, _ in points], [v * 100 for _, v in points], style, label=label)
    ax.set_title(title)
    ax.set_xlabel("seconds")
    ax.set_ylabel("% of the flag's requests")
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3)
    ax.legend(loc="center right", fontsize=8)
    fig.tight_layout()
    pathlib.Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
