"""Fixtures for the sidecar end-to-end tests: the built binaries, a mock
upstream and a sidecar in front of it. Nothing here touches the internet: both
upstream overrides point at the mock.

Every process listens on port 0 and the test reads the address it got from its
startup log line, so no port is picked, closed and hoped to be still free.
Nothing waits on a clock: a test waits for a log line, a metric or a response,
with a patience limit that only turns a hang into a failure."""

import contextlib
import json
import os
import pathlib
import re
import socket
import subprocess
import threading
import time
import urllib.request

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
BIN_DIR = pathlib.Path(os.environ.get("AIFLAGS_BIN_DIR", ROOT / "target" / "debug"))
SIDECAR = BIN_DIR / "aiflags-sidecar"
DEV = BIN_DIR / "aiflags-dev"
# The flags the Python and Node suites share.
SHARED_FLAGS = ROOT / "tests" / "fixtures" / "flags.yaml"

# Long enough for a debug build on a busy 2-core machine; only ever reached
# when something hangs.
PATIENCE = 60


def wait_until(what, check, patience=PATIENCE, every=0.02):
    """Polls `check()` until it returns something truthy, and returns that."""
    deadline = time.monotonic() + patience
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up after {patience}s waiting for {what}")
        time.sleep(every)


class Process:
    """A child process whose merged stdout/stderr is read line by line, kept
    for `wait_for` and copied to a log file."""

    def __init__(self, name, args, log_path, preexec_fn=None):
        self.name = name
        self.log_path = log_path
        self._lines = []
        self._changed = threading.Condition()
        self._eof = False
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, text=True, encoding="utf-8", errors="replace",
                                     preexec_fn=preexec_fn)
        self._reader = threading.Thread(target=self._read, name=f"{name}-log", daemon=True)
        self._reader.start()

    def _read(self):
        with open(self.log_path, "w") as log:
            for line in self.proc.stdout:
                log.write(line)
                log.flush()
                with self._changed:
                    self._lines.append(line.rstrip("\n"))
                    self._changed.notify_all()
        with self._changed:
            self._eof = True
            self._changed.notify_all()

    def lines(self):
        with self._changed:
            return list(self._lines)

    def mark(self):
        """How many lines there are so far: `wait_for(..., since=mark)` looks
        only at lines logged after this."""
        with self._changed:
            return len(self._lines)

    def wait_for(self, what, match, patience=PATIENCE, since=0):
        """Waits for the first line (from line `since` on) for which
        `match(line)` is truthy and returns that value; fails if the process
        exits first."""
        deadline = time.monotonic() + patience
        seen = since
        with self._changed:
            while True:
                for line in self._lines[seen:]:
                    found = match(line)
                    if found:
                        return found
                seen = len(self._lines)
                if self._eof:
                    tail = "\n".join(self._lines[-20:])
                    raise AssertionError(
                        f"{self.name} exited ({self.proc.wait()}) before logging {what}:\n{tail}")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"{self.name} did not log {what} within {patience}s")
                self._changed.wait(left)

    def stop(self):
        """SIGTERM, then waits for the exit and the last log line."""
        if self.proc.poll() is None:
            self.proc.terminate()
        try:
            self.proc.wait(timeout=PATIENCE)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._reader.join(timeout=PATIENCE)


def one_variant_flag(name, model, variant="", match="", spec=""):
    """The YAML of a flag that sends every request for the model `name` to
    its one variant, `model`. `variant` adds fields to the variant (a
    provider), `match` to the match (operations), `spec` lines to the spec."""
    return f"""apiVersion: aiflags.dev/v1alpha1
kind: AIFeatureFlag
metadata: {{name: {name}}}
spec:
  match: {{models: ["{name}"]{match}}}
  defaultVariant: only
  variants:
    - {{name: only, model: {model}{variant}}}
  {spec}
"""


def log_fields(line):
    """The structured fields of one log line: `fields` of a JSON line, or the
    `key=value` pairs of a text line."""
    try:
        record = json.loads(line)
    except json.JSONDecodeError:
        return dict(re.findall(r'(\w+)=("[^"]*"|\S+)', line))
    return record.get("fields", {}) if isinstance(record, dict) else {}


def listening(message):
    """A matcher for the startup line that carries `message`; returns its fields."""
    return lambda line: log_fields(line) if message in line else None


class Stack:
    def __init__(self, sidecar, mock, addr, admin_addr, mock_addr):
        self.sidecar = sidecar
        self.mock_process = mock
        self.base = f"http://{addr}"
        self.admin = f"http://{admin_addr}"
        self.mock = f"http://{mock_addr}"


def raw_request(base, head, body=b""):
    """Sends `head` (request line and headers, without the blank line; a
    `connection: close` and the body's length are added) over a plain socket,
    for what HTTP clients refuse or normalise. Returns (status, headers, body)."""
    host, port = base.removeprefix("http://").rsplit(":", 1)
    message = head.encode("utf-8", "surrogateescape") if isinstance(head, str) else head
    message += b"\r\nconnection: close\r\ncontent-length: %d\r\n\r\n" % len(body) + body
    with socket.create_connection((host, int(port)), timeout=PATIENCE) as sock:
        sock.sendall(message)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    head, _, rest = received.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1]) if lines[0].startswith("HTTP/") else None
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return status, headers, rest


def http_status(url):
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status
    except OSError:
        return None


def start_mock(tmp, name="mock"):
    """An `aiflags-dev mock-upstream` on port 0: (its process, its address)."""
    mock = Process(f"{name} upstream", [DEV, "mock-upstream", "--listen", "127.0.0.1:0"], tmp / f"{name}.log")
    try:
        return mock, mock.wait_for("its address", listening("mock upstream listening"))["addr"]
    except BaseException:
        mock.stop()
        raise


@contextlib.contextmanager
def running_stack(tmp, flags, extra_args=(), preexec_fn=None, on_start=None):
    """A mock upstream and a sidecar serving `flags` (a path, YAML text
    written to a file in `tmp`, or a function of the mock's URL returning
    that text) in front of it. `preexec_fn` runs in the sidecar's child
    process before it starts (resource limits); `on_start(process)` is
    called as soon as the sidecar's process exists, before it listens."""
    for binary in (SIDECAR, DEV):
        if not binary.exists():
            pytest.fail(f"{binary} not found: run cargo build -p aiflags-sidecar -p aiflags-devtools "
                        "or set AIFLAGS_BIN_DIR")
    started = []
    try:
        mock, mock_addr = start_mock(tmp)
        started.append(mock)
        upstream = f"http://{mock_addr}"
        if callable(flags):
            flags = flags(upstream)
        if isinstance(flags, str):
            path = tmp / "flags.yaml"
            path.write_text(flags)
            flags = path
        sidecar = Process("sidecar", [
            SIDECAR, "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0", "--flags", str(flags),
            "--openai-upstream", upstream, "--anthropic-upstream", upstream, *extra_args,
        ], tmp / "sidecar.log", preexec_fn=preexec_fn)
        started.append(sidecar)
        if on_start:
            on_start(sidecar)
        fields = sidecar.wait_for("its addresses", listening("aiflags sidecar listening"))
        stack = Stack(sidecar, mock, fields["addr"], fields["admin_addr"], mock_addr)
        stack.flags_path = flags
        stack.listening = fields
        wait_until("the sidecar to be ready", lambda: http_status(f"{stack.admin}/readyz") == 200)
        yield stack
    finally:
        for process in reversed(started):
            process.stop()


SERIES = re.compile(r'^(?P<name>[a-z_]+)(?:\{(?P<labels>.*)\})? (?P<value>\S+)$')
LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def scrape(stack):
    """{(name, frozenset(labels)): value} from the sidecar's /metrics."""
    with urllib.request.urlopen(f"{stack.admin}/metrics", timeout=5) as response:
        assert response.headers["content-type"].startswith("text/plain")
        text = response.read().decode()
    samples = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = SERIES.match(line)
        assert m, f"unparseable exposition line: {line!r}"
        labels = frozenset(LABEL.findall(m["labels"] or ""))
        samples[(m["name"], labels)] = float(m["value"])
    return samples


def value(samples, name, **labels):
    """The sum of the series of `name` that carry `labels`; fails when none does."""
    matches = [v for (n, ls), v in samples.items() if n == name and set(labels.items()) <= ls]
    assert matches, f"no sample {name}{labels}"
    return sum(matches)


def value_or_zero(samples, name, **labels):
    """Like `value`, but a counter that has not appeared yet reads 0."""
    return sum(v for (n, ls), v in samples.items() if n == name and set(labels.items()) <= ls)


def grown(after, before, name, **labels):
    """How much a counter grew between two scrapes; a series that did not
    exist before counts from 0."""
    return value(after, name, **labels) - value_or_zero(before, name, **labels)


def settled(stack):
    """A scrape once no request is in flight: a request (a stream above all)
    is counted when its body ends, which can be just after the client read
    the last byte."""
    def idle():
        samples = scrape(stack)
        return samples if value(samples, "aiflags_active_requests") == 0 else None

    return wait_until("no request in flight", idle)


@pytest.fixture(scope="session")
def stack(tmp_path_factory):
    """One sidecar on the shared flags for the tests that read only responses
    and headers, never counters."""
    with running_stack(tmp_path_factory.mktemp("aiflags"), SHARED_FLAGS) as s:
        yield s


@pytest.fixture
def client(stack):
    import openai

    return openai.OpenAI(base_url=f"{stack.base}/v1", api_key="sk-e2e-test", max_retries=0, timeout=30)
