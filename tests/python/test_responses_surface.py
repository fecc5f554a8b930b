"""The OpenAI Responses surface as the official `openai` package sees it."""

import json
import uuid

import httpx
import openai
import pytest
from openai.types.responses import Response, ResponseStreamEvent
from pydantic import TypeAdapter

from agents import RESPONSES_TOOLS
from stack import API_KEY

EVENT = TypeAdapter(ResponseStreamEvent)


def test_non_streaming_response(client):
    q = f"respond {uuid.uuid4().hex[:6]}"
    r = client.responses.create(model="gpt-5-codex", input=q, instructions="be brief")
    Response.model_validate(r.model_dump(mode="json", by_alias=True))
    assert r.object == "response" and r.id.startswith("resp_") and r.status == "completed"
    assert r.model == "gpt-5-codex"
    assert q in r.output_text
    assert r.output[0].type == "message" and r.output[0].content[0].type == "output_text"
    assert r.usage.total_tokens == r.usage.input_tokens + r.usage.output_tokens > 0


def test_streaming_event_sequence(client):
    q = f"stream a response {uuid.uuid4().hex[:6]}"
    events = list(client.responses.create(model="gpt-5-codex", input=q, stream=True))
    kinds = [e.type for e in events]
    assert kinds[:4] == ["response.created", "response.in_progress", "response.output_item.added",
                         "response.content_part.added"]
    assert kinds[-4:] == ["response.output_text.done", "response.content_part.done",
                          "response.output_item.done", "response.completed"]
    assert set(kinds[4:-4]) == {"response.output_text.delta"}
    assert [e.sequence_number for e in events] == list(range(len(events)))
    for e in events:
        EVENT.validate_python(e.model_dump(mode="json", by_alias=True))
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert q in text
    assert events[-1].response.output_text == text


def test_function_call_streaming_and_not(client):
    r = client.responses.create(model="gpt-5-codex", input=f"call {uuid.uuid4().hex[:6]}",
                                tools=RESPONSES_TOOLS + [{"type": "web_search"}])
    calls = [o for o in r.output if o.type == "function_call"]
    assert len(calls) == 1 and calls[0].name == "read_file"
    assert "path" in json.loads(calls[0].arguments) and calls[0].call_id.startswith("call_")

    events = list(client.responses.create(model="gpt-5-codex", input=f"stream call {uuid.uuid4().hex[:6]}",
                                          tools=RESPONSES_TOOLS, stream=True))
    for e in events:
        EVENT.validate_python(e.model_dump(mode="json", by_alias=True))
    kinds = [e.type for e in events]
    assert "response.function_call_arguments.delta" in kinds
    done = next(e for e in events if e.type == "response.function_call_arguments.done")
    assert "path" in json.loads(done.arguments)
    final = events[-1].response
    assert final.output[-1].type == "function_call" and final.output[-1].arguments == done.arguments


def test_previous_response_id_continues_the_conversation(client):
    marker = uuid.uuid4().hex[:8]
    first = client.responses.create(model="gpt-5-codex", input=f"remember {marker}")
    raw = client.responses.with_raw_response.create(model="gpt-5-codex", input="and then?",
                                                    previous_response_id=first.id)
    second = raw.parse()
    assert raw.headers["x-lingma-session"] == "reused"
    assert second.previous_response_id == first.id
    assert "turn 2 of session" in second.output_text
    fetched = client.responses.retrieve(second.id)
    assert fetched.id == second.id and fetched.output_text == second.output_text


def test_unknown_previous_response_id_is_a_clear_404(client, gateway):
    with pytest.raises(openai.NotFoundError) as e:
        client.responses.create(model="gpt-5-codex", input="x", previous_response_id="resp_nope")
    assert e.value.body["param"] == "previous_response_id"
    assert e.value.body["code"] == "previous_response_not_found"
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve("resp_nope")


def test_another_keys_response_is_not_found(multi_key_gateway):
    gw, key_a, key_b = multi_key_gateway
    a = openai.OpenAI(base_url=gw.base_url + "/v1", api_key=key_a, max_retries=0, timeout=30)
    b = openai.OpenAI(base_url=gw.base_url + "/v1", api_key=key_b, max_retries=0, timeout=30)
    first = a.responses.create(model="gpt-5-codex", input=f"secret {uuid.uuid4().hex[:6]}")
    with pytest.raises(openai.NotFoundError):
        b.responses.create(model="gpt-5-codex", input="x", previous_response_id=first.id)
    with pytest.raises(openai.NotFoundError):
        b.responses.retrieve(first.id)
    assert a.responses.retrieve(first.id).id == first.id


def test_codex_request_shape_is_accepted(gateway):
    body = {
        "model": "gpt-5-codex", "instructions": "You are Codex.", "store": False, "stream": True,
        "reasoning": {"effort": "medium", "summary": "auto"}, "include": ["reasoning.encrypted_content"],
        "prompt_cache_key": str(uuid.uuid4()), "parallel_tool_calls": False, "tool_choice": "auto",
        "tools": RESPONSES_TOOLS + [{"type": "web_search"}],
        "input": [
            {"type": "message", "role": "developer", "content": [{"type": "input_text", "text": "<env/>"}]},
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": f"hi {uuid.uuid4().hex[:6]}"}]},
        ],
    }
    with httpx.stream("POST", gateway.base_url + "/v1/responses", json=body,
                      headers={"Authorization": f"Bearer {API_KEY}"}, timeout=20) as r:
        assert r.status_code == 200
        raw = r.read().decode()
    for frame in (f for f in raw.split("\n\n") if f):
        event, data = frame.split("\n")
        payload = json.loads(data.removeprefix("data: "))
        assert payload["type"] == event.removeprefix("event: ")
        EVENT.validate_python(payload)
    assert '"type":"response.completed"' in raw


def test_a_failure_mid_stream_is_response_failed(client, stack):
    # Last in this module: `drop` cuts the simulator's connection after half the answer.
    for sim in stack.sims:
        assert sim.control("POST", "/control/fault", {"fault": "drop", "times": 1}).status_code < 300
    try:
        events = list(client.responses.create(model="gpt-5-codex", input=f"drop me {uuid.uuid4().hex[:6]}",
                                              stream=True))
    finally:
        for sim in stack.sims:
            sim.control("POST", "/control/fault", {"fault": "none"})
    for e in events:
        EVENT.validate_python(e.model_dump(mode="json", by_alias=True))
    assert events[0].type == "response.created"
    assert any(e.type == "response.output_text.delta" for e in events), "half the answer came through"
    last = events[-1]
    assert last.type == "response.failed"
    assert last.response.status == "failed" and last.response.error.code == "server_error"
    assert [e.sequence_number for e in events] == list(range(len(events)))
