"""OpenAI chat completions: request parsing into the canonical model, and rendering."""

from __future__ import annotations

import json

import pytest
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from llmbridge.canonical import (
    ChatResult,
    Finish,
    ImagePart,
    ReasoningDelta,
    ReasoningPart,
    TextDelta,
    TextPart,
    ToolCallDelta,
    ToolCallPart,
    ToolCallStart,
    ToolResultPart,
    Usage,
    UsageEvent,
)
from llmbridge.errors import InvalidRequest, PermissionDenied, RateLimited
from llmbridge.formats.openai import OpenAIFormat

FMT = OpenAIFormat()


def parse(**body):
    body.setdefault("model", "m")
    body.setdefault("messages", [{"role": "user", "content": "hi"}])
    return FMT.parse_request(body)


def test_system_and_developer_messages_become_system_parts():
    request = parse(
        messages=[
            {"role": "system", "content": "be brief"},
            {"role": "developer", "content": [{"type": "text", "text": "use tools"}]},
            {"role": "user", "content": "hi"},
        ]
    )
    assert [p.text for p in request.system] == ["be brief", "use tools"]
    assert request.messages[0].text() == "hi"


def test_image_data_url():
    request = parse(
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "what is this"},
                    {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,AAAA"}},
                ],
            }
        ]
    )
    image = request.messages[0].parts[1]
    assert isinstance(image, ImagePart) and image.media_type == "image/jpeg" and image.data == "AAAA"


def test_tool_turns_and_parallel_calls():
    request = parse(
        messages=[
            {"role": "user", "content": "weather in two cities"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {"id": "a", "type": "function", "function": {"name": "weather", "arguments": '{"city":"Oslo"}'}},
                    {"id": "b", "type": "function", "function": {"name": "weather", "arguments": '{"city":"Rome"}'}},
                ],
            },
            {"role": "tool", "tool_call_id": "a", "content": "cold"},
            {"role": "tool", "tool_call_id": "b", "content": "warm"},
        ],
        tools=[{"type": "function", "function": {"name": "weather", "parameters": {"type": "object"}}}],
        tool_choice={"type": "function", "function": {"name": "weather"}},
    )
    assistant, results = request.messages[1], request.messages[2]
    assert [p.arguments["city"] for p in assistant.parts if isinstance(p, ToolCallPart)] == ["Oslo", "Rome"]
    assert results.role == "user" and all(isinstance(p, ToolResultPart) for p in results.parts)
    assert [p.name for p in results.parts] == ["weather", "weather"]
    assert request.tool_choice.mode == "tool" and request.tool_choice.name == "weather"


def test_signature_rides_in_tool_call_id_and_comes_back():
    request = parse(
        messages=[
            {"role": "user", "content": "x"},
            {
                "role": "assistant",
                "tool_calls": [
                    {"id": "call_1__thought__SIG", "type": "function", "function": {"name": "f", "arguments": "{}"}}
                ],
            },
            {"role": "tool", "tool_call_id": "call_1__thought__SIG", "content": "ok"},
        ]
    )
    call = request.messages[1].parts[0]
    assert call.id == "call_1" and call.provider_metadata == {"gemini": {"thought_signature": "SIG"}}
    assert request.messages[2].parts[0].tool_call_id == "call_1"


@pytest.mark.parametrize(
    "body,param",
    [
        ({"model": 3}, "model"),
        ({"messages": []}, "messages"),
        ({"temperature": 3}, "temperature"),
        ({"n": 2}, "n"),
        ({"logprobs": True}, "logprobs"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"reasoning_effort": "huge"}, "reasoning_effort"),
        ({"response_format": {"type": "xml"}}, "response_format.type"),
        ({"tools": [{"type": "web_search"}]}, "tools[0].type"),
        ({"stop": ["a", "b", "c", "d", "e"]}, "stop"),
        ({"frobnicate": 1}, "frobnicate"),
        ({"parallel_tool_calls": "maybe"}, "parallel_tool_calls"),
        (
            {"tools": [{"type": "function", "function": {"name": "f", "description": 5}}]},
            "tools[0].function.description",
        ),
        (
            {"response_format": {"type": "json_schema", "json_schema": {"name": 5, "schema": {}}}},
            "response_format.json_schema.name",
        ),
        (
            {"response_format": {"type": "json_schema", "json_schema": {"strict": "maybe", "schema": {}}}},
            "response_format.json_schema.strict",
        ),
        ({"messages": [{"role": "user", "content": [{"type": "input_audio"}]}]}, "messages[0].content[0].type"),
        # wrong types found by tests/test_fuzz_doors.py (were a TypeError / AttributeError: a 500)
        ({"model": ""}, "model"),
        (
            {"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "tool_calls": True}]},
            "messages[1].tool_calls",
        ),
        (
            {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": "data:x"}]}]},
            "messages[0].content[0].image_url",
        ),
        (
            {
                "messages": [
                    {"role": "user", "content": "a"},
                    {
                        "role": "assistant",
                        "tool_calls": [
                            {"id": "c", "type": "function", "function": {"name": "f", "arguments": "[" * 100_000}}
                        ],
                    },
                ]
            },
            "messages[1].tool_calls[0].function.arguments",
        ),
        (
            {
                "messages": [
                    {"role": "user", "content": "a"},
                    {
                        "role": "assistant",
                        "tool_calls": [
                            {"id": "c", "type": "function", "function": {"name": "f", "arguments": '{"x": NaN}'}}
                        ],
                    },
                ]
            },
            "messages[1].tool_calls[0].function.arguments",
        ),
    ],
)
def test_parameters_that_cannot_be_honoured_are_named(body, param):
    with pytest.raises(InvalidRequest) as info:
        parse(**body)
    assert info.value.param == param


def test_a_value_pydantic_refuses_is_a_400_not_a_500(monkeypatch):
    # safety net: a value the typed getters let through still becomes InvalidRequest naming the field
    from llmbridge.formats import openai_parse

    monkeypatch.setattr(openai_parse, "_parse_stop", lambda stop: [5])
    with pytest.raises(InvalidRequest) as info:
        parse()
    assert info.value.param == "stop.0" and "pydantic" not in info.value.message


def test_generation_parameters():
    request = parse(
        temperature=0,
        top_p=0.5,
        max_completion_tokens=99,
        stop="END",
        seed=7,
        response_format={"type": "json_schema", "json_schema": {"name": "r", "schema": {"type": "object"}}},
        reasoning_effort="low",
        stream=True,
        stream_options={"include_usage": True},
    )
    assert request.temperature == 0 and request.top_p == 0.5 and request.max_tokens == 99
    assert request.stop == ["END"] and request.seed == 7 and request.stream and request.stream_usage
    assert request.response_format.json_schema == {"type": "object"} and request.reasoning.effort == "low"


def test_render_result_validates_against_the_sdk_types():
    result = ChatResult(
        id="chatcmpl-1",
        model="m",
        finish_reason="tool_calls",
        parts=[
            ReasoningPart(text="thinking"),
            TextPart(text="calling"),
            ToolCallPart(
                id="c1", name="f", arguments={"a": 1}, provider_metadata={"gemini": {"thought_signature": "S"}}
            ),
        ],
        usage=Usage(input_tokens=10, output_tokens=5, cached_tokens=4, reasoning_tokens=2),
    )
    body = FMT.render_result(result, parse())
    completion = ChatCompletion.model_validate(body)
    message = completion.choices[0].message
    assert message.content == "calling" and message.tool_calls[0].id == "c1__thought__S"
    assert json.loads(message.tool_calls[0].function.arguments) == {"a": 1}
    assert body["choices"][0]["message"]["reasoning_content"] == "thinking"
    assert completion.usage.prompt_tokens_details.cached_tokens == 4
    assert completion.usage.completion_tokens_details.reasoning_tokens == 2


def sse_chunks(data: bytes) -> list[dict]:
    return [
        json.loads(line[6:])
        for line in data.decode().split("\n")
        if line.startswith("data: ") and line != "data: [DONE]"
    ]


def test_stream_renderer_golden_sequence():
    renderer = FMT.stream_renderer(parse(stream=True, stream_options={"include_usage": True}), "id1", "m")
    out = renderer.start()
    for event in [
        ReasoningDelta(text="hm"),
        TextDelta(text="Hi"),
        ToolCallStart(index=0, id="c", name="f"),
        ToolCallDelta(index=0, arguments='{"a":'),
        ToolCallDelta(index=0, arguments="1}"),
        UsageEvent(usage=Usage(input_tokens=3, output_tokens=4)),
        Finish(reason="tool_calls"),
    ]:
        out += renderer.feed(event)
    out += renderer.close()
    assert out.endswith(b"data: [DONE]\n\n")
    chunks = [ChatCompletionChunk.model_validate(c) for c in sse_chunks(out)]
    deltas = [c.choices[0].delta for c in chunks if c.choices]
    assert deltas[0].role == "assistant"
    assert "".join(d.tool_calls[0].function.arguments for d in deltas if d.tool_calls) == '{"a":1}'
    assert chunks[-2].choices[0].finish_reason == "tool_calls"
    assert chunks[-1].usage.total_tokens == 7 and chunks[-1].choices == []


def test_error_shape_and_retry_after():
    status, headers, body = FMT.error_response(RateLimited("slow down", retry_after=2.4))
    assert status == 429 and headers["retry-after"] == "3"  # rounded up: never too early
    assert json.loads(body)["error"] == {
        "message": "slow down",
        "type": "rate_limit_error",
        "param": None,
        "code": "rate_limited",
    }


def test_permission_denied_is_a_403_permission_error():
    status, _, body = FMT.error_response(PermissionDenied("this project may not use the model"))
    assert status == 403 and json.loads(body)["error"]["type"] == "permission_error"
