"""The Anthropic Messages surface as the official `anthropic` package sees it."""

import json
import uuid

import anthropic
import httpx
import pytest
from anthropic.types import Message, RawMessageStreamEvent
from pydantic import TypeAdapter

from agents import ANTHROPIC_TOOLS, anthropic_client
from stack import API_KEY

EVENT = TypeAdapter(RawMessageStreamEvent)


@pytest.fixture(scope="module")
def claude(gateway) -> anthropic.Anthropic:
    return anthropic_client(gateway)


def user(text):
    return [{"role": "user", "content": text}]


def test_non_streaming_message(claude):
    q = f"hello claude {uuid.uuid4().hex[:6]}"
    m = claude.messages.create(model="claude-sonnet-4-5", max_tokens=1024, messages=user(q),
                               system=[{"type": "text", "text": "be brief"}])
    assert m.type == "message" and m.role == "assistant" and m.id.startswith("msg_")
    assert m.model == "claude-sonnet-4-5", "claude-* names are echoed and served by DEFAULT_MODEL"
    assert m.stop_reason == "end_turn"
    assert [b.type for b in m.content] == ["text"]
    assert q in m.content[0].text
    assert m.usage.input_tokens > 0 and m.usage.output_tokens > 0


def test_streaming_message_event_sequence(claude):
    q = f"stream claude {uuid.uuid4().hex[:6]}"
    events = list(claude.messages.create(model="claude-sonnet-4-5", max_tokens=1024,
                                         messages=user(q), stream=True))
    kinds = [e.type for e in events]
    assert kinds[0] == "message_start"
    assert kinds[1] == "content_block_start"
    assert kinds[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    assert set(kinds[2:-3]) == {"content_block_delta"}
    for e in events:
        EVENT.validate_python(e.model_dump(mode="json"))
    text = "".join(e.delta.text for e in events if e.type == "content_block_delta")
    assert q in text
    assert events[-2].delta.stop_reason == "end_turn"


def test_raw_sse_has_ping_and_validates_against_the_sdk_types(gateway):
    body = {"model": "claude-3-5-haiku-latest", "max_tokens": 50, "stream": True,
            "messages": user(f"raw {uuid.uuid4().hex[:6]}"), "tools": ANTHROPIC_TOOLS}
    with httpx.stream("POST", gateway.base_url + "/v1/messages?beta=true", json=body,
                      headers={"x-api-key": API_KEY, "anthropic-version": "2023-06-01",
                               "anthropic-beta": "claude-code-20250219,interleaved-thinking-2025-05-14"},
                      timeout=20) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        raw = r.read().decode()
    frames = [f for f in raw.split("\n\n") if f]
    names = []
    for f in frames:
        event_line, data_line = f.split("\n")
        name = event_line.removeprefix("event: ")
        data = json.loads(data_line.removeprefix("data: "))
        assert data["type"] == name
        names.append(name)
        if name != "ping":
            EVENT.validate_python(data)
    assert names[:3] == ["message_start", "content_block_start", "ping"]
    assert names[-2:] == ["message_delta", "message_stop"]
    tool_starts = [json.loads(f.split("\n")[1][6:]) for f in frames if '"tool_use"' in f and "content_block_start" in f]
    assert tool_starts and tool_starts[0]["content_block"]["name"] == "read_file"
    deltas = [json.loads(f.split("\n")[1][6:])["delta"] for f in frames if "input_json_delta" in f]
    assert "path" in json.loads("".join(d["partial_json"] for d in deltas))
    assert '"stop_reason":"tool_use"' in raw


def test_tool_use_round_trip(claude):
    marker = uuid.uuid4().hex[:6]
    messages = user(f"read notes.txt {marker}")
    first = claude.messages.create(model="claude-sonnet-4-5", max_tokens=1024, messages=messages,
                                   tools=ANTHROPIC_TOOLS)
    assert first.stop_reason == "tool_use"
    use = next(b for b in first.content if b.type == "tool_use")
    assert use.name == "read_file" and use.id.startswith("toolu_")
    assert isinstance(use.input["path"], str)
    messages += [
        {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in first.content]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id, "content": "the notes"}]},
    ]
    raw = claude.messages.with_raw_response.create(model="claude-sonnet-4-5", max_tokens=1024,
                                                   messages=messages, tools=ANTHROPIC_TOOLS)
    second = raw.parse()
    assert raw.headers["x-lingma-session"] == "reused"
    assert second.stop_reason == "end_turn"
    assert "saw 1 tool result" in second.content[0].text


def test_streaming_tool_use_with_the_sdk_helper(claude):
    with claude.messages.stream(model="claude-sonnet-4-5", max_tokens=1024, tools=ANTHROPIC_TOOLS,
                                messages=user(f"stream a tool {uuid.uuid4().hex[:6]}")) as stream:
        final = stream.get_final_message()
    Message.model_validate(final.model_dump(mode="json"))
    assert final.stop_reason == "tool_use"
    use = next(b for b in final.content if b.type == "tool_use")
    assert use.name == "read_file" and "path" in use.input


def test_tool_choice_any_and_named(claude):
    for choice in ({"type": "any"}, {"type": "tool", "name": "read_file"}):
        m = claude.messages.create(model="claude-sonnet-4-5", max_tokens=100, tools=ANTHROPIC_TOOLS,
                                   tool_choice=choice, messages=user(f"forced {uuid.uuid4().hex[:6]}"))
        assert m.stop_reason == "tool_use", choice


def test_count_tokens(claude):
    short = claude.messages.count_tokens(model="claude-sonnet-4-5", messages=user("hi"))
    longer = claude.messages.count_tokens(model="claude-sonnet-4-5", messages=user("hi " * 400),
                                          system="be brief", tools=ANTHROPIC_TOOLS)
    assert short.input_tokens >= 1
    assert longer.input_tokens > short.input_tokens + 300


def test_claude_code_request_shape_is_accepted(gateway):
    body = {
        "model": "claude-opus-4-1-20250805", "max_tokens": 32000, "stream": False,
        "system": [{"type": "text", "text": "You are Claude Code.", "cache_control": {"type": "ephemeral"}}],
        "metadata": {"user_id": "user_x_account__session_y"},
        "thinking": {"type": "enabled", "budget_tokens": 4000},
        "context_management": {"edits": [{"type": "clear_tool_uses_20250919"}]},
        "temperature": 1,
        "tools": ANTHROPIC_TOOLS + [{"type": "web_search_20250305", "name": "web_search", "max_uses": 3}],
        "messages": [{"role": "user", "content": [
            {"type": "text", "text": f"<system-reminder>ctx</system-reminder> hi {uuid.uuid4().hex[:6]}",
             "cache_control": {"type": "ephemeral"}}]}],
    }
    r = httpx.post(gateway.base_url + "/v1/messages?beta=true", json=body, timeout=20,
                   headers={"x-api-key": API_KEY, "anthropic-version": "2023-06-01",
                            "anthropic-beta": "claude-code-20250219,context-management-2025-06-27"})
    assert r.status_code == 200, r.text
    Message.model_validate(r.json())


def test_errors_take_the_anthropic_shape(gateway, claude):
    bad = anthropic.Anthropic(base_url=gateway.base_url, api_key="sk-wrong", max_retries=0)
    with pytest.raises(anthropic.AuthenticationError) as e:
        bad.messages.create(model="claude-x", max_tokens=10, messages=user("x"))
    assert e.value.body == {"type": "error", "error": {"type": "authentication_error",
                                                       "message": e.value.body["error"]["message"]}}
    with pytest.raises(anthropic.BadRequestError) as e:
        claude.messages.create(model="claude-x", max_tokens=10, messages=[{"role": "user", "content": [
            {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AAAA"}}]}])
    assert e.value.body["error"]["type"] == "invalid_request_error"
    assert "text only" in e.value.body["error"]["message"]
    with pytest.raises(anthropic.NotFoundError) as e:
        claude.messages.create(model="dashscope_no_such_model", max_tokens=10, messages=user("x"))
    assert e.value.body["error"]["type"] == "not_found_error"
    # x-api-key works on the OpenAI routes too: one key, every client route.
    r = httpx.get(gateway.base_url + "/v1/models", headers={"x-api-key": API_KEY}, timeout=5)
    assert r.status_code == 200


def test_a_failure_mid_stream_is_an_error_event(claude, stack):
    # Last in this module: `drop` cuts the simulator's connection after half the answer.
    for sim in stack.sims:
        assert sim.control("POST", "/control/fault", {"fault": "drop", "times": 1}).status_code < 300
    try:
        with pytest.raises(anthropic.APIStatusError) as e:
            for event in claude.messages.create(model="claude-x", max_tokens=100, stream=True,
                                                messages=user(f"drop me {uuid.uuid4().hex[:6]}")):
                EVENT.validate_python(event.model_dump(mode="json"))
    finally:
        for sim in stack.sims:
            sim.control("POST", "/control/fault", {"fault": "none"})
    assert e.value.body["type"] == "error"
    assert e.value.body["error"]["type"] == "api_error"
