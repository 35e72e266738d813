"""A bad answer is a failure too: a candidate model that answers `200` with
nothing, or with its content filter's stop, falls back to the stable model
when the flag's `fallback.on` names `empty` / `contentFilter` — through a
real sidecar, with the official openai and anthropic SDKs — and every
answer is counted per variant for the dashboards and the rollout analysis.

Each test runs its own sidecar, so every count is exactly its own traffic."""

import json
import time
import urllib.request

import pytest

from conftest import running_stack, settled, value_or_zero as total, wait_until

FLAGS = """
apiVersion: aiflags.dev/v1alpha1
kind: AIFeatureFlag
metadata: {name: hollow}
spec:
  match: {models: ["hollow"]}
  defaultVariant: candidate
  variants:
    - {name: candidate, model: mock-empty}
    - {name: stable, model: gpt-4o-mini}
  fallback: {on: ["5xx", empty], chain: [stable]}
---
apiVersion: aiflags.dev/v1alpha1
kind: AIFeatureFlag
metadata: {name: filtered}
spec:
  match: {models: ["filtered"]}
  defaultVariant: candidate
  variants:
    - {name: candidate, model: mock-content-filter}
    - {name: stable, model: gpt-4o-mini}
  fallback: {on: [contentFilter], chain: [stable], retries: 1}
---
apiVersion: aiflags.dev/v1alpha1
kind: AIFeatureFlag
metadata: {name: late-filter}
spec:
  match: {models: ["late-filter"]}
  defaultVariant: candidate
  variants:
    - {name: candidate, model: mock-content-then-filter}
    - {name: stable, model: gpt-4o-mini}
  fallback: {on: [empty, contentFilter], chain: [stable], retries: 1}
---
apiVersion: aiflags.dev/v1alpha1
kind: AIFeatureFlag
metadata: {name: slow-held}
spec:
  match: {models: ["slow-held"]}
  defaultVariant: candidate
  variants:
    - {name: candidate, model: mock-slow-role-stream}
    - {name: stable, model: gpt-4o-mini}
  fallback: {on: [empty], chain: [stable]}
---
apiVersion: aiflags.dev/v1alpha1
kind: AIFeatureFlag
metadata: {name: slow-direct}
spec:
  match: {models: ["slow-direct"]}
  defaultVariant: candidate
  variants:
    - {name: candidate, model: mock-slow-role-stream}
"""

MESSAGES = [{"role": "user", "content": "Say hi"}]
STABLE = "Hello from gpt-4o-mini! This is a mock reply."
# mock-slow-role-stream sends each chunk 250 ms after the one before: its
# role chunk at 0.25 s, its first content at 0.5 s.
SLOW_PACE = 0.25


@pytest.fixture
def judged(tmp_path):
    with running_stack(tmp_path, FLAGS, ["--log-format", "json"]) as s:
        yield s


@pytest.fixture
def sdk(judged):
    import openai

    return openai.OpenAI(base_url=f"{judged.base}/v1", api_key="sk-e2e", max_retries=0, timeout=30)


@pytest.fixture
def claude(judged):
    import anthropic

    return anthropic.Anthropic(base_url=judged.base, api_key="sk-ant-e2e", max_retries=0, timeout=30)


def get_json(url):
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.load(response)


def upstream_requests(judged, model):
    return get_json(f"{judged.mock}/mock/requests/{model}")["requests"]


def access_lines(judged, flag, count):
    """The access-log fields of `flag`'s requests, once there are `count`
    (the log is written in batches, a little after the requests end)."""
    def lines():
        found = []
        for line in judged.sidecar.lines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if record.get("target") == "aiflags::access" and record["fields"]["flag"] == flag:
                found.append(record["fields"])
        return found if len(found) >= count else None

    return wait_until(f"{count} access lines of {flag}", lines)


def served_by_stable(raw):
    assert raw.headers["x-aiflags-variant"] == "candidate"
    assert raw.headers["x-aiflags-model"] == "gpt-4o-mini"
    assert raw.headers["x-aiflags-attempts"] == "2"


def chat_text(chunks):
    return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)


def test_an_empty_answer_falls_back_to_the_chain_plain_and_streamed(judged, sdk, claude):
    raw = sdk.chat.completions.with_raw_response.create(model="hollow", messages=MESSAGES)
    served_by_stable(raw)
    assert raw.parse().choices[0].message.content == STABLE

    raw = sdk.chat.completions.with_raw_response.create(model="hollow", messages=MESSAGES, stream=True)
    served_by_stable(raw)
    chunks = list(raw.parse())
    # The empty stream was held back whole: the client saw one role chunk, stable's.
    assert sum(1 for c in chunks if c.choices and c.choices[0].delta.role) == 1
    assert chat_text(chunks) == STABLE

    raw = sdk.responses.with_raw_response.create(model="hollow", input="Say hi")
    served_by_stable(raw)
    assert raw.parse().output_text == STABLE
    events = list(sdk.responses.create(model="hollow", input="Say hi", stream=True))
    assert events[-1].type == "response.completed" and events[-1].response.model == "gpt-4o-mini"

    raw = sdk.embeddings.with_raw_response.create(model="hollow", input="hello")
    served_by_stable(raw)
    assert len(raw.parse().data[0].embedding) == 4

    raw = claude.messages.with_raw_response.create(model="hollow", max_tokens=64, messages=MESSAGES)
    served_by_stable(raw)
    assert raw.parse().content[0].text == STABLE
    with claude.messages.stream(model="hollow", max_tokens=64, messages=MESSAGES) as stream:
        assert stream.get_final_message().content[0].text == STABLE

    assert upstream_requests(judged, "mock-empty") == 7
    samples = settled(judged)
    assert total(samples, "aiflags_answers_total", flag="hollow", variant="candidate", model="mock-empty",
                 verdict="empty") == 7
    assert total(samples, "aiflags_answers_total", flag="hollow", variant="stable", verdict="content") == 7
    assert total(samples, "aiflags_fallbacks_total", flag="hollow", from_model="mock-empty",
                 to_model="gpt-4o-mini", reason="empty") == 7
    assert total(samples, "aiflags_upstream_attempts_total", model="mock-empty", outcome="empty") == 7
    # Requests count against the candidate the split chose, served by stable.
    assert total(samples, "aiflags_requests_total", flag="hollow", variant="candidate", model="gpt-4o-mini",
                 code="200") == 7
    lines = access_lines(judged, "hollow", 7)
    assert len(lines) == 7
    assert all(f["verdict"] == "content" and f["fallback_reasons"] == "empty" for f in lines), lines


def test_a_filtered_answer_falls_back_to_the_chain_without_a_retry(judged, sdk, claude):
    raw = sdk.chat.completions.with_raw_response.create(model="filtered", messages=MESSAGES)
    served_by_stable(raw)
    completion = raw.parse()
    assert completion.choices[0].finish_reason == "stop" and completion.choices[0].message.content == STABLE

    raw = sdk.chat.completions.with_raw_response.create(model="filtered", messages=MESSAGES, stream=True)
    served_by_stable(raw)
    chunks = list(raw.parse())
    assert chat_text(chunks) == STABLE
    assert all(c.choices[0].finish_reason != "content_filter" for c in chunks if c.choices)

    events = list(sdk.responses.create(model="filtered", input="Say hi", stream=True))
    assert [e.type for e in events][-1] == "response.completed"

    raw = claude.messages.with_raw_response.create(model="filtered", max_tokens=64, messages=MESSAGES)
    served_by_stable(raw)
    assert raw.parse().stop_reason == "end_turn"
    with claude.messages.stream(model="filtered", max_tokens=64, messages=MESSAGES) as stream:
        final = stream.get_final_message()
    assert final.stop_reason == "end_turn" and final.content[0].text == STABLE

    # `retries: 1`, yet each request asked the filtered model once: a filter
    # would stop the same prompt again.
    assert upstream_requests(judged, "mock-content-filter") == 5
    samples = settled(judged)
    assert total(samples, "aiflags_answers_total", flag="filtered", variant="candidate",
                 verdict="content_filter") == 5
    assert total(samples, "aiflags_fallbacks_total", flag="filtered", reason="content_filter") == 5
    assert total(samples, "aiflags_upstream_attempts_total", model="mock-content-filter",
                 outcome="content_filter") == 5
    # A filtered answer says nothing against the target: its circuit stays shut.
    assert total(samples, "aiflags_circuit_open", model="mock-content-filter") == 0


def test_a_stream_filtered_after_its_content_is_reported_not_retried(judged, sdk, claude):
    raw = sdk.chat.completions.with_raw_response.create(model="late-filter", messages=MESSAGES, stream=True)
    assert raw.headers["x-aiflags-model"] == "mock-content-then-filter"
    chunks = list(raw.parse())  # ends cleanly: no error event, no exception
    assert chat_text(chunks) == "Hello from mock-content-then-filter! This is a mock reply."
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "content_filter"

    with claude.messages.stream(model="late-filter", max_tokens=64, messages=MESSAGES) as stream:
        final = stream.get_final_message()
    assert final.stop_reason == "refusal" and final.content[0].text.startswith("Hello from")

    assert upstream_requests(judged, "mock-content-then-filter") == 2
    assert upstream_requests(judged, "gpt-4o-mini") == 0
    samples = settled(judged)
    assert total(samples, "aiflags_answers_total", flag="late-filter", variant="candidate",
                 verdict="content_filter") == 2
    assert total(samples, "aiflags_upstream_attempts_total", model="mock-content-then-filter", outcome="ok") == 2
    assert total(samples, "aiflags_fallbacks_total", flag="late-filter") == 0
    lines = access_lines(judged, "late-filter", 2)
    assert [(f["verdict"], f["stream_error"], f["attempts"]) for f in lines] == [("content_filter", False, 1)] * 2


@pytest.mark.parametrize("flag", ["slow-held", "slow-direct"])
def test_a_slow_role_chunk_then_content_keeps_its_first_token_time(judged, sdk, flag):
    """With the stream held back until its first content (`slow-held` judges
    answers) or not (`slow-direct`), time to first token is the time to the
    first content, and the client gets it while the upstream still streams."""
    started = time.monotonic()
    stream = sdk.chat.completions.create(model=flag, messages=MESSAGES, stream=True)
    client_ttft = None
    text = ""
    for chunk in stream:
        content = chunk.choices[0].delta.content if chunk.choices else None
        if content and client_ttft is None:
            client_ttft = time.monotonic() - started
            # Not buffered: the upstream is still sending the rest.
            assert get_json(f"{judged.mock}/mock/active-streams")["active"] == 1
        text += content or ""
    assert text == "Hello from mock-slow-role-stream! This is a mock reply."
    samples = settled(judged)
    labels = dict(flag=flag, variant="candidate", model="mock-slow-role-stream")
    assert total(samples, "aiflags_time_to_first_token_seconds_count", **labels) == 1
    sidecar_ttft = total(samples, "aiflags_time_to_first_token_seconds_sum", **labels)
    # The role chunk alone came at one pace; the first token at two. The
    # sidecar sent it before the client, which started its clock first, had it.
    assert 2 * SLOW_PACE <= sidecar_ttft <= client_ttft, (sidecar_ttft, client_ttft)
