"""The official openai Python SDK, unchanged, through the sidecar serving
tests/fixtures/flags.yaml. These tests read responses and headers only, so
they share one sidecar."""

import hashlib
import json
import urllib.request

MESSAGES = [{"role": "user", "content": "Say hi"}]


def test_chat_plain_gets_the_variant_model_and_headers(client):
    raw = client.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=MESSAGES)
    completion = raw.parse()
    assert raw.headers["x-aiflags-flag"] == "chat-model"
    assert raw.headers["x-aiflags-variant"] == "candidate"
    assert raw.headers["x-aiflags-model"] == "gpt-4.1-mini"
    assert raw.headers["x-aiflags-attempts"] == "1"
    assert raw.headers["x-mock-temperature"] == "0.2"
    assert raw.headers["x-mock-saw-authorization"] == "yes"
    assert completion.model == "gpt-4.1-mini"
    assert "gpt-4.1-mini" in completion.choices[0].message.content


def test_chat_streaming_arrives_in_chunks_without_the_injected_usage_chunk(client):
    raw = client.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=MESSAGES, stream=True)
    assert raw.headers["x-aiflags-model"] == "gpt-4.1-mini"
    assert raw.headers["x-mock-saw-include-usage"] == "yes"
    chunks = list(raw.parse())
    assert len(chunks) > 3
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert "Hello from gpt-4.1-mini" in text
    assert all(c.usage is None for c in chunks), "the proxy's usage chunk leaked to the app"


def test_chat_streaming_keeps_the_usage_chunk_the_app_asked_for(client):
    stream = client.chat.completions.create(
        model="gpt-4o-mini", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0


def test_responses_plain_and_streaming(client):
    raw = client.responses.with_raw_response.create(model="gpt-4.1", input="Say hi")
    response = raw.parse()
    assert raw.headers["x-aiflags-flag"] == "responses-model"
    assert raw.headers["x-aiflags-model"] == "gpt-5-mini"
    assert response.model == "gpt-5-mini"
    assert "Hello from gpt-5-mini" in response.output_text
    events = list(client.responses.create(model="gpt-4.1", input="Say hi", stream=True))
    kinds = [e.type for e in events]
    assert kinds[0] == "response.created" and kinds[-1] == "response.completed"
    assert events[-1].response.model == "gpt-5-mini"
    assert events[-1].response.usage.output_tokens > 0


def test_embeddings(client):
    raw = client.embeddings.with_raw_response.create(model="text-embedding-3-small", input="hello")
    embeddings = raw.parse()
    assert raw.headers["x-aiflags-model"] == "text-embedding-3-large"
    assert embeddings.model == "text-embedding-3-large"
    assert len(embeddings.data[0].embedding) == 4


def test_fallback_is_visible_in_the_headers(client):
    raw = client.chat.completions.with_raw_response.create(model="fragile", messages=MESSAGES)
    # The variant is the user's assignment; the model is what served it.
    assert raw.headers["x-aiflags-variant"] == "primary"
    assert raw.headers["x-aiflags-model"] == "gpt-4o-mini"
    assert raw.headers["x-aiflags-attempts"] == "2"
    assert raw.parse().model == "gpt-4o-mini"


def test_a_model_without_a_flag_passes_through(client):
    raw = client.chat.completions.with_raw_response.create(model="gpt-3.5-turbo", messages=MESSAGES)
    assert "x-aiflags-flag" not in raw.headers
    assert raw.parse().model == "gpt-3.5-turbo"


NON_ASCII = "Grüße aus Köln — 日本語のテキスト 🌍 \u0000\n\"quoted\""


def test_non_ascii_content_reaches_the_upstream_intact_through_a_flag(stack):
    import httpx2 as httpx
    import openai

    sent = []
    http = httpx.Client(event_hooks={"request": [lambda request: sent.append(request.read())]})
    client = openai.OpenAI(base_url=f"{stack.base}/v1", api_key="sk-e2e-test", max_retries=0, http_client=http)
    messages = [{"role": "user", "content": NON_ASCII}]
    raw = client.chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=messages, user="ünïcödé-user"
    )
    assert raw.parse().model == "gpt-4.1-mini"
    # What the upstream must have received: the SDK's own bytes with the
    # variant's model written in place and its params added, every other
    # character as the SDK encoded it (the sidecar splices, it never re-encodes).
    (body,) = sent
    assert body.count(b'"model":"gpt-4o-mini"') == 1, body
    expected = body.replace(b'"model":"gpt-4o-mini"', b'"model":"gpt-4.1-mini"')
    expected = expected[:-1] + b',"temperature":0.2}'
    assert raw.headers["x-mock-body-bytes"] == str(len(expected))
    assert raw.headers["x-mock-body-sha256"] == hashlib.sha256(expected).hexdigest()


def test_non_ascii_content_passes_through_byte_for_byte_without_a_flag(stack):
    # Deliberately unusual bytes: raw UTF-8, odd spacing, key order an
    # encoder would not choose. A pass-through must not re-encode any of it.
    body = ('{ "user":"ünïcödé",  "model" : "gpt-3.5-turbo",\n "messages":[{"role":"user","content":'
            + json.dumps(NON_ASCII, ensure_ascii=False) + "}]}").encode()
    request = urllib.request.Request(
        f"{stack.base}/v1/chat/completions", data=body, headers={"content-type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        assert "x-aiflags-flag" not in response.headers
        assert response.headers["x-mock-body-bytes"] == str(len(body))
        assert response.headers["x-mock-body-sha256"] == hashlib.sha256(body).hexdigest()


def test_a_one_megabyte_prompt(client):
    prompt = "word " * 200_000
    completion = client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": prompt}])
    assert completion.model == "gpt-4.1-mini"
    assert completion.usage.prompt_tokens > 250_000


def test_the_proxy_reports_its_config(stack):
    with urllib.request.urlopen(f"{stack.admin}/config", timeout=5) as response:
        config = json.loads(response.read())
    assert {f["key"] for f in config["flags"]} >= {"chat-model", "claude-model"}
    assert config["revision"]
