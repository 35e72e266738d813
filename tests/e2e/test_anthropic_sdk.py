"""The official anthropic Python SDK, unchanged, through the sidecar: the app
only sets ANTHROPIC_BASE_URL to the sidecar, as it would in a pod. The
claude-model flag (tests/fixtures/flags.yaml) moves claude-3-5-haiku-* to
claude-sonnet-4-5."""

import pytest

MESSAGES = [{"role": "user", "content": "Say hi"}]
API_KEY = "sk-ant-e2e-test"


@pytest.fixture
def claude(stack, monkeypatch):
    import anthropic

    # What the SDK reads when the app passes nothing: the app is unchanged.
    monkeypatch.setenv("ANTHROPIC_BASE_URL", stack.base)
    monkeypatch.setenv("ANTHROPIC_API_KEY", API_KEY)
    return anthropic.Anthropic(max_retries=0, timeout=30)


def test_messages_plain_get_the_variant_model_and_headers(claude, stack):
    assert str(claude.base_url).rstrip("/") == stack.base, "the SDK did not take ANTHROPIC_BASE_URL"
    raw = claude.messages.with_raw_response.create(model="claude-3-5-haiku-latest", max_tokens=64, messages=MESSAGES)
    message = raw.parse()
    assert raw.headers["x-aiflags-flag"] == "claude-model"
    assert raw.headers["x-aiflags-variant"] == "sonnet"
    assert raw.headers["x-aiflags-model"] == "claude-sonnet-4-5"
    assert raw.headers["x-aiflags-attempts"] == "1"
    # What the upstream saw: the rewritten model, the app's own key, the Messages path.
    assert raw.headers["x-mock-received-model"] == "claude-sonnet-4-5"
    assert raw.headers["x-mock-received-path"] == "/v1/messages"
    # The app's own key, passed through in the header its SDK chose
    # (x-api-key, or a bearer token in newer SDK versions).
    sent_key = raw.headers.get("x-mock-api-key") or raw.headers.get("x-mock-authorization", "").removeprefix("Bearer ")
    assert sent_key == API_KEY
    assert message.type == "message" and message.model == "claude-sonnet-4-5"
    assert message.content[0].text.startswith("Hello from claude-sonnet-4-5")
    assert message.usage.input_tokens > 0 and message.usage.output_tokens > 0


def test_messages_streaming_with_the_sdk_stream_helper(claude):
    with claude.messages.stream(model="claude-3-5-haiku-latest", max_tokens=64, messages=MESSAGES) as stream:
        headers = stream.response.headers
        deltas = list(stream.text_stream)
        final = stream.get_final_message()
    assert headers["x-aiflags-model"] == "claude-sonnet-4-5"
    assert headers["content-type"].startswith("text/event-stream")
    assert len(deltas) > 3, "the stream arrived in one piece"
    assert "".join(deltas).startswith("Hello from claude-sonnet-4-5")
    assert final.model == "claude-sonnet-4-5"
    assert final.stop_reason == "end_turn"
    assert final.usage.output_tokens > 0


def test_messages_streaming_events_in_order(claude):
    events = list(claude.messages.create(model="claude-3-5-haiku-latest", max_tokens=64, messages=MESSAGES,
                                         stream=True))
    kinds = [e.type for e in events]
    assert kinds[0] == "message_start" and kinds[-1] == "message_stop"
    assert events[0].message.model == "claude-sonnet-4-5"
    assert "content_block_delta" in kinds and "message_delta" in kinds


def test_a_claude_model_without_a_flag_passes_through(claude):
    raw = claude.messages.with_raw_response.create(model="claude-opus-4-1", max_tokens=64, messages=MESSAGES)
    assert "x-aiflags-flag" not in raw.headers
    assert raw.headers["x-mock-received-model"] == "claude-opus-4-1"
    assert raw.parse().model == "claude-opus-4-1"
