"""How a body is encoded never decides whether a flag applies. Against a
Disabled flag (the kill switch: every matching request gets the default
variant), bodies compressed with gzip, deflate, br or zstd, with a byte
order mark, with lone surrogate escapes (as JavaScript's JSON.stringify
writes a split emoji) in the prompt or in a member name, or with bytes after
the JSON all reach the upstream as the default variant's model. A body the
sidecar cannot decode passes through untouched, and is counted.

The SDKs send none of these shapes, so the requests are built by hand."""

import gzip
import hashlib
import json
import urllib.error
import urllib.request
import zlib

import pytest

from conftest import log_fields, running_stack, scrape, value_or_zero

FLAGS = """
apiVersion: aiflags.dev/v1alpha1
kind: AIFeatureFlag
metadata: {name: kill-switch}
spec:
  state: Disabled
  match: {models: ["gpt-4o"]}
  defaultVariant: safe
  variants:
    - {name: safe, model: gpt-4o-mini}
    - {name: risky, model: gpt-5}
  rollout:
    weights: {safe: 0, risky: 100}
"""

PLAIN = json.dumps({"model": "gpt-4o", "user": "u1",
                    "messages": [{"role": "user", "content": "Summarise this, please. " * 40}]}).encode()
# json.dumps escapes a lone surrogate as \\ud83d, as JSON.stringify does.
LONE_IN_PROMPT = json.dumps({"model": "gpt-4o", "messages": [{"role": "user", "content": "split emoji \ud83d"}]})
LONE_IN_NAME = json.dumps({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}],
                           "metadata": {"tag\ud83d": "x"}, "\udc00": 1})


def raw_deflate(data):
    compressor = zlib.compressobj(wbits=-15)
    return compressor.compress(data) + compressor.flush()


def brotli(data):
    import brotli as br

    return br.compress(data)


def zstd(data):
    import zstandard

    return zstandard.ZstdCompressor().compress(data)


# (name, body bytes, content-encoding, how the mock may read what it
# receives: `strict` JSON, or `lenient` for what only tolerant parsers take)
EITHER = ("strict", "lenient")
BODIES = [
    ("gzip", gzip.compress(PLAIN), "gzip", ("strict",)),
    ("deflate", zlib.compress(PLAIN), "deflate", ("strict",)),
    ("raw deflate", raw_deflate(PLAIN), "deflate", ("strict",)),
    ("br", brotli(PLAIN), "br", ("strict",)),
    ("zstd", zstd(PLAIN), "zstd", ("strict",)),
    ("gzip then br", brotli(gzip.compress(PLAIN)), "gzip, br", ("strict",)),
    ("byte order mark", b"\xef\xbb\xbf" + PLAIN, None, ("strict",)),
    ("lone surrogate in the prompt", LONE_IN_PROMPT.encode(), None, EITHER),
    ("lone surrogate in a member name", LONE_IN_NAME.encode(), None, EITHER),
    ("trailing bytes", PLAIN + b"\n\x00 trailing garbage {", None, ("lenient",)),
    ("gzip with a byte order mark", gzip.compress(b"\xef\xbb\xbf" + PLAIN), "gzip", ("strict",)),
]


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    with running_stack(tmp_path_factory.mktemp("encodings"), FLAGS) as s:
        yield s


def post(stack, body, encoding):
    headers = {"content-type": "application/json", "authorization": "Bearer sk-app"}
    if encoding:
        headers["content-encoding"] = encoding
    request = urllib.request.Request(f"{stack.base}/v1/chat/completions", data=body, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


@pytest.mark.parametrize("name,body,encoding,read_as", BODIES, ids=[b[0] for b in BODIES])
def test_the_kill_switch_holds_whatever_the_encoding(stack, name, body, encoding, read_as):
    before = scrape(stack)
    status, headers, reply = post(stack, body, encoding)
    assert status == 200, reply
    assert headers["x-aiflags-flag"] == "kill-switch"
    assert headers["x-aiflags-variant"] == "safe"
    assert headers["x-aiflags-model"] == "gpt-4o-mini"
    assert headers["x-mock-received-model"] == "gpt-4o-mini", f"{name}: the flag was bypassed"
    # Decoded bodies travel decoded, without the coding that no longer applies.
    assert headers["x-mock-content-encoding"] is None
    assert headers["x-mock-body-json"] in read_as
    assert json.loads(reply)["model"] == "gpt-4o-mini"
    after = scrape(stack)
    assert value_or_zero(after, "aiflags_unparsed_requests_total") == \
        value_or_zero(before, "aiflags_unparsed_requests_total")


UNDECODABLE = [
    ("compress", b"\x1f\x9d\x90" + PLAIN[:40], "compress"),
    ("corrupt gzip", b"\x1f\x8b\x08\x00" + PLAIN[:40], "gzip"),
]


@pytest.mark.parametrize("name,body,encoding", UNDECODABLE, ids=[u[0] for u in UNDECODABLE])
def test_a_body_that_cannot_be_decoded_passes_through_untouched_and_is_counted(stack, name, body, encoding):
    before = scrape(stack)
    status, headers, _ = post(stack, body, encoding)
    assert status == 200
    assert headers["x-aiflags-flag"] is None, "not flagged: the sidecar could not read it"
    assert headers["x-mock-content-encoding"] == encoding
    assert headers["x-mock-body-sha256"] == hashlib.sha256(body).hexdigest(), "the body was changed"
    after = scrape(stack)
    counted = value_or_zero(after, "aiflags_unparsed_requests_total", reason="encoding") - \
        value_or_zero(before, "aiflags_unparsed_requests_total", reason="encoding")
    assert counted == 1
    warning = stack.sidecar.wait_for(
        "the unreadable request's warning",
        lambda line: "request body not readable" in line and log_fields(line).get("reason") == '"encoding"')
    assert warning
