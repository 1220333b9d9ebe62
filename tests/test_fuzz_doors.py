"""Property-based fuzz of every front door's request parser (Hypothesis).

The property: on any JSON body, a door's `parse_request` (and `parse_count_tokens`) either returns a
valid canonical request — it validates again from its own dump, serializes to UTF-8 JSON and holds a
conversation with content — or refuses it with a client error (`ClientError`: `InvalidRequest` and
the other 4xx). Any other exception (KeyError, TypeError, AttributeError, RecursionError, a pydantic
ValidationError, ...) would be a 500 for a client mistake, and is a parser bug.

Two kinds of bodies: arbitrary JSON built from each door's own field names (so that it gets past the
first checks), and near-valid bodies — a valid request of the door with one or more fields replaced,
deleted or added. The runs are bounded and derandomized (the same examples every run, so the suite
stays deterministic) and keep no example database in the checkout; `LLMBRIDGE_FUZZ_EXAMPLES=N`
runs a deeper random search.

What the parsers see is what `json.loads` gives the bridge: finite numbers (the bridge refuses NaN
and Infinity before parsing) and text without lone surrogates (refused as invalid Unicode by the
bridge before any door sees the body; see `tests/test_unicode_bodies.py`).
"""

from __future__ import annotations

import copy
import json
import os
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from llmbridge.canonical import ChatRequest
from llmbridge.errors import ClientError
from llmbridge.formats import load_formats
from llmbridge.formats.base import ClientFormat

# LLMBRIDGE_FUZZ_EXAMPLES=N runs N random (not derandomized) examples per test: a deeper search.
DEEP = os.environ.get("LLMBRIDGE_FUZZ_EXAMPLES")
FUZZ = settings(
    max_examples=int(DEEP) if DEEP else 200,
    deadline=None,
    derandomize=not DEEP,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

DOORS = {door.name: door for door in load_formats()}
# The model a door's URL carries, where its routes put it there.
URL_MODEL = {"gemini": "models/gemini-2.5-pro"}

# Field names the doors read (OpenAI chat, Anthropic, Gemini, Responses), so that arbitrary JSON
# reaches past the top-level checks.
VOCABULARY = sorted(
    set(
        """
        model messages role content type text name tools tool_choice function arguments parameters tool_calls
        tool_call_id id image_url url detail stream stream_options include_usage temperature top_p max_tokens
        max_completion_tokens stop seed response_format json_schema schema strict reasoning_effort
        parallel_tool_calls user metadata n reasoning_content

        system source media_type data tool_use_id input is_error thinking signature budget_tokens
        cache_control stop_sequences top_k input_schema output_config effort format disable_parallel_tool_use
        display

        contents parts inlineData mimeType fileData fileUri functionCall args functionResponse response thought
        thoughtSignature systemInstruction functionDeclarations parametersJsonSchema toolConfig
        functionCallingConfig mode allowedFunctionNames generationConfig maxOutputTokens topP topK
        stopSequences thinkingConfig thinkingBudget thinkingLevel includeThoughts responseMimeType
        responseSchema candidateCount inline_data function_call partMetadata

        instructions previous_response_id store include call_id output summary encrypted_content
        max_output_tokens namespace input_text output_text input_image image function_call_output reasoning
        message developer assistant
        """.split()
    )
)

SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.sampled_from(VOCABULARY + ["", "auto", "none", "required", "AUTO", "ANY", "NONE", "enabled", "low"])
    | st.text(st.characters(exclude_categories=("Cs",)), max_size=12)
)
KEYS = st.sampled_from(VOCABULARY) | st.text(st.characters(exclude_categories=("Cs",)), max_size=6)
JSON = st.recursive(
    SCALARS,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(KEYS, children, max_size=5),
    max_leaves=25,
)

SKELETONS: dict[str, dict[str, Any]] = {
    "openai": {
        "model": "gemini-2.5-pro",
        "messages": [
            {"role": "system", "content": "be brief"},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "hi"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
                ],
            },
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}],
            },
            {"role": "tool", "tool_call_id": "c1", "content": "done"},
        ],
        "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {}}}}],
        "tool_choice": "auto",
        "temperature": 0.5,
        "max_tokens": 100,
        "stop": ["END"],
        "response_format": {"type": "json_object"},
        "reasoning_effort": "low",
        "stream": True,
        "stream_options": {"include_usage": True},
    },
    "anthropic": {
        "model": "claude-sonnet-4-5",
        "max_tokens": 100,
        "system": [{"type": "text", "text": "be brief"}],
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "hi"},
                    {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AAAA"}},
                ],
            },
            {
                "role": "assistant",
                "content": [
                    {"type": "thinking", "thinking": "hmm", "signature": "sig"},
                    {"type": "tool_use", "id": "t1", "name": "f", "input": {"a": 1}},
                ],
            },
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "done"}]},
        ],
        "tools": [{"name": "f", "description": "d", "input_schema": {"type": "object", "properties": {}}}],
        "tool_choice": {"type": "auto"},
        "thinking": {"type": "enabled", "budget_tokens": 1024},
        "stop_sequences": ["END"],
        "temperature": 1,
        "stream": True,
    },
    "gemini": {
        "contents": [
            {"role": "user", "parts": [{"text": "hi"}, {"inlineData": {"mimeType": "image/png", "data": "AAAA"}}]},
            {"role": "model", "parts": [{"functionCall": {"name": "f", "args": {"a": 1}}, "thoughtSignature": "c2ln"}]},
            {"role": "user", "parts": [{"functionResponse": {"name": "f", "response": {"ok": True}}}]},
        ],
        "systemInstruction": {"parts": [{"text": "be brief"}]},
        "tools": [{"functionDeclarations": [{"name": "f", "parameters": {"type": "OBJECT", "properties": {}}}]}],
        "toolConfig": {"functionCallingConfig": {"mode": "AUTO"}},
        "generationConfig": {
            "temperature": 0.5,
            "maxOutputTokens": 100,
            "stopSequences": ["END"],
            "thinkingConfig": {"thinkingBudget": -1, "includeThoughts": True},
        },
    },
    "responses": {
        "model": "gemini-2.5-pro",
        "instructions": "be brief",
        "input": [
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi"}]},
            {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "c1", "output": "done"},
        ],
        "tools": [{"type": "function", "name": "f", "parameters": {"type": "object", "properties": {}}}],
        "tool_choice": "auto",
        "reasoning": {"effort": "low"},
        "text": {"format": {"type": "json_object"}},
        "max_output_tokens": 100,
        "stream": True,
    },
}


def check(door: ClientFormat, body: Any) -> None:
    """The property, for one body: a valid canonical request, or a client error; both doors' entry points."""
    model = URL_MODEL.get(door.name)
    for parse in (lambda: door.parse_request(body, model=model), lambda: door.parse_count_tokens(body, model=model)):
        try:
            request = parse()
        except ClientError as error:
            assert 400 <= error.status < 500, error
            assert error.message, error
            continue
        assert isinstance(request, ChatRequest)
        again = ChatRequest.model_validate(request.model_dump())
        assert again == request
        json.dumps(request.model_dump(mode="json"), ensure_ascii=False).encode()  # encodable as UTF-8 JSON
        assert request.model, "a request without a model"
        assert request.messages, "an empty conversation"
        assert all(message.parts for message in request.messages), f"an empty turn: {request.messages}"


def paths(value: Any, here: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path into a JSON value (object keys and list indexes), the root included."""
    found = [here]
    if isinstance(value, dict):
        for key, child in value.items():
            found += paths(child, (*here, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            found += paths(child, (*here, index))
    return found


def mutate(data: st.DataObject, body: dict[str, Any]) -> dict[str, Any]:
    """The body with 1-3 mutations at random paths: replaced by any JSON, deleted, or given a new field."""
    body = copy.deepcopy(body)
    for _ in range(data.draw(st.integers(1, 3))):
        candidates = paths(body)[1:]
        path = data.draw(st.sampled_from(candidates))
        parent: Any = body
        for step in path[:-1]:
            parent = parent[step]
        last = path[-1]
        action = data.draw(st.sampled_from(["replace", "replace", "delete", "add"]))
        if action == "replace":
            parent[last] = data.draw(JSON | SCALARS)
        elif action == "delete":
            del parent[last]
        else:
            target = parent[last]
            if isinstance(target, dict):
                target[data.draw(KEYS)] = data.draw(JSON)
            elif isinstance(target, list):
                target.insert(data.draw(st.integers(0, len(target))), data.draw(JSON))
            else:
                parent[last] = data.draw(JSON)
    return body


@pytest.mark.parametrize("name", sorted(DOORS))
def test_every_door_has_a_skeleton_that_parses(name: str) -> None:
    assert set(SKELETONS) == set(DOORS), "a new door needs a valid skeleton here"
    door = DOORS[name]
    request = door.parse_request(copy.deepcopy(SKELETONS[name]), model=URL_MODEL.get(name))
    assert len(request.messages) >= 2 and request.tools


@pytest.mark.parametrize("name", sorted(DOORS))
@FUZZ
@given(body=JSON)
def test_arbitrary_json(name: str, body: Any) -> None:
    check(DOORS[name], body)


@pytest.mark.parametrize("name", sorted(DOORS))
@FUZZ
@given(data=st.data())
def test_near_valid_bodies(name: str, data: st.DataObject) -> None:
    check(DOORS[name], mutate(data, SKELETONS[name]))


@pytest.mark.parametrize("name", sorted(DOORS))
@FUZZ
@given(extra=st.dictionaries(KEYS, JSON, max_size=4), data=st.data())
def test_valid_bodies_with_arbitrary_top_level_fields(name: str, extra: dict[str, Any], data: st.DataObject) -> None:
    body = {**copy.deepcopy(SKELETONS[name]), **extra}
    check(DOORS[name], body)
