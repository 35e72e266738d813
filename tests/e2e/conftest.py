"""Fixtures for the sidecar end-to-end tests: the built binaries, a mock
upstream and a sidecar in front of it, on free loopback ports. Nothing here
touches the internet: both upstream overrides point at the mock."""

import contextlib
import os
import pathlib
import socket
import subprocess
import time
import urllib.request

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
BIN_DIR = pathlib.Path(os.environ.get("AIFLAGS_BIN_DIR", ROOT / "target" / "debug"))
SIDECAR = BIN_DIR / "aiflags-sidecar"
DEV = BIN_DIR / "aiflags-dev"

FLAGS = """
apiVersion: aiflags.dev/v1alpha1
kind: AIFeatureFlag
metadata: {name: chat-model}
spec:
  match: {models: ["gpt-4o-mini"], operations: [chat, completions]}
  defaultVariant: stable
  variants:
    - {name: stable, model: gpt-4o-mini}
    - {name: candidate, model: gpt-4.1-mini, params: {temperature: 0.2}}
  rollout:
    stickyBy: ["header:x-user-id", "body:user"]
    weights: {stable: 0, candidate: 100}
---
apiVersion: aiflags.dev/v1alpha1
kind: AIFeatureFlag
metadata: {name: responses-model}
spec:
  match: {models: ["gpt-4o"], operations: [responses]}
  defaultVariant: new
  variants:
    - {name: new, model: gpt-4.1}
  rollout:
    weights: {new: 100}
---
apiVersion: aiflags.dev/v1alpha1
kind: AIFeatureFlag
metadata: {name: embeddings-model}
spec:
  match: {models: ["text-embedding-3-small"]}
  defaultVariant: large
  variants:
    - {name: large, model: text-embedding-3-large}
  rollout:
    weights: {large: 100}
---
apiVersion: aiflags.dev/v1alpha1
kind: AIFeatureFlag
metadata: {name: claude-model}
spec:
  match: {models: ["claude-3-5-haiku-*"], operations: [messages]}
  defaultVariant: sonnet
  variants:
    - {name: sonnet, model: claude-sonnet-4-5}
  rollout:
    weights: {sonnet: 100}
---
apiVersion: aiflags.dev/v1alpha1
kind: AIFeatureFlag
metadata: {name: fragile-model}
spec:
  match: {models: ["fragile"]}
  defaultVariant: primary
  variants:
    - {name: primary, model: mock-error-500}
    - {name: backup, model: gpt-4o-mini}
  rollout:
    weights: {primary: 100, backup: 0}
  fallback:
    on: ["5xx", connect, timeout]
    chain: [backup]
"""


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until_ready(url, proc, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args[0]} exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"{url} not ready within {timeout}s")


class Stack:
    def __init__(self, sidecar_port, admin_port, mock_port):
        self.base = f"http://127.0.0.1:{sidecar_port}"
        self.admin = f"http://127.0.0.1:{admin_port}"
        self.mock = f"http://127.0.0.1:{mock_port}"


@contextlib.contextmanager
def running_stack(tmp, flags_yaml, extra_args=()):
    """A mock upstream and a sidecar serving `flags_yaml` in front of it."""
    if not SIDECAR.exists():
        pytest.fail(f"{SIDECAR} not found: run cargo build --bins or set AIFLAGS_BIN_DIR")
    flags = tmp / "flags.yaml"
    flags.write_text(flags_yaml)
    mock_port, port, admin_port = free_port(), free_port(), free_port()
    logs = open(tmp / "processes.log", "w")
    procs = []
    try:
        mock = subprocess.Popen(
            [DEV, "mock-upstream", "--listen", f"127.0.0.1:{mock_port}"],
            stdout=logs, stderr=logs,
        )
        procs.append(mock)
        wait_until_ready(f"http://127.0.0.1:{mock_port}/mock/requests/none", mock)
        upstream = f"http://127.0.0.1:{mock_port}"
        sidecar = subprocess.Popen(
            [SIDECAR, "--listen", f"127.0.0.1:{port}", "--admin-listen", f"127.0.0.1:{admin_port}",
             "--flags", str(flags), "--openai-upstream", upstream, "--anthropic-upstream", upstream,
             *extra_args],
            stdout=logs, stderr=logs,
        )
        procs.append(sidecar)
        wait_until_ready(f"http://127.0.0.1:{admin_port}/readyz", sidecar)
        yield Stack(port, admin_port, mock_port)
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
        logs.close()


@pytest.fixture(scope="session")
def stack(tmp_path_factory):
    with running_stack(tmp_path_factory.mktemp("aiflags"), FLAGS) as s:
        yield s


@pytest.fixture
def client(stack):
    import openai

    return openai.OpenAI(base_url=f"{stack.base}/v1", api_key="sk-e2e-test", max_retries=0, timeout=30)
