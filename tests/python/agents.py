"""Helpers shared by the tool-calling and agent-loop tests: tools in each surface's
shape and a check that streamed events parse as the official SDKs' models."""

from __future__ import annotations

import json

import anthropic
import openai

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


def openai_client(gw) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.base_url + "/v1", api_key=API_KEY, max_retries=0, timeout=30)


def anthropic_client(gw) -> anthropic.Anthropic:
    # The Anthropic SDK sends the key as x-api-key.
    return anthropic.Anthropic(base_url=gw.base_url, api_key=API_KEY, max_retries=0, timeout=30)


def validate_anthropic_event(event) -> None:
    """Re-parse an event with the SDK's pydantic union (strict validation, not construct)."""
    from anthropic.types import RawMessageStreamEvent
    from pydantic import TypeAdapter
    TypeAdapter(RawMessageStreamEvent).validate_python(event.model_dump(mode="json"))


def validate_responses_event(event) -> None:
    from openai.types.responses import ResponseStreamEvent
    from pydantic import TypeAdapter
    TypeAdapter(ResponseStreamEvent).validate_python(event.model_dump(mode="json", by_alias=True))


def args(call_arguments: str) -> dict:
    return json.loads(call_arguments)


from stack import API_KEY  # noqa: E402
