"""One structured access-log line per request, with ids and outcomes but no
content: the sidecar never logs prompts, completions or credentials."""

import json

from conftest import running_stack

FLAGS = """
apiVersion: aiflags.dev/v1alpha1
kind: AIFeatureFlag
metadata: {name: logged}
spec:
  match: {models: ["gpt-4o-mini"]}
  defaultVariant: primary
  variants:
    - {name: primary, model: mock-error-500}
    - {name: backup, model: gpt-4.1-mini}
  fallback: {chain: [backup]}
"""

SECRET_PROMPT = "my password is hunter2, summarise it"
API_KEY = "sk-very-secret-key-42"


def access_record(line):
    try:
        record = json.loads(line)
    except json.JSONDecodeError:
        return None
    return record if record.get("target") == "aiflags::access" else None


def access_lines(lines):
    return [r for r in map(access_record, lines) if r]


def test_each_request_gets_one_json_access_line_without_content(tmp_path):
    import openai

    with running_stack(tmp_path, FLAGS, ["--log-format", "json"]) as stack:
        sdk = openai.OpenAI(base_url=f"{stack.base}/v1", api_key=API_KEY, max_retries=0)
        reply = sdk.chat.completions.create(
            model="gpt-4o-mini",
            messages=[{"role": "user", "content": SECRET_PROMPT}],
            extra_headers={"x-request-id": "req-e2e-1"},
        )
        stream = sdk.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": SECRET_PROMPT}], stream=True)
        streamed_text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
        # The stream's line is written when its body ends, which may be just
        # after the client has read the last chunk.
        stack.sidecar.wait_for("the stream's access line",
                               lambda line: (access_record(line) or {}).get("fields", {}).get("ttft_ms"))
    # The sidecar has exited (drained): every line it would write is in.
    lines = stack.sidecar.lines()
    records = access_lines(lines)
    assert len(records) == 2, records
    first = records[0]["fields"]
    assert first["request_id"] == "req-e2e-1"
    assert (first["flag"], first["variant"], first["model"]) == ("logged", "primary", "gpt-4.1-mini")
    assert first["attempts"] == 2 and first["fallbacks"] == 1 and first["status"] == 200
    second = records[1]["fields"]
    assert len(second["request_id"]) == 16, "a request without an id gets one"
    assert second["ttft_ms"] is not None and second["stream_error"] is False
    text = "\n".join(lines) + stack.mock_process.log_path.read_text()
    for secret in (SECRET_PROMPT, "hunter2", API_KEY, reply.choices[0].message.content, streamed_text):
        assert secret not in text, f"{secret!r} leaked into the logs"
