"""Virtual keys with the official SDKs: a key over its rate limit gets the SDK's
RateLimitError with a retry-after header (OpenAI and Anthropic surfaces), a model outside
the key's list gets PermissionDeniedError, while another key is served."""

import json

import anthropic
import openai
import pytest

from stack import API_KEY, start_stack

METERED = "sk-py-metered-5c1a"
NARROW = "sk-py-narrow-77e0"


@pytest.fixture(scope="module")
def keyed(tmp_path_factory):
    d = tmp_path_factory.mktemp("virtual-keys")
    keys = d / "keys.json"
    keys.write_text(json.dumps({"keys": [
        {"name": "metered", "key": METERED, "requests_per_minute": 2},
        {"name": "narrow", "key": NARROW, "models": ["gpt-4o"]},
    ]}))
    # API_KEYS (the stack's key, named key-1) and the file work together.
    s = start_stack(d, sidecars=1, gateway_env={"API_KEYS_FILE": str(keys)})
    yield s.gateways[0]
    s.stop()


def openai_client(gw, key):
    return openai.OpenAI(base_url=gw.base_url + "/v1", api_key=key, max_retries=0, timeout=30)


def anthropic_client(gw, key):
    return anthropic.Anthropic(base_url=gw.base_url, api_key=key, max_retries=0, timeout=30)


def test_rpm_limit_is_a_rate_limit_error_with_retry_after_in_both_sdks(keyed):
    client = openai_client(keyed, METERED)
    for i in range(2):
        client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": f"ok {i}"}])
    with pytest.raises(openai.RateLimitError) as caught:
        client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "third"}])
    e = caught.value
    assert e.status_code == 429
    assert e.body["type"] == "rate_limit_error" and e.body["code"] == "key_rate_limit", e.body
    # Two per minute: the next cell is up to 30 s away, and the header says so.
    assert 1 <= int(e.response.headers["retry-after"]) <= 30

    with pytest.raises(anthropic.RateLimitError) as caught:
        anthropic_client(keyed, METERED).messages.create(
            model="claude-sonnet-4", max_tokens=32, messages=[{"role": "user", "content": "again"}])
    e = caught.value
    assert e.status_code == 429
    assert e.body["error"]["type"] == "rate_limit_error", e.body
    assert int(e.response.headers["retry-after"]) >= 1

    # Another key is served meanwhile.
    other = openai_client(keyed, API_KEY).chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "other key"}])
    assert other.choices[0].finish_reason == "stop"


def test_model_outside_the_key_is_permission_denied(keyed):
    with pytest.raises(openai.PermissionDeniedError) as caught:
        openai_client(keyed, NARROW).chat.completions.create(
            model="o3", messages=[{"role": "user", "content": "hi"}])
    assert caught.value.body["code"] == "model_not_allowed"
    with pytest.raises(anthropic.PermissionDeniedError) as caught:
        anthropic_client(keyed, NARROW).messages.create(
            model="claude-sonnet-4", max_tokens=32, messages=[{"role": "user", "content": "hi"}])
    assert caught.value.body["error"]["type"] == "permission_error"
    ok = openai_client(keyed, NARROW).chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "allowed"}])
    assert ok.choices[0].finish_reason == "stop"
