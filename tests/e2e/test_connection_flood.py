"""A flood of idle connections cannot take the sidecar down. With only 256
file descriptors (RLIMIT_NOFILE, as a tight container might give it), more
silent connections than either listener's cap are opened to both the data
and the admin port; then an app's request through a flag, the kubelet's
/readyz and a config reload all still work. At a listener's cap the sidecar
evicts its oldest idle connection (counted in
`aiflags_connections_shed_total`), and it never runs out of descriptors."""

import os
import resource
import signal
import socket
import urllib.error
import urllib.request

import pytest

from conftest import PATIENCE, http_status, running_stack, scrape, value_or_zero, wait_until

FD_LIMIT = 256
# More than either cap, and together more than the descriptor limit.
OVER_CAP = 150

FLAGS = """
apiVersion: aiflags.dev/v1alpha1
kind: AIFeatureFlag
metadata: {name: flooded}
spec:
  match: {models: ["gpt-4o-mini"]}
  defaultVariant: stable
  variants:
    - {name: stable, model: gpt-4o-mini}
    - {name: candidate, model: gpt-4.1-mini}
  rollout:
    weights: {stable: %d, candidate: %d}
"""


def low_fd_limit():
    resource.setrlimit(resource.RLIMIT_NOFILE, (FD_LIMIT, FD_LIMIT))


def connect_idle(base, count):
    """`count` connections that never send a byte, opened back to back."""
    host, port = base.removeprefix("http://").rsplit(":", 1)
    sockets = []
    for _ in range(count):
        sock = socket.create_connection((host, int(port)), timeout=10)
        sock.setblocking(False)
        sockets.append(sock)
    return sockets


def closed_by_peer(sock):
    """Whether the sidecar has closed this silent connection."""
    try:
        return sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
    except BlockingIOError:
        return False
    except ConnectionResetError:
        return True


def shed(samples, listener, action):
    return value_or_zero(samples, "aiflags_connections_shed_total", listener=listener, action=action)


def all_shed(stack, listener, count):
    """Waits until `count` connections past the cap have each been given a
    place (an idle one evicted) or refused; returns the last scrape. A scrape
    caught in the admin flood's wake may itself be refused: that is a
    scrape to repeat, not an answer."""
    def done():
        try:
            samples = scrape(stack)
        except urllib.error.HTTPError as e:
            if e.code == 503:
                return None
            raise
        return samples if shed(samples, listener, "evicted") + shed(samples, listener, "refused") >= count else None

    return wait_until(f"{count} connections past the {listener} cap to be handled", done)


@pytest.fixture
def flooded(tmp_path):
    # Silent connections may stay as long as they like, so only eviction can
    # make room; reloads are polled often so the test does not wait for one.
    args = ["--reload-interval", "100ms", "--first-byte-timeout", "10m", "--idle-timeout", "10m"]
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 4 * OVER_CAP:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 4096), hard))
    with running_stack(tmp_path, FLAGS % (100, 0), args, preexec_fn=low_fd_limit) as stack:
        yield stack


def test_an_idle_flood_on_both_ports_leaves_requests_probes_and_reloads_working(flooded):
    import openai

    data_cap, admin_cap = int(flooded.listening["data_cap"]), int(flooded.listening["admin_cap"])
    assert data_cap + OVER_CAP + admin_cap + OVER_CAP > FD_LIMIT
    data_flood = connect_idle(flooded.base, data_cap + OVER_CAP)
    admin_flood = connect_idle(flooded.admin, admin_cap + OVER_CAP)
    try:
        # Each connection past a cap made room by evicting the oldest idle one.
        assert shed(all_shed(flooded, "data", OVER_CAP), "data", "evicted") > 0
        assert shed(all_shed(flooded, "admin", OVER_CAP), "admin", "evicted") > 0
        assert closed_by_peer(data_flood[0]) and closed_by_peer(admin_flood[0]), "the oldest was kept"
        assert not closed_by_peer(data_flood[-1]), "the newest was evicted"

        sdk = openai.OpenAI(base_url=f"{flooded.base}/v1", api_key="sk-e2e", max_retries=0, timeout=30)
        raw = sdk.chat.completions.with_raw_response.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "still there?"}])
        assert raw.headers["x-aiflags-variant"] == "stable"
        assert raw.parse().model == "gpt-4o-mini"
        assert http_status(f"{flooded.admin}/readyz") == 200

        before = scrape(flooded)
        reloads = value_or_zero(before, "aiflags_config_reloads_total", result="ok")
        flooded.flags_path.write_text(FLAGS % (0, 100))
        wait_until("the edited flags to load",
                   lambda: value_or_zero(scrape(flooded), "aiflags_config_reloads_total", result="ok") > reloads)
        raw = sdk.chat.completions.with_raw_response.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "and now?"}])
        assert raw.headers["x-aiflags-variant"] == "candidate"
        with urllib.request.urlopen(f"{flooded.admin}/config", timeout=5) as response:
            assert b'"candidate"' in response.read()
    finally:
        for sock in data_flood + admin_flood:
            sock.close()
    problems = [line for line in flooded.sidecar.lines()
                if "Too many open files" in line or "os error 24" in line or "accept failed" in line]
    assert not problems, problems


@pytest.mark.parametrize("port", ["admin", "data"])
def test_a_request_right_behind_a_burst_of_silent_connections_is_served(flooded, port):
    """Only when every connection is busy may a new one be refused. Here a
    cap's worth of silent connections arrives at once (queued while the
    sidecar is stopped), and right behind them the kubelet's probe or an
    app's request: it must evict one of them, not be turned away."""
    cap = int(flooded.listening[f"{port}_cap"])
    base = flooded.admin if port == "admin" else flooded.base
    request = "GET /readyz HTTP/1.1\r\nhost: sidecar\r\n\r\n" if port == "admin" else (
        "GET /v1/models HTTP/1.1\r\nhost: sidecar\r\n\r\n")
    pid = flooded.sidecar.proc.pid
    os.kill(pid, signal.SIGSTOP)
    try:
        burst = connect_idle(base, cap)
        host, port_number = base.removeprefix("http://").rsplit(":", 1)
        behind = socket.create_connection((host, int(port_number)), timeout=PATIENCE)
        behind.sendall(request.encode())
    finally:
        os.kill(pid, signal.SIGCONT)
    try:
        status_line = behind.makefile("rb").readline()
    finally:
        behind.close()
        for sock in burst:
            sock.close()
    assert status_line.startswith(b"HTTP/1.1 200"), status_line


# Silent connections queued at once while the sidecar is stopped: more than
# the standard library's listen backlog (128) holds, within the sidecar's
# (1,024).
BURST = 300
# Descriptors the sidecar holds besides connections, at the least (an idle
# one lists 13 in /proc/PID/fd: stdio, its listeners, the runtime's epolls,
# eventfd, signal pipe and sockets).
OWN_FDS = 12


@pytest.mark.parametrize("port", ["admin", "data"])
def test_a_burst_past_the_cap_cannot_outrun_its_evictions(flooded, port):
    """Both listeners full of silent connections, then a burst past one
    cap, queued while the sidecar is stopped (more than a default listen
    backlog holds) and accepted back to back: each new connection waits for
    the place of the one it evicted, and so few wait at once that the
    descriptors never run out (a burst of this size waiting all at once
    would need more than the limit)."""
    caps = {name: int(flooded.listening[f"{name}_cap"]) for name in ("data", "admin")}
    bases = {"data": flooded.base, "admin": flooded.admin}
    assert sum(caps.values()) + BURST + OWN_FDS > FD_LIMIT
    # One past each cap: once it is counted, everything before it is open.
    full = {name: connect_idle(bases[name], caps[name] + 1) for name in caps}
    try:
        for name in caps:
            all_shed(flooded, name, 1)
        pid = flooded.sidecar.proc.pid
        os.kill(pid, signal.SIGSTOP)
        try:
            burst = connect_idle(bases[port], BURST)
        finally:
            os.kill(pid, signal.SIGCONT)
        full[port] += burst
        all_shed(flooded, port, 1 + BURST)
        assert not closed_by_peer(burst[-1]), "the newest was evicted"
        assert http_status(f"{flooded.admin}/readyz") == 200
    finally:
        for sock in full["data"] + full["admin"]:
            sock.close()
    problems = [line for line in flooded.sidecar.lines()
                if "Too many open files" in line or "os error 24" in line or "accept failed" in line]
    assert not problems, problems
