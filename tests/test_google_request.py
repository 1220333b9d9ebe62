"""Canonical request -> Gemini GenerateContentRequest: table tests of the builder and of check_request."""

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
from llmbridge.errors import InvalidRequest
from llmbridge.providers.google.request import (
    SKIP_SIGNATURE,
    build_contents,
    check_request,
    generate_content_request,
    generation_config,
    thinking_config,
    tool_config,
)

SIG = {"gemini": {"thought_signature": "real-sig"}}


def user(*parts) -> Message:
    return Message(role="user", parts=[TextPart(text=p) if isinstance(p, str) else p for p in parts])


def assistant(*parts) -> Message:
    return Message(role="assistant", parts=[TextPart(text=p) if isinstance(p, str) else p for p in parts])


def req(*messages: Message, **kw) -> ChatRequest:
    return ChatRequest(model=kw.pop("model", "gemini-2.5-pro"), messages=list(messages) or [user("hi")], **kw)


def test_only_what_the_request_sets_is_sent():
    inner = generate_content_request(req(user("hi")), "gemini-2.5-flash", cli_thinking=True)
    assert set(inner) == {"contents", "generationConfig"}
    assert inner["contents"] == [{"role": "user", "parts": [{"text": "hi"}]}]


def test_system_tools_and_tool_config():
    request = req(
        user("hi"),
        system=[TextPart(text="be brief"), TextPart(text="")],
        tools=[
            Tool(
                name="ls", description="list", parameters={"type": "object", "properties": {"dir": {"type": "string"}}}
            ),
            Tool(name="now"),
        ],
        tool_choice=ToolChoice(mode="tool", name="ls"),
    )
    inner = generate_content_request(request, "gemini-2.5-pro", cli_thinking=True)
    assert inner["systemInstruction"] == {"role": "user", "parts": [{"text": "be brief"}]}
    declarations = inner["tools"][0]["functionDeclarations"]
    assert declarations[0] == {
        "name": "ls",
        "description": "list",
        "parameters": {"type": "OBJECT", "properties": {"dir": {"type": "STRING"}}},
    }
    assert declarations[1] == {"name": "now"}  # no arguments: no parameters at all
    assert inner["toolConfig"] == {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["ls"]}}


@pytest.mark.parametrize(
    "choice,expected",
    [
        (None, None),
        (ToolChoice(mode="auto"), {"functionCallingConfig": {"mode": "AUTO"}}),
        (ToolChoice(mode="none"), {"functionCallingConfig": {"mode": "NONE"}}),
        (ToolChoice(mode="required"), {"functionCallingConfig": {"mode": "ANY"}}),
    ],
)
def test_tool_choice_modes(choice, expected):
    assert tool_config(req(tools=[Tool(name="t")], tool_choice=choice)) == expected


def test_consecutive_same_role_merged_and_empty_dropped():
    contents = build_contents([user("a"), user("b"), assistant(""), assistant("c"), user("d")], gemini3=False)
    assert contents == [
        {"role": "user", "parts": [{"text": "a"}, {"text": "b"}]},
        {"role": "model", "parts": [{"text": "c"}]},
        {"role": "user", "parts": [{"text": "d"}]},
    ]


def test_images_inline_and_data_url():
    contents = build_contents(
        [user(ImagePart(media_type="image/jpeg", data="QUJD"), ImagePart(url="data:image/png;base64,WFla"))],
        gemini3=False,
    )
    assert contents[0]["parts"] == [
        {"inlineData": {"mimeType": "image/jpeg", "data": "QUJD"}},
        {"inlineData": {"mimeType": "image/png", "data": "WFla"}},
    ]


def test_tool_call_and_result_round_trip_with_name_lookup():
    messages = [
        user("go"),
        assistant(
            ReasoningPart(text="plan", provider_metadata=SIG), ToolCallPart(id="c1", name="read", arguments={"p": 1})
        ),
        user(
            ToolResultPart(tool_call_id="c1", content=[TextPart(text="data")]),
            ToolResultPart(tool_call_id="c2", name="other", is_error=True, content=[TextPart(text="boom")]),
        ),
    ]
    contents = build_contents(messages, gemini3=False)
    assert contents[1]["parts"] == [
        {"text": "plan", "thought": True, "thoughtSignature": "real-sig"},
        {"functionCall": {"name": "read", "args": {"p": 1}, "id": "c1"}},
    ]
    assert contents[2]["parts"] == [
        {"functionResponse": {"name": "read", "response": {"output": "data"}, "id": "c1"}},
        {"functionResponse": {"name": "other", "response": {"error": "boom"}, "id": "c2"}},
    ]


def test_gemini3_first_call_of_each_model_turn_gets_sentinel_unless_signed():
    messages = [
        user("a"),
        assistant(ToolCallPart(id="1", name="f"), ToolCallPart(id="2", name="g")),
        user(ToolResultPart(tool_call_id="1", name="f"), ToolResultPart(tool_call_id="2", name="g")),
        assistant(ToolCallPart(id="3", name="f", provider_metadata=SIG)),
        user(ToolResultPart(tool_call_id="3", name="f")),
    ]
    contents = build_contents(messages, gemini3=True)
    assert contents[1]["parts"][0]["thoughtSignature"] == SKIP_SIGNATURE
    assert "thoughtSignature" not in contents[1]["parts"][1]
    assert contents[3]["parts"][0]["thoughtSignature"] == "real-sig"
    plain = build_contents(messages, gemini3=False)
    assert "thoughtSignature" not in plain[1]["parts"][0]


def test_text_signature_echoed_and_foreign_signatures_dropped():
    """Only provider_metadata["gemini"] is Gemini's: an Anthropic thinking signature (Claude's, from
    the anthropic or kiro provider) would be refused by Gemini, so the thought goes without it."""
    messages = [
        user("a"),
        assistant(
            ReasoningPart(redacted="opaque"),
            TextPart(text="", provider_metadata={"gemini": {"thought_signature": "E"}}),
            ReasoningPart(text="t", signature="EqQBCkYIBxgCKkClaude=="),
            ReasoningPart(signature="EqQBCkYIBxgCKkClaude=="),
        ),
    ]
    parts = build_contents(messages, gemini3=False)[1]["parts"]
    assert parts == [{"text": "", "thoughtSignature": "E"}, {"text": "t", "thought": True}]


def test_generation_params():
    request = req(
        temperature=0.2,
        top_p=0.9,
        top_k=40,
        max_tokens=100,
        stop=["END"],
        seed=7,
        presence_penalty=0.1,
        frequency_penalty=0.3,
        response_format=ResponseFormat(
            type="json_schema",
            json_schema={
                "$schema": "http://json-schema.org/draft-07/schema#",
                "type": "object",
                "properties": {"a": {"type": "integer"}},
                "additionalProperties": False,
            },
        ),
    )
    config = generation_config(request, "gemini-2.5-flash", cli_thinking=True)
    assert config == {
        "temperature": 0.2,
        "topP": 0.9,
        "topK": 40,
        "maxOutputTokens": 100,
        "seed": 7,
        "presencePenalty": 0.1,
        "frequencyPenalty": 0.3,
        "stopSequences": ["END"],
        "responseMimeType": "application/json",
        "responseJsonSchema": {
            "type": "object",
            "properties": {"a": {"type": "integer"}},
            "additionalProperties": False,
        },
        "thinkingConfig": {"includeThoughts": True, "thinkingBudget": 8192},
    }
    gemma = generation_config(
        req(response_format=ResponseFormat(type="json_object")), "gemma-4-31b-it", cli_thinking=True
    )
    assert gemma == {"responseMimeType": "application/json"}


@pytest.mark.parametrize(
    "model,reasoning,expected",
    [
        ("gemini-2.5-pro", None, {"includeThoughts": True, "thinkingBudget": 8192}),
        ("gemini-2.5-pro", Reasoning(effort="low"), {"includeThoughts": True, "thinkingBudget": 1024}),
        ("gemini-2.5-pro", Reasoning(effort="xhigh"), {"includeThoughts": True, "thinkingBudget": 32768}),
        ("gemini-2.5-pro", Reasoning(budget_tokens=10), {"includeThoughts": True, "thinkingBudget": 128}),
        ("gemini-2.5-flash", Reasoning(effort="none"), {"includeThoughts": False, "thinkingBudget": 0}),
        # "off" on a model that always thinks: its least thinking, no thoughts shown (Claude Code's titles)
        ("gemini-2.5-pro", Reasoning(effort="none"), {"includeThoughts": False, "thinkingBudget": 128}),
        ("gemini-3-pro-preview", Reasoning(effort="none"), {"includeThoughts": False, "thinkingLevel": "LOW"}),
        ("gemini-3-flash", Reasoning(budget_tokens=0), {"includeThoughts": False, "thinkingLevel": "LOW"}),
        (
            "gemini-2.5-flash",
            Reasoning(effort="high", budget_tokens=99_999),
            {"includeThoughts": True, "thinkingBudget": 24576},
        ),
        ("gemini-3-pro-preview", None, {"includeThoughts": True, "thinkingLevel": "HIGH"}),
        ("gemini-3-pro-preview", Reasoning(effort="low"), {"includeThoughts": True, "thinkingLevel": "LOW"}),
        ("gemini-3-flash", Reasoning(budget_tokens=2000), {"includeThoughts": True, "thinkingLevel": "LOW"}),
        ("gemma-4-31b-it", None, None),
    ],
)
def test_thinking_as_the_cli_sends_it(model, reasoning, expected):
    assert generation_config(req(reasoning=reasoning), model, cli_thinking=True).get("thinkingConfig") == expected


@pytest.mark.parametrize(
    ("model", "reasoning", "expected"),
    [
        ("gemini-2.5-flash", None, {"includeThoughts": True}),
        ("gemini-3-pro-preview", None, {"includeThoughts": True}),
        ("gemini-2.5-flash", Reasoning(include_thoughts=False), {"includeThoughts": False}),
        ("gemini-2.5-flash", Reasoning(effort="none"), {"includeThoughts": False, "thinkingBudget": 0}),
        ("gemini-3-pro-preview", Reasoning(effort="low"), {"includeThoughts": True, "thinkingLevel": "LOW"}),
        (
            "gemini-2.5-pro",
            Reasoning(effort="high", include_thoughts=False),
            {"includeThoughts": False, "thinkingBudget": 24576},
        ),
        ("gemma-3-27b-it", None, None),
    ],
)
def test_thinking_defaults_to_the_model_without_cli_thinking(model, reasoning, expected):
    assert thinking_config(req(reasoning=reasoning), model, cli_thinking=False) == expected


@pytest.mark.parametrize("cli_thinking", [True, False])
def test_gemma_has_no_generation_config(cli_thinking):
    assert "generationConfig" not in generate_content_request(req(), "gemma-3-27b-it", cli_thinking=cli_thinking)


@pytest.mark.parametrize(
    "request_kw,model,param",
    [
        ({"messages": []}, "gemini-2.5-pro", "messages"),
        ({"stop": ["a", "b", "c", "d", "e", "f"]}, "gemini-2.5-pro", "stop"),
        ({"reasoning": Reasoning(effort="high")}, "gemma-4-31b-it", "reasoning_effort"),
        ({"tools": [Tool(name="bad name!")]}, "gemini-2.5-pro", "tools"),
        (
            {"tools": [Tool(name="a")], "tool_choice": ToolChoice(mode="tool", name="b")},
            "gemini-2.5-pro",
            "tool_choice",
        ),
        ({"tool_choice": ToolChoice(mode="required")}, "gemini-2.5-pro", "tool_choice"),
        ({"tools": [Tool(name="a")], "parallel_tool_calls": False}, "gemini-2.5-pro", "parallel_tool_calls"),
        ({"messages": [user(ImagePart(url="https://example.com/x.png"))]}, "gemini-2.5-pro", "messages"),
        ({"messages": [user(ToolResultPart(tool_call_id="nope"))]}, "gemini-2.5-pro", "messages"),
        ({"messages": [user("")]}, "gemini-2.5-pro", "messages"),
        ({"response_format": ResponseFormat(type="json_schema")}, "gemini-2.5-pro", "response_format"),
    ],
)
def test_check_request_names_the_parameter(request_kw, model, param):
    messages = request_kw.pop("messages", [user("hi")])
    request = ChatRequest(model=model, messages=messages, **request_kw)
    with pytest.raises(InvalidRequest) as info:
        check_request(request, model, "Code Assist")
    assert info.value.param == param


@pytest.mark.parametrize("service,named", [("Code Assist", "Code Assist"), ("the Gemini API", "The Gemini API")])
def test_check_request_names_the_service(service, named):
    with pytest.raises(InvalidRequest) as info:
        check_request(req(user(ImagePart(url="https://x.test/a.png"))), "gemini-2.5-flash", service)
    assert info.value.message.startswith(f"{named} takes images inline only")


def test_check_request_accepts_a_normal_request():
    check_request(
        req(user("hi"), tools=[Tool(name="mcp__fs.read-file:v2")], reasoning=Reasoning(effort="none")),
        "gemini-2.5-flash",
        "Code Assist",
    )


# --- a Gemini client's tool results go upstream exactly as sent ------------------------------------


def test_a_gemini_clients_function_response_object_is_sent_unchanged() -> None:
    from llmbridge.formats.gemini_parse import parse_generate_request

    sent = {"output": "<untrusted_context>file written</untrusted_context>", "extra": [1, {"k": None}]}
    request = parse_generate_request(
        {
            "contents": [
                {"role": "user", "parts": [{"text": "write it"}]},
                {"role": "model", "parts": [{"functionCall": {"name": "write_file", "args": {}, "id": "w1"}}]},
                {"role": "user", "parts": [{"functionResponse": {"name": "write_file", "id": "w1", "response": sent}}]},
            ]
        },
        model="gemini-2.5-pro",
        stream=False,
    )
    contents = build_contents(request.messages, gemini3=False)
    (part,) = contents[-1]["parts"]
    assert part == {"functionResponse": {"name": "write_file", "response": sent, "id": "w1"}}
