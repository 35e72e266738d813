"""Which credentials cross to which origin, through a real sidecar, with the
official openai and anthropic SDKs sending every credential- and
identity-bearing header an app may carry.

The matrix: a variant on the default origin (the one the app addressed),
the default origin with a `credentialKey`, a foreign origin (a second mock on
another port) without a credential, and a foreign origin with one. What each
mock received is read back from its `x-mock-saw-headers` echo."""

import contextlib
import json
import urllib.request

import pytest

from conftest import one_variant_flag, running_stack, start_mock

# The app's credentials and identity: every header of the sidecar's default
# list, plus one added with --credential-headers.
APP_KEY = "sk-app-secret"
EXTRA = "x-tenant-token"
CREDENTIAL_HEADERS = {
    "proxy-authorization": "Basic cHJveHk6c2VjcmV0",
    "x-api-key": "app-x-api-key",
    "api-key": "app-azure-key",
    "x-goog-api-key": "app-goog-key",
    "cookie": "session=app-cookie",
    EXTRA: "tenant-secret",
}
# authorization (from api_key), openai-organization and openai-project come
# from the SDK's own options.
APP_CREDENTIALS = {"authorization", "openai-organization", "openai-project", *CREDENTIAL_HEADERS}
# Proxy-Authorization is for the proxy itself: it is hop-by-hop and reaches no upstream.
REACH_THE_APP_ORIGIN = APP_CREDENTIALS - {"proxy-authorization"}

SECRETS = {"home-key": "sk-home-secret\n", "foreign-key": "sk-foreign-secret\n", "empty-key": " \n"}


def flags(home, foreign):
    def flag(name, model, provider="", operations="[chat]"):
        return one_variant_flag(name, model, variant=provider, match=f", operations: {operations}")

    def keyed(url, key):
        return f", provider: {{baseUrl: \"{url}\", credentialKey: {key}}}"

    def plain(url):
        return f", provider: {{baseUrl: \"{url}\"}}"

    return "---\n".join([
        flag("home", "gpt-4o-mini"),
        flag("home-keyed", "gpt-4o-mini", keyed(home, "home-key")),
        flag("foreign", "gpt-4o-mini", plain(foreign)),
        flag("foreign-keyed", "gpt-4o-mini", keyed(foreign, "foreign-key")),
        flag("foreign-empty-key", "gpt-4o-mini", keyed(foreign, "empty-key")),
        flag("claude-home", "claude-sonnet-4-5", operations="[messages]"),
        flag("claude-foreign", "claude-sonnet-4-5", plain(foreign), operations="[messages]"),
        flag("claude-foreign-keyed", "claude-sonnet-4-5", keyed(foreign, "foreign-key"), operations="[messages]"),
    ])


@pytest.fixture(scope="module")
def origins(tmp_path_factory):
    """The sidecar, its default-origin mock and a foreign mock."""
    tmp = tmp_path_factory.mktemp("credentials")
    secrets = tmp / "credentials"
    secrets.mkdir()
    for key, text in SECRETS.items():
        (secrets / key).write_text(text)
    with contextlib.ExitStack() as cleanup:
        foreign, foreign_addr = start_mock(tmp, "foreign")
        cleanup.callback(foreign.stop)
        foreign_url = f"http://{foreign_addr}"
        args = ["--credentials-dir", str(secrets), "--credential-headers", EXTRA.upper()]
        stack = cleanup.enter_context(
            running_stack(tmp, lambda home: flags(home, foreign_url), args))
        stack.foreign = foreign_url
        yield stack


def openai_client(stack):
    import openai

    return openai.OpenAI(base_url=f"{stack.base}/v1", api_key=APP_KEY, organization="org-app",
                         project="proj-app", default_headers=CREDENTIAL_HEADERS, max_retries=0, timeout=30)


def anthropic_client(stack):
    import anthropic

    # The SDK takes one credential (sent as authorization); the rest an app,
    # or a gateway in front of it, adds as headers.
    extra = {**CREDENTIAL_HEADERS, "openai-organization": "org-app", "openai-project": "proj-app"}
    return anthropic.Anthropic(base_url=stack.base, api_key=APP_KEY, default_headers=extra,
                               max_retries=0, timeout=30)


def chat(stack, model):
    raw = openai_client(stack).chat.completions.with_raw_response.create(
        model=model, messages=[{"role": "user", "content": "Hi"}])
    raw.parse()
    return raw.headers


def message(stack, model):
    raw = anthropic_client(stack).messages.with_raw_response.create(
        model=model, max_tokens=16, messages=[{"role": "user", "content": "Hi"}])
    raw.parse()
    return raw.headers


def saw(headers):
    """The credential and identity headers the mock received."""
    return set(headers["x-mock-saw-headers"].split(",")) & APP_CREDENTIALS


def received_by(url, model):
    with urllib.request.urlopen(f"{url}/mock/requests/{model}", timeout=5) as response:
        return json.load(response)["requests"]


def test_the_app_origin_gets_the_app_credentials(origins):
    headers = chat(origins, "home")
    assert headers["x-mock-received-model"] == "gpt-4o-mini"
    assert saw(headers) == REACH_THE_APP_ORIGIN
    assert headers["x-mock-authorization"] == f"Bearer {APP_KEY}"
    assert headers["x-mock-api-key"] == "app-x-api-key"


def test_a_credential_key_on_the_app_origin_replaces_every_app_credential(origins):
    headers = chat(origins, "home-keyed")
    assert saw(headers) == {"authorization"}
    assert headers["x-mock-authorization"] == "Bearer sk-home-secret"


def test_a_foreign_origin_without_a_credential_gets_none(origins):
    headers = chat(origins, "foreign")
    assert headers["x-mock-host"] == origins.foreign.removeprefix("http://"), "not the foreign mock"
    assert saw(headers) == set()


def test_a_foreign_origin_gets_only_its_own_credential(origins):
    headers = chat(origins, "foreign-keyed")
    assert headers["x-mock-host"] == origins.foreign.removeprefix("http://")
    assert saw(headers) == {"authorization"}
    assert headers["x-mock-authorization"] == "Bearer sk-foreign-secret"


def test_an_empty_credential_is_a_clean_502_naming_the_key(origins):
    import openai

    before = received_by(origins.foreign, "gpt-4o-mini")
    with pytest.raises(openai.APIStatusError) as failed:
        chat(origins, "foreign-empty-key")
    response = failed.value.response
    assert response.status_code == 502
    error = response.json()["error"]
    assert error["type"] == "aiflags_error"
    assert '"empty-key"' in error["message"] and "empty" in error["message"], error
    assert "Bearer" not in error["message"]
    assert response.headers["x-aiflags-flag"] == "foreign-empty-key"
    assert received_by(origins.foreign, "gpt-4o-mini") == before, "a request went out without its credential"


def test_anthropic_credentials_follow_the_same_rule(origins):
    home = message(origins, "claude-home")
    assert saw(home) == REACH_THE_APP_ORIGIN
    assert home["x-mock-api-key"] == "app-x-api-key"

    foreign = message(origins, "claude-foreign")
    assert saw(foreign) == set()

    keyed = message(origins, "claude-foreign-keyed")
    # Anthropic presents a key as x-api-key, never as a bearer token.
    assert saw(keyed) == {"x-api-key"}
    assert keyed["x-mock-api-key"] == "sk-foreign-secret"
