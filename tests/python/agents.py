"""What the tool-calling and agent-loop tests share: one tool in each surface's shape and
an Anthropic client for a gateway."""

from __future__ import annotations

import json

import anthropic

from stack import API_KEY

READ_FILE_SCHEMA = {
    "type": "object",
    "properties": {"path": {"type": "string", "minLength": 1}},
    "required": ["path"],
}

OPENAI_TOOLS = [{"type": "function", "function": {
    "name": "read_file", "description": "Read a file", "parameters": READ_FILE_SCHEMA}}]
ANTHROPIC_TOOLS = [{"name": "read_file", "description": "Read a file", "input_schema": READ_FILE_SCHEMA}]
RESPONSES_TOOLS = [{"type": "function", "name": "read_file", "description": "Read a file",
                    "parameters": READ_FILE_SCHEMA, "strict": False}]


def anthropic_client(gw) -> anthropic.Anthropic:
    # The Anthropic SDK sends the key as x-api-key; no retries, so tests see first answers.
    return anthropic.Anthropic(base_url=gw.base_url, api_key=API_KEY, max_retries=0, timeout=30)


def args(call_arguments: str) -> dict:
    return json.loads(call_arguments)


def answer_tool_calls(first, clients):
    """Answer the function call of `first`, then of each next response, one step per client
    (Responses API, chained by `previous_response_id`); the last response and each step's
    `x-lingma-session`."""
    r, sessions = first, []
    for step, client in enumerate(clients):
        call = next(o for o in r.output if o.type == "function_call")
        raw = client.responses.with_raw_response.create(
            model="gpt-5-codex", tools=RESPONSES_TOOLS, previous_response_id=r.id,
            input=[{"type": "function_call_output", "call_id": call.call_id, "output": f"done {step}"}])
        r = raw.parse()
        sessions.append(raw.headers["x-lingma-session"])
    return r, sessions
