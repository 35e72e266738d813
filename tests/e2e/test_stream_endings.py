"""How streams reach the client when the upstream or the sidecar does
something unusual: an upstream that gzips its SSE although asked for
identity, one that cuts its gzip stream mid-way, and a sidecar whose drain
time ends while a stream is still open. The client always gets a clean,
decoded SSE stream, and every early end is one explicit SSE error event."""

import json
import urllib.request

import pytest

from conftest import PATIENCE, grown, one_variant_flag, running_stack, settled

FLAGS = "---\n".join([
    one_variant_flag("zipped", "mock-gzip-stream"),
    one_variant_flag("zipped-cut", "mock-gzip-cut-stream"),
    one_variant_flag("zipped-stall", "mock-gzip-stall-stream", spec="fallback: {on: [], perAttemptTimeout: 2s}"),
    one_variant_flag("slow", "mock-slow-stream"),
])

MESSAGES = [{"role": "user", "content": "Stream me something."}]


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    with running_stack(tmp_path_factory.mktemp("streams"), FLAGS) as s:
        yield s


def sdk(stack):
    import openai

    return openai.OpenAI(base_url=f"{stack.base}/v1", api_key="sk-e2e", max_retries=0, timeout=30)


def open_stream(stack, model):
    """A streamed chat through urllib, which (unlike the SDKs' HTTP clients)
    never decodes a content coding: the bytes are the ones the sidecar sent."""
    body = json.dumps({"model": model, "messages": MESSAGES, "stream": True}).encode()
    request = urllib.request.Request(f"{stack.base}/v1/chat/completions", data=body,
                                     headers={"content-type": "application/json"})
    return urllib.request.urlopen(request, timeout=PATIENCE)


def events(raw):
    """The SSE events of a body: the `data` of each, in order."""
    text = raw.decode("utf-8")  # strict: compressed bytes are not UTF-8
    assert text.endswith("\n\n"), f"the stream does not end on an event boundary: {text[-80:]!r}"
    out = []
    for block in text.split("\n\n")[:-1]:
        data = [line[len("data: "):] for line in block.split("\n") if line.startswith("data: ")]
        assert data, f"an event without data: {block!r}"
        out.append("\n".join(data))
    return out


def test_a_gzip_stream_reaches_the_sdk_decoded_with_the_usage_chunk_hidden_and_counted(stack):
    before = settled(stack)
    raw = sdk(stack).chat.completions.with_raw_response.create(model="zipped", messages=MESSAGES, stream=True)
    assert raw.headers.get("content-encoding") is None, "the client got the upstream's gzip"
    assert raw.headers["x-mock-saw-include-usage"] == "yes", "the proxy did not ask for usage"
    chunks = list(raw.parse())
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Hello from mock-gzip-stream! This is a mock reply."
    assert all(c.usage is None for c in chunks), "the proxy's usage chunk reached the app"
    after = settled(stack)
    output = grown(after, before, "aiflags_tokens_total", flag="zipped", type="output")
    input_tokens = grown(after, before, "aiflags_tokens_total", flag="zipped", type="input")
    assert output == len(text.split(" "))
    assert input_tokens == int(raw.headers["x-mock-body-bytes"]) // 4 + 1


def test_a_gzip_whole_response_is_decoded_and_its_usage_counted(stack):
    before = settled(stack)
    raw = sdk(stack).chat.completions.with_raw_response.create(model="zipped", messages=MESSAGES)
    assert raw.headers.get("content-encoding") is None
    usage = raw.parse().usage
    after = settled(stack)
    assert grown(after, before, "aiflags_tokens_total", flag="zipped", type="output") == usage.completion_tokens
    assert grown(after, before, "aiflags_tokens_total", flag="zipped", type="input") == usage.prompt_tokens


def test_a_gzip_stream_on_the_wire_is_plain_sse(stack):
    """The same stream read byte for byte: plain text, ending in [DONE]."""
    with open_stream(stack, "zipped") as response:
        assert response.headers.get("content-encoding") is None
        raw = response.read()
    data = events(raw)
    assert data[-1] == "[DONE]"
    chunks = [json.loads(d) for d in data[:-1]]
    assert all("usage" not in c or c["usage"] is None for c in chunks), "the usage chunk was not hidden"
    assert all(c["choices"] for c in chunks)


def test_a_cut_gzip_stream_ends_with_one_error_event_after_the_decoded_bytes(stack):
    with open_stream(stack, "zipped-cut") as response:
        assert response.headers.get("content-encoding") is None
        assert response.headers["x-aiflags-model"] == "mock-gzip-cut-stream"
        raw = response.read()
    assert b"\x1f\x8b" not in raw, "gzip bytes reached the client"
    data = events(raw)
    *chunks, last = data
    assert len(chunks) == 3, data
    assert [json.loads(c)["choices"][0]["delta"].get("content") for c in chunks] == ["", "Hello ", "from "]
    error = json.loads(last)["error"]
    assert error["type"] == "aiflags_error"
    assert "[DONE]" not in data
    assert sum('"error"' in d for d in data) == 1


def test_the_sdk_raises_on_a_cut_gzip_stream_after_the_text_so_far(stack):
    import openai

    seen = []
    with pytest.raises(openai.APIError) as failed:
        for chunk in sdk(stack).chat.completions.create(model="zipped-cut", messages=MESSAGES, stream=True):
            seen.extend(c.delta.content or "" for c in chunk.choices)
    assert "".join(seen) == "Hello from "
    assert failed.value.type == "aiflags_error", failed.value


def test_a_stalled_gzip_stream_delivers_what_it_sent_before_the_idle_timeout_ends_it(stack):
    """The upstream sends three gzip chunks and then nothing: all three reach
    the client, then the sidecar's idle timeout (the flag's 2s per-attempt
    timeout) ends the stream with one error event."""
    with open_stream(stack, "zipped-stall") as response:
        raw = response.read()
    *chunks, last = events(raw)
    assert [json.loads(c)["choices"][0]["delta"].get("content") for c in chunks] == ["", "Hello ", "from "]
    error = json.loads(last)["error"]
    assert error["type"] == "aiflags_error" and "sent nothing" in error["message"], error


def test_a_stream_open_when_the_drain_time_ends_gets_an_error_event_and_the_sidecar_exits(tmp_path):
    with running_stack(tmp_path, FLAGS, ["--drain-timeout", "500ms"]) as drained:
        with open_stream(drained, "slow") as response:
            first = response.readline()
            assert first.startswith(b"data: "), first
            drained.sidecar.proc.terminate()
            rest = response.read()
        # Exits once the stream has ended; a hang fails on the patience limit.
        assert drained.sidecar.proc.wait(timeout=PATIENCE) == 0
    data = events(first + rest)
    assert len(data) >= 2 and "[DONE]" not in data, "the slow stream finished within the drain time"
    error = json.loads(data[-1])["error"]
    assert error["type"] == "aiflags_error"
    assert "shutting down" in error["message"], error
    assert sum('"error"' in d for d in data) == 1
    assert any("drain time is up" in line for line in drained.sidecar.lines())
