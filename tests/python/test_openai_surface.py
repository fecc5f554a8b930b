"""The OpenAI surface as the official `openai` package sees it."""

import json
import uuid

import httpx
import openai
import pytest

from stack import API_KEY


def user(text):
    return [{"role": "user", "content": text}]


def test_non_streaming_completion(client):
    q = f"hello {uuid.uuid4().hex[:6]}"
    r = client.chat.completions.create(model="gpt-4o", messages=user(q))
    assert r.object == "chat.completion"
    assert r.id.startswith("chatcmpl-")
    assert r.model == "gpt-4o"
    assert len(r.choices) == 1
    choice = r.choices[0]
    assert choice.finish_reason == "stop"
    assert choice.message.role == "assistant"
    # The simulator echoes what it received: proof the question went through.
    assert "lingma-sim" in choice.message.content and q in choice.message.content
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens > 0


def test_streaming_completion(client):
    q = f"stream me {uuid.uuid4().hex[:6]}"
    chunks = list(client.chat.completions.create(model="gpt-4o", messages=user(q), stream=True))
    assert len(chunks) >= 3
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    assert len({c.id for c in chunks}) == 1
    assert chunks[0].choices[0].delta.role == "assistant"
    assert all(c.choices[0].delta.role is None for c in chunks[1:])
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert all(c.choices[0].finish_reason is None for c in chunks[:-1])
    assert all(c.usage is None for c in chunks)
    text = "".join(c.choices[0].delta.content or "" for c in chunks)
    assert q in text


def test_include_usage_adds_a_final_usage_chunk(client):
    chunks = list(client.chat.completions.create(
        model="gpt-4o", messages=user("count me"), stream=True,
        stream_options={"include_usage": True},
    ))
    last = chunks[-1]
    assert last.choices == []
    assert last.usage is not None and last.usage.total_tokens > 0
    assert all(c.usage is None for c in chunks[:-1])
    assert chunks[-2].choices[0].finish_reason == "stop"


def test_raw_sse_framing_and_headers(gateway):
    body = {"model": "gpt-4o", "messages": user("raw"), "stream": True}
    with httpx.stream("POST", gateway.base_url + "/v1/chat/completions", json=body,
                      headers={"Authorization": f"Bearer {API_KEY}", "x-request-id": "my-req-1"},
                      timeout=10) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        assert r.headers["cache-control"] == "no-cache"
        assert r.headers["x-accel-buffering"] == "no"
        assert r.headers["x-request-id"] == "my-req-1"
        assert r.headers["x-lingma-session"] in ("new", "reused")
        assert int(r.headers["x-lingma-overhead-us"]) >= 0
        raw = r.read().decode()
    events = [e for e in raw.split("\n\n") if e]
    assert all(e.startswith("data: ") for e in events)
    assert events[-1] == "data: [DONE]"
    for e in events[:-1]:
        chunk = json.loads(e[len("data: "):])
        # The published schema types it as a string: a null breaks strict clients.
        assert chunk.get("system_fingerprint", "absent") is not None


def test_plain_answer_has_no_null_system_fingerprint(gateway):
    body = {"model": "gpt-4o", "messages": user("plain")}
    r = httpx.post(gateway.base_url + "/v1/chat/completions", json=body,
                   headers={"Authorization": f"Bearer {API_KEY}"}, timeout=10)
    assert r.status_code == 200
    assert r.json().get("system_fingerprint", "absent") is not None


def test_models_list_and_retrieve(client):
    ids = {m.id for m in client.models.list()}
    # The simulator's model keys and the DEFAULT_MODEL.
    assert {"dashscope_qwen3_coder", "org_auto"} <= ids
    m = client.models.retrieve("dashscope_qwen3_coder")
    assert m.id == "dashscope_qwen3_coder" and m.object == "model"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("no-such-model")


def test_a_lingma_model_key_is_used(client, stack):
    r = client.chat.completions.create(model="dashscope_qwen_max_latest", messages=user(f"key {uuid.uuid4()}"))
    assert r.model == "dashscope_qwen_max_latest"
    asks = [a for s in stack.sims for a in s.stats()["recent_asks"]]
    keys = {json.dumps(a) for a in asks if "dashscope_qwen_max_latest" in json.dumps(a)}
    assert keys, "the model key reached the simulator"


def test_unknown_model_is_404(client):
    with pytest.raises(openai.NotFoundError) as e:
        client.chat.completions.create(model="dashscope_no_such_model", messages=user("x"))
    assert e.value.status_code == 404
    assert e.value.body["code"] == "model_not_found"


def test_bad_key_is_401(gateway):
    bad = openai.OpenAI(base_url=gateway.base_url + "/v1", api_key="sk-wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as e:
        bad.chat.completions.create(model="gpt-4o", messages=user("x"))
    assert e.value.status_code == 401
    assert e.value.body["code"] == "invalid_api_key"
    with pytest.raises(openai.AuthenticationError):
        bad.models.list()
    r = httpx.get(gateway.base_url + "/v1/models", timeout=5)
    assert r.status_code == 401 and "x-request-id" in r.headers


def test_malformed_json_is_400(gateway):
    r = httpx.post(gateway.base_url + "/v1/chat/completions", content=b'{"model": "gpt-4o", "messages": [',
                   headers={"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"}, timeout=5)
    assert r.status_code == 400
    err = r.json()["error"]
    assert set(err) == {"message", "type", "param", "code"}
    assert err["type"] == "invalid_request_error"


def test_invalid_requests_are_400(client):
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model="gpt-4o", messages=user("x"), n=2)
    assert e.value.body["param"] == "n"
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]}])
    assert "text only" in e.value.message
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="gpt-4o", messages=[])


def test_full_request_schema_is_accepted(client):
    r = client.chat.completions.create(
        model="gpt-4o",
        messages=[
            {"role": "developer", "content": "be brief"},
            {"role": "system", "content": [{"type": "text", "text": "you are a test"}]},
            {"role": "user", "content": [{"type": "text", "text": "part one"}, {"type": "text", "text": "part two"}]},
            {"role": "assistant", "content": None, "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": "call_1", "content": "42"},
            {"role": "user", "content": "and now?"},
        ],
        temperature=0.3, top_p=0.9, max_tokens=100, max_completion_tokens=100, n=1, stop=["\n\n"],
        user="tester", metadata={"k": "v"}, seed=1, presence_penalty=0, frequency_penalty=0,
        tools=[{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}],
        tool_choice="auto", response_format={"type": "text"},
        extra_body={"some_future_field": {"nested": True}},
    )
    assert r.choices[0].finish_reason == "stop"


def test_unknown_route_and_wrong_method(gateway):
    r = gateway.get("/v1/nothing-here")
    assert r.status_code == 404 and r.json()["error"]["code"] == "unknown_url"
    r = httpx.delete(gateway.base_url + "/v1/chat/completions", headers={"Authorization": f"Bearer {API_KEY}"}, timeout=5)
    assert r.status_code == 405 and "error" in r.json()


def test_probes_and_request_id(gateway):
    assert gateway.get("/healthz", auth=False).status_code == 200
    r = gateway.get("/readyz", auth=False)
    assert r.status_code == 200
    assert len(r.headers["x-request-id"]) >= 16
    r = httpx.get(gateway.base_url + "/healthz", headers={"x-request-id": "bad id with spaces"}, timeout=5)
    assert r.headers["x-request-id"] != "bad id with spaces"
    assert gateway.get("/internal/stats", auth=False).status_code == 401


def test_no_key_in_logs(stack, client):
    client.chat.completions.create(model="gpt-4o", messages=user("log check"))
    for gw in stack.gateways:
        assert API_KEY not in gw.process.output()
