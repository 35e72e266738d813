"""Local mode (`--flags FILE`) keeps the last valid version of every flag, as
the operator's compiled path does: a YAML syntax error or a schema error in
an edit costs only the flags it touches, which keep serving as they were;
and a file caught half-written is never applied."""

import array
import errno
import fcntl
import json
import os
import pathlib
import termios
import threading
import time
import urllib.request

from conftest import PATIENCE, log_fields, running_stack, scrape, value_or_zero, wait_until


def flag(name, stable, candidate, model="gpt-4o-mini"):
    return f"""apiVersion: aiflags.dev/v1alpha1
kind: AIFeatureFlag
metadata: {{name: {name}}}
spec:
  match: {{models: ["{model}"]}}
  defaultVariant: stable
  variants:
    - {{name: stable, model: {model}}}
    - {{name: candidate, model: {model}-next}}
  rollout:
    weights: {{stable: {stable}, candidate: {candidate}}}
"""


def manifests(*docs):
    return "---\n".join(docs)


def config(stack):
    with urllib.request.urlopen(f"{stack.admin}/config", timeout=5) as response:
        return json.load(response)


def variant(stack, model):
    import openai

    sdk = openai.OpenAI(base_url=f"{stack.base}/v1", api_key="sk-e2e", max_retries=0, timeout=30)
    raw = sdk.chat.completions.with_raw_response.create(model=model, messages=[{"role": "user", "content": "hi"}])
    return raw.headers.get("x-aiflags-variant")


def not_loaded(line):
    """A warning that an edit of a flag manifest was not taken."""
    return "keeps serving" in line and ("not loaded" in line or "does not compile" in line)


def test_a_broken_edit_keeps_each_flag_it_touches_at_its_last_valid_version(tmp_path):
    original = manifests(flag("alpha", 100, 0, "model-a"), flag("beta", 100, 0, "model-b"),
                         flag("gamma", 100, 0, "model-c"))
    with running_stack(tmp_path, original, ["--reload-interval", "100ms"]) as stack:
        served = config(stack)
        assert len(served["flags"]) == 3

        # 1. Not YAML at all: every flag keeps serving, the config is unchanged.
        mark = stack.sidecar.mark()
        stack.flags_path.write_text("apiVersion: aiflags.dev/v1alpha1\nkind: [AIFeatureFlag\nspec: {")
        stack.sidecar.wait_for("the broken edit's warning", not_loaded, since=mark)
        assert [variant(stack, m) for m in ("model-a", "model-b", "model-c")] == ["stable"] * 3
        after = config(stack)
        assert (after["revision"], after["flags"]) == (served["revision"], served["flags"])

        # 2. A syntax error in alpha's document, a valid change to beta, and a
        # schema error (weights summing to 90) in gamma's: beta moves, alpha
        # and gamma keep their last valid versions.
        mark = stack.sidecar.mark()
        broken_alpha = flag("alpha", 0, 100, "model-a").replace("weights: {", "weights: {{[")
        bad_gamma = flag("gamma", 0, 90, "model-c")
        stack.flags_path.write_text(manifests(broken_alpha, flag("beta", 0, 100, "model-b"), bad_gamma))
        stack.sidecar.wait_for("the syntax error's warning",
                               lambda line: not_loaded(line) and "alpha" not in line and "document" in line,
                               since=mark)
        stack.sidecar.wait_for("the schema error's warning",
                               lambda line: not_loaded(line) and "gamma" in line, since=mark)
        wait_until("beta's new version", lambda: variant(stack, "model-b") == "candidate")
        assert variant(stack, "model-a") == "stable"
        assert variant(stack, "model-c") == "stable"
        flags = {f["key"]: f for f in config(stack)["flags"]}
        assert sorted(flags) == ["alpha", "beta", "gamma"]
        assert flags["alpha"] == next(f for f in served["flags"] if f["key"] == "alpha")
        assert flags["gamma"] == next(f for f in served["flags"] if f["key"] == "gamma")
        assert flags["beta"]["weights"] == [0, 10000]


# --- A half-written file -----------------------------------------------------

LABELS = b'app="e2e"\n'


def unread(fd):
    """Bytes written to a pipe that its reader has not read yet."""
    count = array.array("i", [0])
    fcntl.ioctl(fd, termios.FIONREAD, count)
    return count[0]


class PollGate:
    """Steps the sidecar's config polls one at a time.

    Each poll reads the flags file first and the pod-labels file last. Made
    a FIFO, the labels file holds every poll at its `open` until the test
    opens the other end: a poll the test holds has read the flags file, and
    the next poll starts only after the test releases this one. So the test
    knows exactly which content each poll saw, without a clock."""

    def __init__(self, path, pid):
        """`pid()` names the sidecar's process, once it exists."""
        self.path = pathlib.Path(path)
        self._pid = pid
        self._fd = None

    def _open(self):
        try:
            return os.open(self.path, os.O_WRONLY | os.O_NONBLOCK)
        except OSError as e:
            if e.errno == errno.ENXIO:  # no poll is waiting at the labels file yet
                return None
            raise

    def hold(self):
        """Waits for the next poll to reach the labels file, and keeps it there."""
        self._fd = wait_until("a config poll to reach the pod-labels file", self._open)

    def release(self):
        """Lets the held poll finish; returns once it has closed the labels
        file, so the next `hold` cannot catch this poll's tail."""
        os.write(self._fd, LABELS)
        # Read means opened: from here on its descriptor shows in /proc until
        # it has read to the end, which our close gives it.
        wait_until("the poll to read the pod labels", lambda: unread(self._fd) == 0)
        os.close(self._fd)
        self._fd = None
        wait_until("the poll to close the pod-labels file", lambda: not self._open_in_sidecar())

    def step(self):
        self.hold()
        self.release()

    def _open_in_sidecar(self):
        fds = pathlib.Path(f"/proc/{self._pid()}/fd")
        for fd in fds.iterdir():
            try:
                if os.readlink(fd) == str(self.path):
                    return True
            except FileNotFoundError:
                pass
        return False

    def run_freely(self, process):
        """Releases every poll until `process` exits (its shutdown waits for
        the poll in progress)."""
        def loop():
            while process.poll() is None:
                fd = self._open()
                if fd is None:
                    time.sleep(0.005)
                    continue
                try:
                    os.write(fd, LABELS)
                except BrokenPipeError:
                    pass
                os.close(fd)

        threading.Thread(target=loop, name="poll-gate", daemon=True).start()


def test_a_half_written_file_is_never_applied(tmp_path):
    original = flag("alpha", 100, 0, "model-a")
    complete = manifests(flag("alpha", 0, 100, "model-a"), flag("beta", 0, 100, "model-b"))
    # What an editor's save can leave for a moment: the first document
    # written, the second not yet; valid on its own.
    half = complete[:complete.index("---")]
    labels = tmp_path / "labels"
    os.mkfifo(labels)
    sidecar = {}
    gate = PollGate(labels, lambda: wait_until("the sidecar's pid", lambda: sidecar.get("pid")))
    # The first load runs before the sidecar listens: let it through meanwhile.
    first = threading.Thread(target=gate.step, name="first-poll")
    first.start()
    args = ["--reload-interval", "10ms", "--pod-labels", str(labels)]
    with running_stack(tmp_path, original, args, on_start=lambda p: sidecar.update(pid=p.proc.pid)) as stack:
        first.join(PATIENCE)
        try:
            reloads = value_or_zero(scrape(stack), "aiflags_config_reloads_total", result="ok")
            assert reloads == 1
            mark = stack.sidecar.mark()

            gate.hold()                       # poll p has read the original
            stack.flags_path.write_text(half)
            gate.release()
            gate.hold()                       # poll p+1 has read the half-written file ...
            stack.flags_path.write_text(complete)
            gate.release()                    # ... and only it
            gate.step()                       # p+2 reads the complete file
            applied = None
            while applied is None:
                gate.step()                   # p+3 reads it again: applied
                samples = scrape(stack)
                if value_or_zero(samples, "aiflags_config_reloads_total", result="ok") > reloads:
                    applied = samples
            assert value_or_zero(applied, "aiflags_config_reloads_total", result="ok") == reloads + 1
        finally:
            gate.run_freely(stack.sidecar.proc)
        loaded = [log_fields(line) for line in stack.sidecar.lines()[mark:] if "config loaded" in line]
        assert [fields["flags"] for fields in loaded] == ["2"], loaded
        assert sorted(f["key"] for f in config(stack)["flags"]) == ["alpha", "beta"]
        assert variant(stack, "model-a") == "candidate"
        assert variant(stack, "model-b") == "candidate"

