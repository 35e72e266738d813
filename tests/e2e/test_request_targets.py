"""Request targets that must never reach an upstream: `OPTIONS *` (which
would go to the upstream host's port 80 with the app's key) and paths that
step out of a provider's path prefix with `.`/`..` segments, literal or
percent-encoded, or with encoded slashes. Sent over a raw socket, since HTTP
clients normalise them away. Each gets a 400 `aiflags_error` naming the
problem, and the mock upstream sees nothing."""

import json
import urllib.request

import pytest

from conftest import one_variant_flag, raw_request, running_stack

def flags(mock):
    return one_variant_flag("target-probe", "target-probe-variant", variant=f', provider: {{baseUrl: "{mock}/openai"}}')


BODY = json.dumps({"model": "target-probe", "messages": [{"role": "user", "content": "hi"}]}).encode()

NOT_A_PATH = "is not a path"
DOT_SEGMENT = "dot segment or an encoded slash"
BAD_TARGETS = [
    ("OPTIONS", "*", NOT_A_PATH),
    ("POST", "/v1/../v1/chat/completions", DOT_SEGMENT),
    ("POST", "/v1/chat/../../admin", DOT_SEGMENT),
    ("POST", "/v1/./chat/completions", DOT_SEGMENT),
    ("POST", "/v1/%2e%2e/v1/chat/completions", DOT_SEGMENT),
    ("POST", "/v1/%2E%2e/chat/completions", DOT_SEGMENT),
    ("POST", "/v1/.%2E/chat/completions", DOT_SEGMENT),
    ("GET", "/v1/models/..", DOT_SEGMENT),
    ("POST", "/v1/chat%2fcompletions", DOT_SEGMENT),
    ("POST", "/v1/chat%2Fcompletions/..%2f..%2fadmin", DOT_SEGMENT),
    ("POST", "/v1/chat%5ccompletions", DOT_SEGMENT),
]


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    with running_stack(tmp_path_factory.mktemp("targets"), flags) as s:
        yield s


def mock_requests(stack):
    """Every request the mock counted, whatever its model."""
    counts = {}
    for model in ("", "target-probe", "target-probe-variant"):
        with urllib.request.urlopen(f"{stack.mock}/mock/requests/{model}", timeout=5) as response:
            counts[model] = json.load(response)["requests"]
    return counts


@pytest.mark.parametrize("method,target,problem", BAD_TARGETS, ids=[f"{m} {t}" for m, t, _ in BAD_TARGETS])
def test_a_bad_request_target_is_a_400_that_reaches_no_upstream(stack, method, target, problem):
    before = mock_requests(stack)
    head = f"{method} {target} HTTP/1.1\r\nhost: api.openai.com\r\nauthorization: Bearer sk-app\r\n" \
           "content-type: application/json"
    status, headers, body = raw_request(stack.base, head, BODY if method == "POST" else b"")
    assert status == 400, body
    error = json.loads(body)["error"]
    assert error["type"] == "aiflags_error"
    assert problem in error["message"], error["message"]
    assert not any(name.startswith("x-mock-") for name in headers), "the upstream answered"
    # The mock counts requests as it reads them: the ones before and after
    # this one bracket it.
    assert mock_requests(stack) == before


def test_a_normalised_target_still_goes_through_the_flag(stack):
    """The same socket path with a clean target reaches the variant's
    provider under its prefix: the refusals above are about the target only."""
    head = "POST /v1/chat/completions?trace=../x HTTP/1.1\r\nhost: api.openai.com\r\n" \
           "content-type: application/json"
    status, headers, body = raw_request(stack.base, head, BODY)
    assert status == 200, body
    assert headers["x-mock-received-model"] == "target-probe-variant"
    assert headers["x-mock-received-path"] == "/openai/v1/chat/completions"
