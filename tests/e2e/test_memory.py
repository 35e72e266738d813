"""What a large request costs the sidecar in memory: its peak resident set
(VmHWM, read from /proc) grows by a small multiple of the body's size, not
by the size of a parsed JSON tree. An array of small scalars is the worst
case for a parser that builds values: each two-byte number would become a
32-byte node.

A memory bound, not a timing: the numbers printed (run with -s) are the ones
docs/benchmark.md records under "Memory per request".

The body is the one the openai SDK sends for `embeddings.create(input=...)`
(compact JSON), built as bytes: the SDK's own pass over 15 million inputs
takes minutes of Python time that would measure nothing."""

import pathlib
import urllib.request

import pytest

from conftest import running_stack

FLAGS = """
apiVersion: aiflags.dev/v1alpha1
kind: AIFeatureFlag
metadata: {name: embedder}
spec:
  match: {models: ["text-embedding-3-small"]}
  defaultVariant: large
  variants:
    - {name: large, model: text-embedding-3-large}
"""

# Peak growth allowed per byte of body: the body read once, a spliced copy
# for the upstream, and headroom for the allocator.
MAX_GROWTH_PER_BYTE = 3


def peak_rss(pid):
    """The process's peak resident set size (VmHWM), in bytes."""
    for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM in /proc/<pid>/status")


def small_scalars():
    """About 30 MB of JSON: 15 million one-digit token ids in one input."""
    return b"[" + b"0,1,2,3,4,5,6,7,8,9," * 1_499_999 + b"0,1,2,3,4,5,6,7,8,9]"


def token_id_batch():
    """About 13.7 MB of JSON: 2,048 inputs of 1,115 five-digit token ids."""
    rows = (",".join(str(10_000 + (row * 7_919 + i * 104_729) % 90_000) for i in range(1_115))
            for row in range(2_048))
    return ("[" + ",".join(f"[{row}]" for row in rows) + "]").encode()


CASES = [("30 MB of small scalars", small_scalars), ("13.7 MB batch of token ids", token_id_batch)]


def embed(stack, tokens):
    body = b'{"model":"text-embedding-3-small","input":' + tokens + b',"encoding_format":"base64"}'
    request = urllib.request.Request(f"{stack.base}/v1/embeddings", data=body,
                                     headers={"content-type": "application/json", "authorization": "Bearer sk-e2e"})
    with urllib.request.urlopen(request, timeout=120) as response:
        response.read()
        return len(body), response.headers


@pytest.mark.parametrize("name,make_input", CASES, ids=[c[0] for c in CASES])
def test_a_large_body_costs_a_small_multiple_of_its_size(tmp_path, name, make_input):
    import openai

    tokens = make_input()
    with running_stack(tmp_path, FLAGS) as stack:
        pid = stack.sidecar.proc.pid
        # A small request first, through the SDK: the baseline includes the
        # upstream connection, the runtime's buffers and the metric series.
        sdk = openai.OpenAI(base_url=f"{stack.base}/v1", api_key="sk-e2e", max_retries=0, timeout=30)
        sdk.embeddings.create(model="text-embedding-3-small", input=[1, 2, 3])
        before = peak_rss(pid)
        body, headers = embed(stack, tokens)
        after = peak_rss(pid)
    assert headers["x-mock-received-model"] == "text-embedding-3-large", "not through the flag"
    growth = after - before
    print(f"\n{name}: body {body / 1e6:.1f} MB, peak RSS {before / 1e6:.1f} -> {after / 1e6:.1f} MB, "
          f"growth {growth / 1e6:.1f} MB = {growth / body:.2f}x the body")
    assert growth <= MAX_GROWTH_PER_BYTE * body, \
        f"{name}: peak RSS grew {growth / 1e6:.0f} MB for a {body / 1e6:.1f} MB body"
