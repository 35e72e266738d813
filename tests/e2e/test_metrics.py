"""Every sidecar metric appears after the traffic that should produce it, with
the right labels and exact values: real openai SDK requests through a real
sidecar, then a scrape of its /metrics.

Each test runs its own sidecar (a debug build starts in well under a second),
so every count is exactly what that test sent and no test depends on another's
traffic or on the breaker state another left behind."""

import json
import urllib.request

import pytest

from conftest import grown, running_stack, settled, value, wait_until

FLAGS = """
apiVersion: aiflags.dev/v1alpha1
kind: AIFeatureFlag
metadata: {name: metered}
spec:
  match: {models: ["gpt-4o-mini"]}
  defaultVariant: stable
  variants:
    - {name: stable, model: gpt-4o-mini}
    - {name: candidate, model: gpt-4.1-mini}
  rollout:
    weights: {stable: 100, candidate: 0}
---
apiVersion: aiflags.dev/v1alpha1
kind: AIFeatureFlag
metadata: {name: house}
spec:
  match: {models: ["house"]}
  defaultVariant: own
  variants:
    - name: own
      model: house-llm
      pricing: {inputPerMillion: 1.5, outputPerMillion: 4}
---
apiVersion: aiflags.dev/v1alpha1
kind: AIFeatureFlag
metadata: {name: fragile}
spec:
  match: {models: ["fragile"]}
  defaultVariant: primary
  variants:
    - {name: primary, model: mock-error-500}
    - {name: backup, model: gpt-4o-mini}
  fallback:
    chain: [backup]
---
apiVersion: aiflags.dev/v1alpha1
kind: AIFeatureFlag
metadata: {name: sluggish}
spec:
  match: {models: ["sluggish"]}
  defaultVariant: slow
  variants:
    - {name: slow, model: mock-slow-first-token}
"""

MESSAGES = [{"role": "user", "content": "Count the tokens, please."}]


@pytest.fixture
def metered(tmp_path):
    args = ["--breaker-threshold", "2", "--breaker-cooldown", "1h"]
    with running_stack(tmp_path, FLAGS, args) as stack:
        yield stack


@pytest.fixture
def sdk(metered):
    import openai

    return openai.OpenAI(base_url=f"{metered.base}/v1", api_key="sk-e2e", max_retries=0, timeout=30)


def mock_output_tokens(model):
    # The mock answers "Hello from {model}! This is a mock reply.", one token a word.
    return len(f"Hello from {model}! This is a mock reply.".split(" "))


def test_the_metrics_tell_the_whole_story(metered, sdk):
    provider = metered.mock

    # 1. Two plain chats and one stream the app asked usage for: usage is visible to the test.
    plain = [sdk.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, user=f"u{i}") for i in range(2)]
    streamed = list(sdk.chat.completions.create(
        model="gpt-4o-mini", messages=MESSAGES, stream=True, stream_options={"include_usage": True}))
    seen_usage = [c.usage for c in plain] + [streamed[-1].usage]
    # 2. A stream without include_usage: the sidecar asks for usage itself and hides that chunk.
    hidden = sdk.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=MESSAGES, stream=True)
    chunks = list(hidden.parse())
    assert all(c.usage is None for c in chunks)
    hidden_input = int(hidden.headers["x-mock-body-bytes"]) // 4 + 1

    samples = settled(metered)
    flag = dict(flag="metered", variant="stable", model="gpt-4o-mini")
    assert value(samples, "aiflags_requests_total", **flag, provider=provider, operation="chat", code="200") == 4
    expected_input = sum(u.prompt_tokens for u in seen_usage) + hidden_input
    expected_output = sum(u.completion_tokens for u in seen_usage) + mock_output_tokens("gpt-4o-mini")
    assert value(samples, "aiflags_tokens_total", **flag, type="input") == expected_input
    assert value(samples, "aiflags_tokens_total", **flag, type="output") == expected_output
    assert value(samples, "aiflags_tokens_total", **flag, type="cached_input") == 0
    # gpt-4o-mini from the default price table: $0.15 in, $0.60 out per million.
    expected_cost = (expected_input * 0.15 + expected_output * 0.60) / 1e6
    assert value(samples, "aiflags_cost_usd_total", **flag) == pytest.approx(expected_cost, rel=1e-9)
    assert value(samples, "aiflags_request_duration_seconds_count", **flag) == 4
    assert value(samples, "aiflags_time_to_first_token_seconds_count", **flag) == 2
    assert value(samples, "aiflags_upstream_attempts_total", provider=provider, model="gpt-4o-mini", outcome="ok") == 4
    assert value(samples, "aiflags_proxy_overhead_seconds_count") == 4
    overhead_sum = value(samples, "aiflags_proxy_overhead_seconds_sum")
    assert 0 < overhead_sum < value(samples, "aiflags_request_duration_seconds_sum", **flag)
    assert value(samples, "aiflags_active_requests") == 0


def test_a_variant_price_override_sets_the_cost(metered, sdk):
    completion = sdk.chat.completions.create(model="house", messages=MESSAGES)
    usage = completion.usage
    samples = settled(metered)
    expected = (usage.prompt_tokens * 1.5 + usage.completion_tokens * 4) / 1e6
    assert value(samples, "aiflags_cost_usd_total", flag="house", variant="own", model="house-llm") == pytest.approx(
        expected, rel=1e-9)


def test_fallbacks_count_once_per_hop_and_open_the_circuit(metered, sdk):
    for _ in range(2):
        raw = sdk.chat.completions.with_raw_response.create(model="fragile", messages=MESSAGES)
        assert raw.headers["x-aiflags-variant"] == "primary"
        assert raw.headers["x-aiflags-model"] == "gpt-4o-mini"
        assert raw.headers["x-aiflags-attempts"] == "2"
    samples = settled(metered)
    hop = dict(flag="fragile", from_model="mock-error-500", to_model="gpt-4o-mini", reason="status_500")
    assert value(samples, "aiflags_fallbacks_total", **hop) == 2
    assert value(samples, "aiflags_upstream_attempts_total", model="mock-error-500", outcome="status_500") == 2
    # Two consecutive failures is this sidecar's breaker threshold.
    assert value(samples, "aiflags_circuit_open", provider=metered.mock, model="mock-error-500") == 1

    # With the circuit open the failing target is skipped, and that is what the metrics say.
    sdk.chat.completions.create(model="fragile", messages=MESSAGES)
    samples = settled(metered)
    assert value(samples, "aiflags_upstream_attempts_total", model="mock-error-500", outcome="circuit_open") == 1
    assert value(samples, "aiflags_upstream_attempts_total", model="mock-error-500", outcome="status_500") == 2
    # Requests count against the variant the split chose, served by the backup model:
    # that is how a canary's fallback rate is measured.
    assert value(samples, "aiflags_requests_total", flag="fragile", variant="primary", model="gpt-4o-mini",
                 code="200") == 3


def test_pass_through_traffic_is_counted_without_request_labels(metered):
    body = json.dumps({"model": "someone-elses-model-123", "messages": MESSAGES}).encode()
    request = urllib.request.Request(f"{metered.base}/v1/chat/completions", data=body,
                                     headers={"content-type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        assert "x-aiflags-flag" not in response.headers
    samples = settled(metered)
    assert value(samples, "aiflags_requests_total", flag="", variant="", model="", operation="chat", code="200") == 1
    assert not any("someone-elses-model-123" in str(labels) for _, labels in samples), "a client-chosen label value"


def test_the_config_revision_is_exported(metered):
    with urllib.request.urlopen(f"{metered.admin}/config", timeout=5) as response:
        revision = json.load(response)["revision"]
    samples = settled(metered)
    assert value(samples, "aiflags_config_revision_info", revision=revision) == 1
    assert value(samples, "aiflags_config_reloads_total", result="ok") == 1


def test_streams_do_not_count_their_generation_time_as_overhead(metered, sdk):
    before = settled(metered)
    chunks = list(sdk.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True))
    after = settled(metered)
    added = grown(after, before, "aiflags_proxy_overhead_seconds_sum")
    duration = grown(after, before, "aiflags_request_duration_seconds_sum", flag="metered")
    # The mock sleeps 5 ms before each chunk it sends (at least one per chunk
    # the SDK yields), all after it sent the response head: the upstream's
    # share of the duration (all of it but the overhead) is at least that
    # generation time. One pace is left for the instants between the proxy's
    # own steps. Counted as overhead, the generation would leave ~5 ms.
    assert len(chunks) >= 4
    generated = (len(chunks) - 1) * 0.005
    assert duration - added >= generated, f"overhead {added}s of a {duration}s stream"


def test_a_client_that_gives_up_is_counted_once_as_499(metered, sdk):
    import openai

    # The mock holds this model's response head for 3 s; the client leaves first.
    impatient = sdk.with_options(timeout=0.3)
    with pytest.raises(openai.APITimeoutError):
        impatient.chat.completions.create(model="sluggish", messages=MESSAGES)

    def abandoned():
        samples = settled(metered)
        gone = [v for (n, ls), v in samples.items()
                if n == "aiflags_requests_total" and ("flag", "sluggish") in ls and ("code", "499") in ls]
        return (samples, gone) if gone else None

    samples, gone = wait_until("the abandoned request's 499", abandoned)
    assert gone == [1], "the abandoned request was counted more than once"
    assert value(samples, "aiflags_requests_total", flag="sluggish") == 1, "and under another code too"
