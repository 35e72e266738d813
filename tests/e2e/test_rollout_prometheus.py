"""Progressive delivery end to end: the operator's rollout engine and
analysis (`aiflags-dev rollout`, which runs them without a Kubernetes API
server) against a real Prometheus scraping two real sidecars in front of the
mock upstream, with the official openai SDK sending traffic all along. Time
is compressed by configuration: checks every 2 seconds, pauses of seconds.

1. The canary's upstream goes down mid-rollout: the fallback serves its users
   from the stable model (no request is lost), the fallback rate fails two
   checks, the rollout aborts and every user is back on stable.
2. A healthy canary walks every step to 100%.
3. Prometheus goes away: checks are inconclusive, the rollout holds.

The harness writes the sidecars' config file; they reload it. Every wait is
on an observable event: a line of the harness, a response, a metric."""

import contextlib
import json
import threading
import time
import uuid

import openai
import pytest

from conftest import DEV, SIDECAR, Process, http_status, listening, wait_until
from promstack import running_prometheus

NAMESPACE = "support"
INTERVAL = 2  # seconds between analysis checks
FAILURE_LIMIT = 2

FLAG = """\
apiVersion: aiflags.dev/v1alpha1
kind: AIFeatureFlag
metadata: {{name: support-bot, namespace: {namespace}}}
spec:
  match: {{models: ["gpt-4o"]}}
  defaultVariant: stable
  variants:
    - {{name: stable, model: gpt-4o}}
    - name: next
      model: gpt-4.1
      provider: {{baseUrl: "{canary_upstream}"}}
  rollout:
    stickyBy: ["header:x-user-id"]
    canary: next
    steps: {steps}
    analysis:
      interval: {interval}s
      failureLimit: {failure_limit}
      minRequests: 5
      maxErrorRate: 0.05
      maxFallbackRate: 0.1
      maxP95LatencySeconds: 5
      maxIncreaseOverStable: {{errorRate: 0.05}}
  fallback: {{chain: [stable], perAttemptTimeout: 5s}}
"""


class Traffic:
    """Users (a new `x-user-id` per request) sending chat completions through
    both sidecars until stopped; every answer is kept."""

    def __init__(self, bases):
        self.results = []  # (started, status, variant, model)
        self.errors = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._send, args=(b,), daemon=True) for b in bases]
        for thread in self._threads:
            thread.start()

    def _send(self, base):
        client = openai.OpenAI(base_url=f"{base}/v1", api_key="sk-e2e-test", max_retries=0, timeout=30)
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                raw = client.chat.completions.with_raw_response.create(
                    model="gpt-4o", messages=[{"role": "user", "content": "hello"}],
                    extra_headers={"x-user-id": uuid.uuid4().hex})
                raw.parse()
                result = (started, raw.http_response.status_code, raw.headers.get("x-aiflags-variant"),
                          raw.headers.get("x-aiflags-model"))
                with self._lock:
                    self.results.append(result)
            except Exception as error:  # every lost request is a failure of the test
                with self._lock:
                    self.errors.append(repr(error))
            # A bounded load: about 50 requests a second per sidecar.
            time.sleep(0.02)

    def since(self, moment):
        with self._lock:
            return [r for r in self.results if r[0] >= moment]

    def wait_for(self, what, count, moment=0.0):
        return wait_until(what, lambda: len(self.since(moment)) >= count and self.since(moment))

    def stop(self):
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=60)


class Harness:
    """`aiflags-dev rollout` and its JSON lines."""

    def __init__(self, process):
        self.process = process

    def records(self, kind=None):
        out = []
        for line in self.process.lines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(record, dict) and (kind is None or record.get("kind") == kind):
                out.append(record)
        return out

    def wait_for(self, what, match):
        def matching(line):
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                return None
            return record if isinstance(record, dict) and match(record) else None
        return self.process.wait_for(what, matching)

    def checks(self):
        return [r["check"] for r in self.records("check")]

    def events(self):
        return [r["reason"] for r in self.records("event")]


class Stack:
    pass


@contextlib.contextmanager
def rollout_stack(tmp, steps):
    """Two mock upstreams (stable's and the canary's own provider), two
    sidecars reading one config file, Prometheus scraping them, the harness,
    and traffic."""
    for binary in (SIDECAR, DEV):
        if not binary.exists():
            pytest.fail(f"{binary} not found: run cargo build --workspace --bins or set AIFLAGS_BIN_DIR")
    started = []
    stack = Stack()
    traffic = None
    try:
        def start(name, args):
            process = Process(name, args, tmp / f"{name}.log")
            started.append(process)
            return process

        stable_mock = start("stable-upstream", [DEV, "mock-upstream", "--listen", "127.0.0.1:0"])
        stable_url = "http://" + stable_mock.wait_for("its address", listening("mock upstream listening"))["addr"]
        stack.canary_mock = start("canary-upstream", [DEV, "mock-upstream", "--listen", "127.0.0.1:0"])
        canary_url = "http://" + stack.canary_mock.wait_for(
            "its address", listening("mock upstream listening"))["addr"]

        config = tmp / "config.json"
        sidecars = {}
        for pod in ("support-a", "support-b"):
            sidecar = start(pod, [
                SIDECAR, "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0",
                "--config-file", str(config), "--reload-interval", "200ms",
                "--openai-upstream", stable_url, "--breaker-cooldown", "1s",
            ])
            fields = sidecar.wait_for("its addresses", listening("aiflags sidecar listening"))
            wait_until(f"{pod} to be ready", lambda: http_status(f"http://{fields['admin_addr']}/readyz") == 200)
            sidecars[pod] = fields
        scrape = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "scrape_configs": [{
                "job_name": "aiflags-sidecar",
                "static_configs": [{"targets": [f["admin_addr"]], "labels": {"namespace": NAMESPACE, "pod": pod}}
                                   for pod, f in sidecars.items()],
            }],
        }
        with running_prometheus(tmp, scrape) as prometheus:
            stack.prometheus = prometheus
            flag = tmp / "flag.yaml"
            flag.write_text(FLAG.format(namespace=NAMESPACE, canary_upstream=canary_url, steps=json.dumps(steps),
                                        interval=INTERVAL, failure_limit=FAILURE_LIMIT))
            harness = start("harness", [
                DEV, "rollout", "--flag", str(flag), "--config-file", str(config),
                *[arg for f in sidecars.values() for arg in ("--sidecar", f["admin_addr"])],
                "--prometheus-url", prometheus.url, "--tick", "200ms",
            ])
            stack.harness = Harness(harness)
            traffic = Traffic([f"http://{f['addr']}" for f in sidecars.values()])
            stack.traffic = traffic
            yield stack
    finally:
        if traffic is not None:
            traffic.stop()
        for process in reversed(started):
            process.stop()


def served(harness, weights):
    """Waits until the harness wrote a config with `weights` (basis points,
    stable then canary) and every sidecar serves it; returns when that was seen."""
    config = harness.wait_for(f"a config with weights {weights}", lambda r: r["kind"] == "config"
                              and r["weights"] == weights)
    harness.wait_for(f"both sidecars at {config['revision']}", lambda r: r["kind"] == "proxies"
                     and r["proxies"] == {"atRevision": 2, "total": 2, "revision": config["revision"]})
    return time.monotonic()


def test_a_failing_canary_aborts_within_the_failure_limit_and_loses_no_request(tmp_path):
    with rollout_stack(tmp_path, [{"weight": 50, "pause": "60s"}, {"weight": 100}]) as stack:
        harness, traffic = stack.harness, stack.traffic
        served(harness, [5000, 5000])
        first = harness.wait_for("a passing check", lambda r: r["kind"] == "check"
                                 and r["check"]["result"] == "Pass")
        assert first["check"]["canary"]["requests"] >= 5

        # The canary's provider goes down.
        stack.canary_mock.stop()
        down = time.monotonic()
        checks_before = len(harness.checks())
        settled = harness.wait_for("the rollout to settle", lambda r: r["kind"] == "settled")
        aborted_at = time.monotonic()

        rollout = settled["status"]["rollout"]
        assert rollout["state"] == "Aborted"
        assert rollout["canaryWeight"] == 0
        assert settled["status"]["failedChecks"] == FAILURE_LIMIT
        aborted = next(c for c in settled["status"]["conditions"] if c["type"] == "Aborted")
        assert (aborted["status"], aborted["reason"]) == ("True", "AnalysisFailed")
        # The abort comes at the failureLimit-th failed check after the failure:
        # at most one check (the one whose interval straddles the failure)
        # passes before them, so it comes within (failureLimit + 1) intervals
        # of checks, each judging what Prometheus scraped.
        after = harness.checks()[checks_before:]
        assert [c["result"] for c in after].count("Fail") == FAILURE_LIMIT, after
        assert len(after) <= FAILURE_LIMIT + 1, after
        assert all("fallback rate" in c["message"] for c in after if c["result"] == "Fail"), after
        assert harness.events()[-1] == "RolloutAborted"
        print(f"aborted {aborted_at - down:.1f}s after the canary's upstream went down "
              f"(failureLimit {FAILURE_LIMIT} x interval {INTERVAL}s)")

        # Every user is back on stable once the sidecars serve the abort.
        back = served(harness, [10_000, 0])
        later = traffic.wait_for("requests after the abort is served", 50, back)
        assert {(variant, model) for _, _, variant, model in later} == {("stable", "gpt-4o")}

        # Meanwhile the fallback served the canary's users from stable.
        rescued = [r for r in traffic.since(down) if r[2] == "next" and r[3] == "gpt-4o"]
        assert rescued, "canary requests fell back to the stable model"
    assert traffic.errors == []
    assert all(status == 200 for _, status, _, _ in traffic.results)


def test_a_healthy_canary_walks_every_step_to_100_percent(tmp_path):
    steps = [{"weight": 10, "pause": "2s"}, {"weight": 50, "pause": "2s"}, {"weight": 100}]
    with rollout_stack(tmp_path, steps) as stack:
        harness, traffic = stack.harness, stack.traffic
        settled = harness.wait_for("the rollout to settle", lambda r: r["kind"] == "settled")
        rollout = settled["status"]["rollout"]
        assert (rollout["state"], rollout["canaryWeight"], settled["status"]["currentStep"]) == ("Completed", 100, 3)
        # (Checks before Prometheus has two scrapes of the canary's series are
        # inconclusive: they hold the step, they do not fail it.)
        steps_taken = [e for e in harness.events() if not e.startswith("Analysis")]
        assert steps_taken == ["RolloutStarted", "StepAdvanced", "StepAdvanced", "RolloutCompleted"]
        checks = harness.checks()
        # A passing check at each step with a pause let it advance; none failed.
        assert {c["step"] for c in checks if c["result"] == "Pass"} >= {1, 2}, checks
        assert all(c["result"] != "Fail" for c in checks), checks
        weights = [r["weights"] for r in harness.records("config")]
        assert weights == [[9000, 1000], [5000, 5000], [0, 10_000]]

        done = served(harness, [0, 10_000])
        later = traffic.wait_for("requests after the promotion is served", 50, done)
        assert {(variant, model) for _, _, variant, model in later} == {("next", "gpt-4.1")}
    assert traffic.errors == []


def test_without_prometheus_checks_are_inconclusive_and_the_rollout_holds(tmp_path):
    with rollout_stack(tmp_path, [{"weight": 10, "pause": "6s"}, {"weight": 100}]) as stack:
        harness = stack.harness
        # Prometheus goes away as soon as the proxies serve step 1: its pause
        # (6s) runs, with a check due every 2s.
        harness.wait_for("step 1 served", lambda r: r["kind"] == "status" and r["status"]["reason"] == "StepPause")
        stack.prometheus.stop()
        unanswered = f"Prometheus at {stack.prometheus.url} could not be asked"
        failed_to_ask = lambda: [c for c in harness.checks() if unanswered in c["message"]]
        wait_until("four checks Prometheus could not answer", lambda: len(failed_to_ask()) >= 4)
        assert all(c["result"] == "Inconclusive" for c in failed_to_ask())
        # Past the pause, and still at step 1: no promotion without a passing check.
        status = [r["status"] for r in harness.records("status")][-1]
        assert (status["state"], status["step"], status["canaryWeight"]) == ("Progressing", 1, 10)
        assert status["reason"] == "AnalysisInconclusive"
        assert "the pause is over; waiting for a passing analysis check" in status["message"]
        assert unanswered in status["message"]
        assert "StepAdvanced" not in harness.events()
        assert "AnalysisInconclusive" in harness.events()
        assert [r["weights"] for r in harness.records("config")] == [[9000, 1000]]
    assert stack.traffic.errors == []
