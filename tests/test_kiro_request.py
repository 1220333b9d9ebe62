"""Canonical request -> conversationState: every output must pass the strict fake's validation."""

from __future__ import annotations

import base64
import json

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
from llmbridge.providers.kiro.request import (
    MAX_DESCRIPTION,
    PLACEHOLDERS,
    build_request,
    shorten_tool_name,
)
from tests.fakes.kiro import validate_body

ARN = "arn:aws:codewhisperer:us-east-1:1:profile/X"
PNG = base64.b64encode(b"\x89PNG\r\n\x1a\nfake").decode()


def user(*parts) -> Message:
    return Message(role="user", parts=[TextPart(text=p) if isinstance(p, str) else p for p in parts])


def assistant(*parts) -> Message:
    return Message(role="assistant", parts=[TextPart(text=p) if isinstance(p, str) else p for p in parts])


def build(messages, **kwargs):
    request = ChatRequest(model="claude-sonnet-4-5", messages=messages, **kwargs)
    built = build_request(request, "claude-sonnet-4.5", profile_arn=ARN)
    reason = validate_body(built.body, needs_profile_arn=True)
    assert reason is None, (reason, built.body)
    return built


def state(built):
    return built.body["conversationState"]


def contents(built) -> list[tuple[str, str]]:
    out = []
    for item in state(built).get("history", []):
        ((role, msg),) = item.items()
        out.append((role, msg["content"]))
    out.append(("current", state(built)["currentMessage"]["userInputMessage"]["content"]))
    return out


def test_single_message_with_system() -> None:
    built = build([user("Hi")], system=[TextPart(text="Be brief.")])
    assert "system" not in state(built)
    assert contents(built) == [("current", "Be brief.\n\nHi")]
    msg = state(built)["currentMessage"]["userInputMessage"]
    assert msg["modelId"] == "claude-sonnet-4.5" and msg["origin"] == "AI_EDITOR"
    assert built.body["profileArn"] == ARN and "history" not in state(built)


def test_system_goes_to_first_user_turn() -> None:
    built = build([user("one"), assistant("two"), user("three")], system=[TextPart(text="SYS")])
    assert contents(built) == [
        ("userInputMessage", "SYS\n\none"),
        ("assistantResponseMessage", "two"),
        ("current", "three"),
    ]


@pytest.mark.parametrize(
    "messages, expected",
    [
        ([user("a"), user("b")], [("current", "a\n\nb")]),
        (
            [user("a"), assistant("b"), assistant("c"), user("d")],
            [("userInputMessage", "a"), ("assistantResponseMessage", "b\n\nc"), ("current", "d")],
        ),
        (
            [assistant("hello"), user("hi")],
            [
                ("userInputMessage", PLACEHOLDERS["conversation_start"]),
                ("assistantResponseMessage", "hello"),
                ("current", "hi"),
            ],
        ),
        (
            [user("a"), assistant("prefill")],
            [
                ("userInputMessage", "a"),
                ("assistantResponseMessage", "prefill"),
                ("current", PLACEHOLDERS["continue"]),
            ],
        ),
        (
            [user("a"), assistant(ReasoningPart(text="hmm", signature="s")), user("b")],
            [
                ("userInputMessage", "a"),
                ("assistantResponseMessage", PLACEHOLDERS["assistant_empty"]),
                ("current", "b"),
            ],
        ),
        ([user("")], [("current", PLACEHOLDERS["user_empty"])]),
    ],
)
def test_alternation_table(messages, expected) -> None:
    assert contents(build(messages)) == expected


def test_no_messages_rejected() -> None:
    with pytest.raises(InvalidRequest):
        build_request(ChatRequest(model="m", messages=[]), "claude-sonnet-4.5")


def test_tool_conversation_paired() -> None:
    tools = [
        Tool(
            name="read",
            description="Read a file",
            parameters={"type": "object", "properties": {"p": {"type": "string", "default": None}}},
        )
    ]
    built = build(
        [
            user("read a and b"),
            assistant(
                "ok",
                ToolCallPart(id="t1", name="read", arguments={"p": "a"}),
                ToolCallPart(id="t2", name="read", arguments={"p": "b", "": "x"}),
            ),
            user(
                ToolResultPart(tool_call_id="t1", content=[TextPart(text="A")]),
                ToolResultPart(tool_call_id="t2", content=[], is_error=True),
            ),
        ],
        tools=tools,
    )
    current = state(built)["currentMessage"]["userInputMessage"]
    assert current["content"] == PLACEHOLDERS["tool_results_only"]
    results = current["userInputMessageContext"]["toolResults"]
    assert [(r["toolUseId"], r["status"], r["content"][0]["text"]) for r in results] == [
        ("t1", "success", "A"),
        ("t2", "error", PLACEHOLDERS["empty_tool_result"]),
    ]
    uses = state(built)["history"][1]["assistantResponseMessage"]["toolUses"]
    assert uses[1]["input"] == {"p": "b"}  # empty-string key removed
    spec = current["userInputMessageContext"]["tools"][0]["toolSpecification"]
    assert spec["inputSchema"]["json"]["properties"]["p"]["default"] is None  # schemas untouched


def test_orphan_and_duplicate_results_become_text_and_unanswered_uses_dropped() -> None:
    built = build(
        [
            user("go"),
            assistant(ToolCallPart(id="t1", name="a"), ToolCallPart(id="t2", name="a")),
            user(
                ToolResultPart(tool_call_id="t1", content=[TextPart(text="one")]),
                ToolResultPart(tool_call_id="t1", content=[TextPart(text="again")]),
                ToolResultPart(tool_call_id="zz", name="ghost", content=[TextPart(text="orphan")]),
                "and text",
            ),
            assistant("done"),
            user("next"),
        ],
        tools=[Tool(name="a", description="A")],
    )
    history = state(built)["history"]
    assert [u["toolUseId"] for u in history[1]["assistantResponseMessage"]["toolUses"]] == ["t1"]
    turn = history[2]["userInputMessage"]
    assert [r["toolUseId"] for r in turn["userInputMessageContext"]["toolResults"]] == ["t1"]
    assert "[Tool result for t1]\nagain" in turn["content"]
    assert "[Tool result for zz (ghost)]\norphan" in turn["content"]
    assert turn["content"].startswith("and text")
    assert built.notes


def test_duplicate_tool_use_ids_in_history() -> None:
    built = build(
        [
            user("go"),
            assistant(ToolCallPart(id="t1", name="a")),
            user(ToolResultPart(tool_call_id="t1", content=[TextPart(text="r")])),
            assistant(ToolCallPart(id="t1", name="a")),
            user(ToolResultPart(tool_call_id="t1", content=[TextPart(text="r2")])),
        ],
        tools=[Tool(name="a", description="A")],
    )
    assert "toolUses" not in state(built)["history"][3]["assistantResponseMessage"]


def test_long_tool_names_shortened_reversibly() -> None:
    long_name = "mcp__some_server_with_a_long_name__" + "do_something_very_specific_" * 3
    short = shorten_tool_name(long_name)
    assert len(short) == 64 and short == shorten_tool_name(long_name)
    assert shorten_tool_name(long_name + "2") != short
    assert shorten_tool_name("short") == "short"
    built = build(
        [
            user("x"),
            assistant(ToolCallPart(id="t1", name=long_name)),
            user(ToolResultPart(tool_call_id="t1", content=[TextPart(text="r")])),
        ],
        tools=[Tool(name=long_name, description="d")],
    )
    assert built.tool_names[short] == long_name
    spec = state(built)["currentMessage"]["userInputMessage"]["userInputMessageContext"]["tools"][0]
    assert spec["toolSpecification"]["name"] == short
    assert state(built)["history"][1]["assistantResponseMessage"]["toolUses"][0]["name"] == short


def test_long_description_moved_to_system_text() -> None:
    description = "Very detailed manual. " * 1000
    assert len(description) > MAX_DESCRIPTION
    built = build(
        [user("hi")],
        system=[TextPart(text="SYS")],
        tools=[Tool(name="manual", description=description), Tool(name="empty")],
    )
    current = state(built)["currentMessage"]["userInputMessage"]
    specs = [t["toolSpecification"] for t in current["userInputMessageContext"]["tools"]]
    assert len(specs[0]["description"]) < 1000 and "system prompt" in specs[0]["description"]
    assert description.strip() in current["content"]
    assert current["content"].startswith("SYS\n\n# Tool documentation")
    assert specs[1]["description"] == "empty"


def test_tool_choice_none_sends_no_tools() -> None:
    built = build([user("hi")], tools=[Tool(name="a", description="A")], tool_choice=ToolChoice(mode="none"))
    assert "userInputMessageContext" not in state(built)["currentMessage"]["userInputMessage"]


TOOL_HISTORY = [
    user("weather in Oslo?"),
    assistant("checking", ToolCallPart(id="t1", name="get_weather", arguments={"city": "Oslo"})),
    user(ToolResultPart(tool_call_id="t1", content=[TextPart(text="sunny, 20C")]), "and tomorrow?"),
]


@pytest.mark.parametrize(
    "kwargs",
    [{}, {"tools": [Tool(name="get_weather", description="W")], "tool_choice": ToolChoice(mode="none")}],
)
def test_tool_history_without_tools_sent_as_text(kwargs) -> None:
    built = build(TOOL_HISTORY, **kwargs)
    history = state(built)["history"]
    assert "toolUses" not in history[1]["assistantResponseMessage"]
    assert history[1]["assistantResponseMessage"]["content"] == ('checking\n\n[tool call get_weather {"city":"Oslo"}]')
    current = state(built)["currentMessage"]["userInputMessage"]
    assert "userInputMessageContext" not in current
    assert current["content"] == "[tool result for get_weather: sunny, 20C]\n\nand tomorrow?"
    assert any("as text" in note for note in built.notes)


def test_fake_rejects_tool_content_without_tools() -> None:
    request = ChatRequest(model="m", messages=TOOL_HISTORY, tools=[Tool(name="get_weather")])
    body = build_request(request, "claude-sonnet-4.5", profile_arn=ARN).body
    del body["conversationState"]["currentMessage"]["userInputMessage"]["userInputMessageContext"]["tools"]
    assert "no tools defined" in (validate_body(body, needs_profile_arn=True) or "")


def test_images() -> None:
    built = build(
        [
            user(ImagePart(media_type="image/png", data=PNG), "what is this?"),
            assistant("a cat"),
            user(ImagePart(url=f"data:image/jpeg;base64,{PNG}"), "and this?"),
        ]
    )
    assert state(built)["history"][0]["userInputMessage"]["images"] == [{"format": "png", "source": {"bytes": PNG}}]
    assert state(built)["currentMessage"]["userInputMessage"]["images"] == [
        {"format": "jpeg", "source": {"bytes": PNG}}
    ]


@pytest.mark.parametrize(
    "image",
    [
        ImagePart(url="https://example.com/a.png"),
        ImagePart(media_type="image/bmp", data=PNG),
        ImagePart(media_type="image/png", data="not base64!"),
    ],
)
def test_bad_images_rejected(image) -> None:
    with pytest.raises(InvalidRequest) as info:
        build_request(ChatRequest(model="m", messages=[user(image)]), "claude-sonnet-4.5")
    assert info.value.param == "messages"


@pytest.mark.parametrize(
    "reasoning, budget",
    [
        (Reasoning(budget_tokens=5000), 5000),
        (Reasoning(effort="high"), 20000),
        (Reasoning(budget_tokens=10**6), 32000),
    ],
)
def test_thinking_prefix(reasoning, budget) -> None:
    built = build([user("hi")], system=[TextPart(text="SYS")], reasoning=reasoning)
    assert built.thinking
    assert contents(built) == [
        (
            "current",
            f"<thinking_mode>enabled</thinking_mode><max_thinking_length>{budget}</max_thinking_length>\n\nSYS\n\nhi",
        )
    ]


def test_no_thinking_prefix_without_reasoning_or_effort_none() -> None:
    for reasoning in (None, Reasoning(effort="none")):
        built = build([user("hi")], reasoning=reasoning)
        assert not built.thinking and contents(built) == [("current", "hi")]


def test_no_profile_arn_when_not_given() -> None:
    built = build_request(ChatRequest(model="m", messages=[user("x")]), "claude-sonnet-4.5")
    assert "profileArn" not in built.body
    assert validate_body(built.body, needs_profile_arn=False) is None
    assert validate_body(built.body, needs_profile_arn=True) is not None


def test_a_json_schema_answer_is_asked_for_in_the_system_text() -> None:
    schema = {"type": "object", "properties": {"title": {"type": "string"}}, "required": ["title"]}
    built = build(
        [user("Name this session")],
        system=[TextPart(text="SYS")],
        response_format=ResponseFormat(type="json_schema", json_schema=schema),
    )
    ((_, content),) = contents(built)
    system, _, prompt = content.rpartition("\n\n")
    assert prompt == "Name this session" and system.startswith("SYS\n\n# Response format\n\n")
    assert json.dumps(schema, sort_keys=True) in system and "nothing else" in system
    assert built.notes == ["response format json_schema sent as an instruction in the system text"]


def test_a_json_object_answer_is_asked_for_without_a_schema() -> None:
    built = build([user("x")], response_format=ResponseFormat(type="json_object"))
    ((_, content),) = contents(built)
    assert content.startswith("# Response format\n\n") and "The value is a JSON object." in content


def test_text_format_adds_nothing() -> None:
    built = build([user("x")], response_format=ResponseFormat(type="text"))
    assert contents(built) == [("current", "x")]
