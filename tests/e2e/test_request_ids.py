"""A client-chosen `x-request-id` cannot forge access-log fields: one with
spaces, `key=value` text, quotes, control characters or an overlong value is
replaced by a generated 16-hex id, in text and JSON access logs alike, and
every line still parses into exactly the sidecar's own fields. Sent over a
raw socket, since HTTP clients refuse most of these values."""

import json
import re

import pytest

from conftest import raw_request, running_stack, wait_until

FLAGS = """
apiVersion: aiflags.dev/v1alpha1
kind: AIFeatureFlag
metadata: {name: logged}
spec:
  match: {models: ["gpt-4o-mini"]}
  defaultVariant: only
  variants:
    - {name: only, model: gpt-4.1-mini}
"""

BODY = json.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}).encode()

FORGED = [
    "abc status=500 flag=forged",
    "x\tvariant=forged",
    'abc" model="forged',
    "a'b",
    "x" * 65,
    "id-" + "7" * 4096,
    "caf\u00e9",
    "a;b,c",
]
# Values an HTTP/1 parser must refuse before any log line exists: a newline
# (bare, or CRLF plus a space: obsolete line folding) and other controls.
UNPARSEABLE = ["abc\nstatus=500 flag=forged", "abc\r\n status=500", "abc\rstatus=500", "a\x00b", "a\x1bb"]

FIELDS = ["request_id", "flag", "variant", "model", "provider", "operation",
          "status", "attempts", "fallbacks", "stream_error", "duration_ms"]
TEXT_FIELD = re.compile(r'\s+(\w+)=("(?:[^"\\]|\\.)*"|[^\s"]+)')
TEXT_PREFIX = re.compile(r"^\S+Z  INFO aiflags::access: request")


def text_fields(line):
    """The fields of a text access line, parsed strictly: the whole line must
    be a prefix and `key=value` pairs, each key once."""
    prefix = TEXT_PREFIX.match(line)
    assert prefix, line
    fields, at = {}, prefix.end()
    for m in TEXT_FIELD.finditer(line, at):
        assert m.start() == at, f"unparseable at {at}: {line!r}"
        key, value = m[1], m[2]
        assert key not in fields, f"{key} twice: {line!r}"
        fields[key] = json.loads(value) if value.startswith('"') else value
        at = m.end()
    assert at == len(line), f"trailing text: {line!r}"
    return fields


def json_fields(line):
    record = json.loads(line)
    assert record["target"] == "aiflags::access"
    fields = record["fields"]
    assert fields.pop("message") == "request"
    return fields


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_a_forged_request_id_is_replaced_and_forges_no_field(tmp_path, fmt):
    log = tmp_path / "access.log"
    with running_stack(tmp_path, FLAGS, ["--access-log", str(log), "--log-format", fmt]) as stack:
        def send(request_id):
            head = (f"POST /v1/chat/completions HTTP/1.1\r\nhost: sidecar\r\n"
                    f"content-type: application/json\r\nx-request-id: {request_id}")
            return raw_request(stack.base, head, BODY)

        for bad in UNPARSEABLE:
            status, headers, _ = send(bad)
            assert status == 400, f"{bad!r} was accepted"
            assert "x-aiflags-flag" not in headers
        sane = "req-Ok_1.2:3/4+5=6@7"
        for request_id in [*FORGED, sane]:
            status, headers, body = send(request_id)
            assert status == 200, body
            assert headers["x-aiflags-model"] == "gpt-4.1-mini"

        def written():
            lines = log.read_text().splitlines() if log.exists() else []
            return lines if len(lines) >= len(FORGED) + 1 else None

        lines = wait_until("an access line per request", written)
    # The sidecar has exited: every line it wrote is in.
    lines = log.read_text().splitlines()
    assert len(lines) == len(FORGED) + 1, "a request the HTTP parser refused was logged, or a line was split"
    parse = text_fields if fmt == "text" else json_fields
    records = [parse(line) for line in lines]
    for record in records:
        assert list(record)[:len(FIELDS)] == FIELDS, record
        assert set(record) <= {*FIELDS, "ttft_ms"}, record
        assert (record["flag"], record["variant"], record["model"]) == ("logged", "only", "gpt-4.1-mini"), record
        assert str(record["status"]) == "200"
    *forged, kept = [r["request_id"] for r in records]
    for request_id in forged:
        assert re.fullmatch(r"[0-9a-f]{16}", request_id), f"kept a forged id: {request_id!r}"
    assert len(set(forged)) == len(forged), "generated ids repeat"
    assert kept == sane, "a sane id is kept"


LOGFMT_FIELD = re.compile(r'(\w+)=("(?:[^"\\]|\\.)*"|[^\s"]+)')

@pytest.mark.parametrize("fmt", ["text", "json"])
def test_an_echoed_header_forges_no_field_in_the_sidecar_log(tmp_path, fmt):
    """Any client text the sidecar's own log lines echo is bounded and
    escaped: here a content-encoding it cannot decode, which it names in the
    warning that the request passed through unflagged."""
    with running_stack(tmp_path, FLAGS, ["--log-format", fmt]) as stack:
        head = ("POST /v1/chat/completions HTTP/1.1\r\nhost: sidecar\r\ncontent-type: application/json\r\n"
                'content-encoding: x aiflags_forged=1 status="200" y')
        status, _, _ = raw_request(stack.base, head, BODY)
        assert status == 200
        line = stack.sidecar.wait_for("the unreadable request's warning",
                                      lambda line: line if "not readable" in line else None)
    if fmt == "json":
        fields = json.loads(line)["fields"]
    else:
        fields = dict(LOGFMT_FIELD.findall(line.split(" without a flag", 1)[1]))
    assert "aiflags_forged" not in fields and "status" not in fields, line
    assert fields["reason"].strip('"') == "encoding"
