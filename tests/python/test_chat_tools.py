"""Emulated tool calling on /v1/chat/completions, as the official `openai` package sees it."""

import json
import uuid

import httpx
import openai
import pytest

from openai.types.chat import ChatCompletion, ChatCompletionChunk

from agents import OPENAI_TOOLS, args
from stack import API_KEY


def user(text):
    return [{"role": "user", "content": text}]


def test_non_streaming_tool_call(client):
    r = client.chat.completions.create(
        model="gpt-4o", messages=user(f"read the readme {uuid.uuid4().hex[:6]}"), tools=OPENAI_TOOLS)
    ChatCompletion.model_validate(r.model_dump(mode="json"))
    choice = r.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    calls = choice.message.tool_calls
    assert len(calls) == 1
    call = calls[0]
    assert call.type == "function" and call.id.startswith("call_")
    assert call.function.name == "read_file"
    assert isinstance(args(call.function.arguments)["path"], str)


def test_streaming_tool_call_deltas_are_openai_shaped(client):
    chunks = list(client.chat.completions.create(
        model="gpt-4o", messages=user(f"stream a call {uuid.uuid4().hex[:6]}"),
        tools=OPENAI_TOOLS, stream=True))
    for c in chunks:
        ChatCompletionChunk.model_validate(c.model_dump(mode="json"))
    pieces = [tc for c in chunks for tc in (c.choices[0].delta.tool_calls or [])]
    assert len(pieces) >= 2
    first, rest = pieces[0], pieces[1:]
    assert first.index == 0 and first.id.startswith("call_") and first.type == "function"
    assert first.function.name == "read_file" and first.function.arguments == ""
    assert all(p.index == 0 and p.id is None and p.function.name is None for p in rest)
    arguments = "".join(p.function.arguments for p in rest)
    assert "path" in json.loads(arguments)
    assert chunks[-1].choices[0].finish_reason == "tool_calls"
    assert all(c.choices[0].finish_reason is None for c in chunks[:-1])


def test_forced_and_named_tool_choice_are_served(client):
    for choice in ("required", {"type": "function", "function": {"name": "read_file"}}):
        r = client.chat.completions.create(
            model="gpt-4o", messages=user(f"force {uuid.uuid4().hex[:6]}"), tools=OPENAI_TOOLS,
            tool_choice=choice)
        assert r.choices[0].finish_reason == "tool_calls", choice
        assert r.choices[0].message.tool_calls[0].function.name == "read_file"
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(
            model="gpt-4o", messages=user("x"), tools=OPENAI_TOOLS,
            tool_choice={"type": "function", "function": {"name": "no_such_tool"}})
    assert e.value.body["param"] == "tool_choice"


def test_tool_choice_none_answers_in_text(client):
    r = client.chat.completions.create(
        model="gpt-4o", messages=user(f"just talk {uuid.uuid4().hex[:6]}"), tools=OPENAI_TOOLS,
        tool_choice="none")
    assert r.choices[0].finish_reason == "stop"
    assert r.choices[0].message.tool_calls is None
    assert "lingma-sim" in r.choices[0].message.content


def test_prose_around_a_call_streams_as_text(client):
    r = client.chat.completions.create(
        model="gpt-4o", messages=user(f"sim:tool_style=prose {uuid.uuid4().hex[:6]}"), tools=OPENAI_TOOLS)
    m = r.choices[0].message
    assert r.choices[0].finish_reason == "tool_calls"
    assert "lingma-sim calls read_file now." in m.content
    assert "<tool_call>" not in m.content
    assert len(m.tool_calls) == 1


class faults:
    """Arm a fault on every simulator for the next `times` chats; cleared after."""

    def __init__(self, stack, fault, times):
        self.sims, self.fault, self.times = stack.sims, fault, times

    def __enter__(self):
        for sim in self.sims:
            r = sim.control("POST", "/control/fault", {"fault": self.fault, "times": self.times})
            assert r.status_code < 300, r.text

    def __exit__(self, *exc):
        for sim in self.sims:
            sim.control("POST", "/control/fault", {"fault": "none"})


def test_malformed_call_gets_one_corrective_reask(gateway, client, stack):
    before = gateway.metric("gateway_tool_reasks_total")
    with faults(stack, "tool_malformed", 1):
        raw = client.chat.completions.with_raw_response.create(
            model="gpt-4o", messages=user(f"fix me {uuid.uuid4().hex[:6]}"), tools=OPENAI_TOOLS,
            tool_choice="required")
    r = raw.parse()
    assert r.choices[0].finish_reason == "tool_calls"
    assert r.choices[0].message.tool_calls[0].function.name == "read_file"
    assert gateway.metric("gateway_tool_reasks_total") == before + 1
    text = gateway.get("/metrics").text
    assert 'gateway_tool_parse_failures_total{kind="malformed"}' in text


def test_a_model_that_never_calls_gets_a_clear_error(client, stack):
    with faults(stack, "tool_ignore", 2), pytest.raises(openai.APIStatusError) as e:
        client.chat.completions.create(
            model="gpt-4o", messages=user(f"never calls {uuid.uuid4().hex[:6]}"),
            tools=OPENAI_TOOLS, tool_choice="required")
    assert e.value.status_code == 502
    assert "corrective re-ask" in e.value.message


def test_broken_calls_never_reach_a_stream_as_tool_calls(gateway, stack):
    body = {"model": "gpt-4o", "stream": True, "tools": OPENAI_TOOLS,
            "messages": user(f"cut short {uuid.uuid4().hex[:6]}")}
    with faults(stack, "tool_partial", 2), httpx.stream("POST", gateway.base_url + "/v1/chat/completions", json=body,
                      headers={"Authorization": f"Bearer {API_KEY}"}, timeout=20) as r:
        assert r.status_code == 200
        events = [line[len("data: "):] for line in r.iter_lines() if line.startswith("data: ")]
    payloads = [json.loads(e) for e in events if e != "[DONE]"]
    assert "error" in payloads[-1], "two partial answers end in an error event"
    assert not any(p.get("choices") and p["choices"][0]["delta"].get("tool_calls") for p in payloads)
