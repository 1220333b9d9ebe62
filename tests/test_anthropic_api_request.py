"""Canonical request -> Anthropic Messages body: tables of inputs and the exact wire they become."""

from __future__ import annotations

import pytest

from llmbridge.canonical import (
    ChatRequest,
    ImagePart,
    Message,
    Reasoning,
    ReasoningPart,
    ResponseFormat,
    TextPart,
    Tool,
    ToolCallPart,
    ToolChoice,
    ToolResultPart,
)
from llmbridge.config import AccountConfig
from llmbridge.errors import ConfigError, InvalidRequest
from llmbridge.providers.anthropic_api.provider import AnthropicProvider
from llmbridge.providers.anthropic_api.request import build_body, build_count_body, check_request
from llmbridge.providers.base import provider_class
from tests.fakes.anthropic_api import check_messages


def req(*messages: Message, **kw) -> ChatRequest:
    return ChatRequest(model="claude-test", messages=list(messages) or [user("hi")], **kw)


def user(*parts) -> Message:
    return Message(role="user", parts=[TextPart(text=p) if isinstance(p, str) else p for p in parts])


def assistant(*parts) -> Message:
    return Message(role="assistant", parts=[TextPart(text=p) if isinstance(p, str) else p for p in parts])


def test_minimal_body():
    body = build_body(req(), "claude-sonnet-4-5")
    assert body == {
        "model": "claude-sonnet-4-5",
        "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}],
        "max_tokens": 8192,
        "stream": True,
    }


def test_a_non_stream_body_has_no_stream_field_as_the_sdk_sends_it():
    body = build_body(req(), "claude-sonnet-4-5", stream=False)
    assert body == {
        "model": "claude-sonnet-4-5",
        "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}],
        "max_tokens": 8192,
    }


@pytest.mark.parametrize(
    ("kw", "expected"),
    [
        ({"temperature": 0.2, "top_p": 0.9, "top_k": 5}, {"temperature": 0.2, "top_p": 0.9, "top_k": 5}),
        ({"stop": ["END", "##"]}, {"stop_sequences": ["END", "##"]}),
        ({"max_tokens": 100}, {"max_tokens": 100}),
        (
            {"system": [TextPart(text="be brief"), TextPart(text="", provider_metadata={})]},
            {"system": [{"type": "text", "text": "be brief"}]},
        ),
        (
            {"response_format": ResponseFormat(type="json_schema", json_schema={"type": "object"})},
            {"output_config": {"format": {"type": "json_schema", "schema": {"type": "object"}}}},
        ),
    ],
)
def test_generation_fields(kw, expected):
    body = build_body(req(**kw), "m")
    assert {k: body[k] for k in expected} == expected


@pytest.mark.parametrize(
    ("reasoning", "max_tokens", "thinking", "wire_max"),
    [
        (Reasoning(budget_tokens=5000), None, {"type": "enabled", "budget_tokens": 5000}, 8192 + 5000),
        (Reasoning(budget_tokens=5000), 9000, {"type": "enabled", "budget_tokens": 5000}, 9000),
        (Reasoning(effort="high"), None, {"type": "enabled", "budget_tokens": 16384}, 8192 + 16384),
        (Reasoning(effort="medium"), 4000, {"type": "enabled", "budget_tokens": 3999}, 4000),
        (Reasoning(effort="low"), 500, None, 500),  # below Anthropic's 1024 minimum: thinking stays off
        (Reasoning(effort="none"), None, {"type": "disabled"}, 8192),
        (Reasoning(budget_tokens=0), None, {"type": "disabled"}, 8192),
        (Reasoning(include_thoughts=True), None, None, 8192),
    ],
)
def test_thinking(reasoning, max_tokens, thinking, wire_max):
    body = build_body(req(reasoning=reasoning, max_tokens=max_tokens), "m")
    assert body.get("thinking") == thinking
    assert body["max_tokens"] == wire_max


@pytest.mark.parametrize(
    ("choice", "parallel", "expected"),
    [
        (ToolChoice(mode="auto"), None, {"type": "auto"}),
        (ToolChoice(mode="required"), None, {"type": "any"}),
        (
            ToolChoice(mode="tool", name="get"),
            False,
            {"type": "tool", "name": "get", "disable_parallel_tool_use": True},
        ),
        (ToolChoice(mode="none"), None, {"type": "none"}),
        (None, False, {"type": "auto", "disable_parallel_tool_use": True}),
        (None, None, None),
    ],
)
def test_tools_and_choice(choice, parallel, expected):
    tools = [Tool(name="get", description="fetch", parameters={"type": "object", "properties": {"q": {}}})]
    body = build_body(req(tools=tools, tool_choice=choice, parallel_tool_calls=parallel), "m")
    assert body["tools"] == [
        {"name": "get", "description": "fetch", "input_schema": {"type": "object", "properties": {"q": {}}}}
    ]
    assert body.get("tool_choice") == expected


def test_tool_round_trip_thinking_and_merging():
    signed = ReasoningPart(text="hmm", signature="sig-1")
    messages = [
        user("question"),
        assistant(
            ReasoningPart(text="unsigned, from another provider"),
            signed,
            ReasoningPart(redacted="opaque"),
            "let me look",
            ToolCallPart(id="toolu_1", name="get", arguments={"q": 1}),
        ),
        user("and also", ToolResultPart(tool_call_id="toolu_1", content=[TextPart(text="out")], is_error=True)),
        user(
            ImagePart(media_type="image/png", data="AAAA"),
            ImagePart(url="data:image/jpeg;base64,BBBB"),
            ImagePart(url="https://x.test/cat.png"),
        ),
        assistant(""),  # empty: dropped
        assistant("done"),
    ]
    body = build_body(req(*messages), "m")
    assert check_messages(body["messages"]) is None
    assert body["messages"][1]["content"] == [
        {"type": "thinking", "thinking": "hmm", "signature": "sig-1"},
        {"type": "redacted_thinking", "data": "opaque"},
        {"type": "text", "text": "let me look"},
        {"type": "tool_use", "id": "toolu_1", "name": "get", "input": {"q": 1}},
    ]
    turn = body["messages"][2]["content"]
    assert turn[0] == {
        "type": "tool_result",
        "tool_use_id": "toolu_1",
        "content": [{"type": "text", "text": "out"}],
        "is_error": True,
    }
    assert turn[1] == {"type": "text", "text": "and also"}
    assert turn[2:] == [
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AAAA"}},
        {"type": "image", "source": {"type": "base64", "media_type": "image/jpeg", "data": "BBBB"}},
        {"type": "image", "source": {"type": "url", "url": "https://x.test/cat.png"}},
    ]
    assert [m["role"] for m in body["messages"]] == ["user", "assistant", "user", "assistant"]


def test_foreign_tool_ids_are_made_valid_on_both_sides():
    messages = [
        user("q"),
        assistant(ToolCallPart(id="call.1/x", name="f")),
        user(ToolResultPart(tool_call_id="call.1/x", content=[TextPart(text="r")])),
    ]
    body = build_body(req(*messages), "m")
    assert body["messages"][1]["content"][0]["id"] == "call_1_x"
    assert body["messages"][2]["content"][0]["tool_use_id"] == "call_1_x"


def test_cache_control_is_kept():
    part = TextPart(text="big", provider_metadata={"anthropic": {"cache_control": {"type": "ephemeral"}}})
    body = build_body(req(Message(role="user", parts=[part]), system=[part]), "m")
    assert body["system"][0]["cache_control"] == {"type": "ephemeral"}
    assert body["messages"][0]["content"][0]["cache_control"] == {"type": "ephemeral"}


def test_count_body_has_no_generation_fields():
    body = build_count_body(req(max_tokens=5000, temperature=0.5, reasoning=Reasoning(budget_tokens=2000)), "m")
    assert set(body) == {"model", "messages", "thinking"}


@pytest.mark.parametrize(
    ("kw", "param"),
    [
        ({"seed": 1}, "seed"),
        ({"presence_penalty": 0.1}, "presence_penalty"),
        ({"frequency_penalty": 0.1}, "frequency_penalty"),
        ({"response_format": ResponseFormat(type="json_object")}, "response_format"),
        ({"tool_choice": ToolChoice(mode="required")}, "tool_choice"),
        ({"reasoning": Reasoning(effort="high"), "temperature": 0.2}, "temperature"),
        ({"reasoning": Reasoning(budget_tokens=2000), "top_k": 5}, "top_k"),
    ],
)
def test_refused_parameters(kw, param):
    with pytest.raises(InvalidRequest) as info:
        check_request(req(**kw))
    assert info.value.param == param


def test_thinking_with_temperature_one_is_fine():
    check_request(req(reasoning=Reasoning(budget_tokens=2000), temperature=1.0))
    check_request(req(reasoning=Reasoning(effort="none"), temperature=0.1, top_k=3))


def test_headers_pass_version_and_beta():
    provider = AnthropicProvider(AccountConfig(name="a", provider="anthropic", api_key="k"), None)  # type: ignore[arg-type]
    plain = provider.headers(req())
    assert plain == {
        "x-api-key": "k",
        "anthropic-version": "2023-06-01",
        "content-type": "application/json",
        "accept-encoding": "identity",
    }
    passed = provider.headers(req(passthrough_headers={"anthropic-beta": "b1,b2", "anthropic-version": "2024-01-01"}))
    assert passed["anthropic-beta"] == "b1,b2" and passed["anthropic-version"] == "2024-01-01"


@pytest.mark.parametrize("name", ["anthropic", "gemini"])
def test_api_key_is_required(name):
    with pytest.raises(ConfigError, match="'acct'.*api_key"):
        provider_class(name).validate_account(AccountConfig(name="acct", provider=name))
    provider_class(name).validate_account(AccountConfig(name="acct", provider=name, api_key="k"))


def test_models_default_and_override():
    default = AnthropicProvider(AccountConfig(name="a", provider="anthropic", api_key="k"), None)  # type: ignore[arg-type]
    assert "claude-sonnet-4-5" in {m.id for m in default.models()}
    only = AnthropicProvider(AccountConfig(name="a", provider="anthropic", api_key="k", models=["x"]), None)  # type: ignore[arg-type]
    assert [m.id for m in only.models()] == ["x"] and only.upstream_model("claude-sonnet-4-5") is None


# --- where Anthropic would refuse thinking, the request goes on without it --------------------------

TOOLS = [Tool(name="get", description="", parameters={})]
CALL = ToolCallPart(id="toolu_1", name="get", arguments={})
RESULT = ToolResultPart(tool_call_id="toolu_1", content=[TextPart(text="out")])


@pytest.mark.parametrize(
    ("turn", "thinking_on"),
    [
        (assistant("let me look", CALL), False),  # an OpenAI / Gemini client's tool loop: no signature
        (assistant(ReasoningPart(text="unsigned"), CALL), False),
        (assistant(ReasoningPart(text="hmm", signature="sig"), CALL), True),
        (assistant(ReasoningPart(redacted="opaque"), CALL), True),
    ],
)
def test_thinking_needs_a_signed_start_of_the_last_tool_turn(turn, thinking_on):
    request = req(
        user("q"),
        turn,
        user(RESULT),
        tools=TOOLS,
        reasoning=Reasoning(effort="low"),
        temperature=0.3 if not thinking_on else None,
    )
    check_request(request)  # temperature is no problem once thinking is off
    body = build_body(request, "m")
    assert ("thinking" in body) is thinking_on
    assert body["max_tokens"] == 8192 + (2048 if thinking_on else 0)
    assert check_messages(body["messages"]) is None


def test_an_earlier_unsigned_tool_turn_does_not_turn_thinking_off():
    request = req(
        user("q"),
        assistant(CALL),
        user(RESULT),
        assistant("done"),
        user("next"),
        tools=TOOLS,
        reasoning=Reasoning(budget_tokens=2000),
    )
    assert build_body(request, "m")["thinking"] == {"type": "enabled", "budget_tokens": 2000}


@pytest.mark.parametrize(
    ("kw", "thinking_on"),
    [
        ({"tool_choice": ToolChoice(mode="required")}, False),
        ({"tool_choice": ToolChoice(mode="tool", name="get")}, False),
        ({"tool_choice": ToolChoice(mode="auto")}, True),
        ({"top_p": 0.9}, False),
        ({"top_p": 0.95}, True),
    ],
)
def test_forced_tools_and_low_top_p_turn_thinking_off(kw, thinking_on):
    request = req(tools=TOOLS, reasoning=Reasoning(budget_tokens=2000, include_thoughts=True), **kw)
    assert ("thinking" in build_body(request, "m")) is thinking_on
    assert ("thinking" in build_count_body(request, "m")) is thinking_on


# --- an Anthropic client's effort without thinking -------------------------------------------------

ANTHROPIC_CLIENT = {"anthropic-version": "2023-06-01"}


def test_anthropic_client_effort_only_goes_as_output_config_effort():
    request = req(
        reasoning=Reasoning(effort="low"),
        passthrough_headers=ANTHROPIC_CLIENT,
        temperature=0.2,
        response_format=ResponseFormat(type="json_schema", json_schema={"type": "object"}),
    )
    check_request(request)  # no thinking: any temperature is fine
    body = build_body(request, "m")
    assert "thinking" not in body and body["max_tokens"] == 8192
    assert body["output_config"] == {"effort": "low", "format": {"type": "json_schema", "schema": {"type": "object"}}}


@pytest.mark.parametrize(
    ("reasoning", "headers", "thinking"),
    [
        # an OpenAI client's reasoning_effort: thinking with a budget, as before
        (Reasoning(effort="low"), {}, {"type": "enabled", "budget_tokens": 2048}),
        # an Anthropic client's thinking with an effort: thinking as asked
        (
            Reasoning(effort="high", budget_tokens=3000, include_thoughts=True),
            ANTHROPIC_CLIENT,
            {"type": "enabled", "budget_tokens": 3000},
        ),
        (
            Reasoning(effort="high", include_thoughts=True),
            ANTHROPIC_CLIENT,
            {"type": "enabled", "budget_tokens": 16384},
        ),
    ],
)
def test_effort_with_thinking_or_from_other_clients_is_a_budget(reasoning, headers, thinking):
    body = build_body(req(reasoning=reasoning, passthrough_headers=headers), "m")
    assert body["thinking"] == thinking
    assert "output_config" not in body


# --- budgets clamped to Anthropic's limits ---------------------------------------------------------


@pytest.mark.parametrize(
    ("budget", "max_tokens", "thinking", "wire_max"),
    [
        (500, None, {"type": "enabled", "budget_tokens": 1024}, 8192 + 1024),
        (500, 4000, {"type": "enabled", "budget_tokens": 1024}, 4000),
        (500, 1024, None, 1024),  # no room for 1024 below max_tokens: thinking off
        (5000, 5000, {"type": "enabled", "budget_tokens": 4999}, 5000),
        (9000, 2000, {"type": "enabled", "budget_tokens": 1999}, 2000),
        (9000, 1000, None, 1000),
    ],
)
def test_client_budgets_are_clamped(budget, max_tokens, thinking, wire_max):
    body = build_body(req(reasoning=Reasoning(budget_tokens=budget), max_tokens=max_tokens), "m")
    assert body.get("thinking") == thinking
    assert body["max_tokens"] == wire_max


@pytest.mark.parametrize(
    ("kw", "streamed"),
    [
        ({}, False),
        ({"max_tokens": 21_333}, False),
        ({"max_tokens": 21_334}, True),  # past 10 minutes at the SDK's 128,000 tokens an hour
        ({"reasoning": Reasoning(effort="medium")}, False),  # 8192 + 8192
        ({"reasoning": Reasoning(effort="high")}, True),  # 8192 + 16384
        ({"reasoning": Reasoning(effort="high"), "max_tokens": 4096}, False),  # the client's max_tokens rules
    ],
)
def test_a_non_stream_request_too_long_for_one_body_is_streamed_upstream(kw, streamed):
    provider = AnthropicProvider(AccountConfig(name="a", provider="anthropic", api_key="k"), None)  # type: ignore[arg-type]
    assert provider.streams_upstream(req(**kw)) is streamed
    assert provider.streams_upstream(req(stream=True, **kw)) is True
