"""A multi-step agent loop (tool call -> result -> tool call -> result -> final answer) on
each surface; every follow-up turn continues the upstream session (`x-lingma-session:
reused`) and sends Lingma only the new turn (the tool result)."""

import uuid

from agents import ANTHROPIC_TOOLS, OPENAI_TOOLS, RESPONSES_TOOLS, anthropic_client, answer_tool_calls


def sim_asks(stack, marker):
    return [a for s in stack.sims for a in s.stats()["recent_asks"]
            if marker in (a.get("questionText") or "")]


def session_asks(stack, session_id):
    return [a for s in stack.sims for a in s.stats()["recent_asks"] if a["sessionId"] == session_id]


def assert_loop_upstream(stack, marker, turns):
    first = sim_asks(stack, marker)
    assert len(first) == 1, "only the first turn carries the task text"
    asks = session_asks(stack, first[0]["sessionId"])
    assert len(asks) == turns
    assert [a["isReply"] for a in asks] == [False] + [True] * (turns - 1)
    for a in asks[1:]:
        q = a["questionText"]
        assert q.startswith("<tool_result "), f"a follow-up sends only the tool result: {q[:200]}"
        assert "# Tools (tool-calls v1)" not in q


def test_chat_completions_agent_loop(client, stack):
    marker = uuid.uuid4().hex
    messages = [{"role": "system", "content": "You are an agent."},
                {"role": "user", "content": f"summarise the repo {marker} sim:tool_results=2"}]
    sessions = []
    for step in range(3):
        raw = client.chat.completions.with_raw_response.create(model="gpt-4o", messages=messages,
                                                               tools=OPENAI_TOOLS)
        r = raw.parse()
        sessions.append(raw.headers["x-lingma-session"])
        choice = r.choices[0]
        if step < 2:
            assert choice.finish_reason == "tool_calls", step
            call = choice.message.tool_calls[0]
            messages.append({"role": "assistant", "content": choice.message.content,
                             "tool_calls": [call.model_dump()]})
            messages.append({"role": "tool", "tool_call_id": call.id, "content": f"contents {step}"})
        else:
            assert choice.finish_reason == "stop"
            assert "saw 2 tool result(s)" in choice.message.content
    assert sessions == ["new", "reused", "reused"]
    assert_loop_upstream(stack, marker, 3)


def test_anthropic_agent_loop(gateway, stack):
    claude = anthropic_client(gateway)
    marker = uuid.uuid4().hex
    messages = [{"role": "user", "content": f"fix the bug {marker} sim:tool_results=2"}]
    sessions = []
    for step in range(3):
        raw = claude.messages.with_raw_response.create(
            model="claude-sonnet-4-5", max_tokens=4096, system="You are Claude Code.",
            tools=ANTHROPIC_TOOLS, messages=messages, stream=False)
        m = raw.parse()
        sessions.append(raw.headers["x-lingma-session"])
        if step < 2:
            assert m.stop_reason == "tool_use", step
            use = next(b for b in m.content if b.type == "tool_use")
            messages.append({"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in m.content]})
            messages.append({"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": use.id, "content": [{"type": "text", "text": f"out {step}"}]}]})
        else:
            assert m.stop_reason == "end_turn"
            assert "saw 2 tool result(s)" in m.content[0].text
    assert sessions == ["new", "reused", "reused"]
    assert_loop_upstream(stack, marker, 3)


def test_responses_agent_loop_resending_the_whole_input(client, stack):
    """As Codex does it: store=false and the whole input every turn."""
    marker = uuid.uuid4().hex
    items = [{"type": "message", "role": "user",
              "content": [{"type": "input_text", "text": f"run the tests {marker} sim:tool_results=2"}]}]
    sessions = []
    for step in range(3):
        raw = client.responses.with_raw_response.create(
            model="gpt-5-codex", instructions="You are Codex.", input=items, tools=RESPONSES_TOOLS,
            store=False, prompt_cache_key=marker)
        r = raw.parse()
        sessions.append(raw.headers["x-lingma-session"])
        calls = [o for o in r.output if o.type == "function_call"]
        if step < 2:
            assert len(calls) == 1, step
            items += [o.model_dump(exclude_none=True) for o in r.output]
            items.append({"type": "function_call_output", "call_id": calls[0].call_id, "output": f"ok {step}"})
        else:
            assert not calls
            assert "saw 2 tool result(s)" in r.output_text
    assert sessions == ["new", "reused", "reused"]
    assert_loop_upstream(stack, marker, 3)


def test_responses_agent_loop_with_previous_response_id(client, stack):
    marker = uuid.uuid4().hex
    r = client.responses.create(model="gpt-5-codex", tools=RESPONSES_TOOLS,
                                input=f"plan the work {marker} sim:tool_results=2")
    r, sessions = answer_tool_calls(r, [client, client])
    assert sessions == ["reused", "reused"]
    assert "saw 2 tool result(s)" in r.output_text
    assert_loop_upstream(stack, marker, 3)
