"""The qwen provider's request builder: the OpenAI-compatible body plus what Qwen Code adds."""

from __future__ import annotations

from llmbridge.canonical import (
    ChatRequest,
    Message,
    Reasoning,
    ReasoningPart,
    TextPart,
    Tool,
    ToolCallPart,
    ToolResultPart,
)
from llmbridge.providers.qwen.request import build_body
from tests.fakes.qwen import check_body

EPHEMERAL = {"type": "ephemeral"}


def chat(*messages: Message, system: str | None = "Be brief.", **kw) -> ChatRequest:
    return ChatRequest(
        model="coder-model", system=[TextPart(text=system)] if system else [], messages=list(messages), **kw
    )


def user(text: str) -> Message:
    return Message(role="user", parts=[TextPart(text=text)])


def body_of(request: ChatRequest, model: str = "coder-model") -> dict:
    return build_body(request, model, "sess-1", "sess-1########1")


def test_qwen_code_extras_and_cache_markers():
    body = body_of(chat(user("hi"), tools=[Tool(name="a"), Tool(name="b")], max_tokens=100))
    assert body["messages"] == [
        {"role": "system", "content": [{"type": "text", "text": "Be brief.", "cache_control": EPHEMERAL}]},
        {"role": "user", "content": [{"type": "text", "text": "hi", "cache_control": EPHEMERAL}]},
    ]
    assert "cache_control" not in body["tools"][0] and body["tools"][1]["cache_control"] == EPHEMERAL
    assert body["metadata"] == {"sessionId": "sess-1", "promptId": "sess-1########1"}
    assert body["vl_high_resolution_images"] is True and body["preserve_thinking"] is True
    assert body["max_tokens"] == 100 and "max_completion_tokens" not in body
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
    assert check_body(body) is None  # the strict fake takes it


def test_only_the_system_and_last_message_are_marked():
    call = ToolCallPart(id="c1", name="read", arguments={"p": 1})
    result = ToolResultPart(tool_call_id="c1", content=[TextPart(text="data")])
    body = body_of(chat(user("go"), Message(role="assistant", parts=[call]), Message(role="user", parts=[result])))
    user_msg, assistant, tool = body["messages"][1:]
    # not the last: unmarked, but a list of parts as Qwen Code's converter always sends a user message
    assert user_msg["content"] == [{"type": "text", "text": "go"}]
    assert assistant["content"] is None and assistant["tool_calls"][0]["id"] == "c1"
    assert tool == {
        "role": "tool",
        "tool_call_id": "c1",
        "content": [{"type": "text", "text": "data", "cache_control": EPHEMERAL}],
    }
    assert check_body(body) is None


def test_thinking_switch_follows_the_client():
    assert "enable_thinking" not in body_of(chat(user("hi")))
    assert body_of(chat(user("hi"), reasoning=Reasoning(budget_tokens=2048)))["enable_thinking"] is True
    assert body_of(chat(user("hi"), reasoning=Reasoning(effort="high")))["enable_thinking"] is True
    assert "enable_thinking" not in body_of(chat(user("hi"), reasoning=Reasoning(effort="none")))
    assert "enable_thinking" not in body_of(chat(user("hi"), reasoning=Reasoning(budget_tokens=0)))
    # never OpenAI's effort for coder-model; the qwen3.8-max family takes tiers instead
    assert "reasoning_effort" not in body_of(chat(user("hi"), reasoning=Reasoning(effort="high")))
    tiered = body_of(chat(user("hi"), reasoning=Reasoning(effort="xhigh")), model="qwen3.8-max")
    assert tiered["reasoning_effort"] == "high" and "enable_thinking" not in tiered


def test_non_vision_and_non_qwen_models_get_no_qwen_only_fields():
    plus = body_of(chat(user("hi")), model="qwen3-coder-plus")
    assert "vl_high_resolution_images" not in plus and "metadata" in plus
    other = body_of(chat(user("hi"), reasoning=Reasoning(effort="high")), model="glm-4.5")
    assert "metadata" not in other and "enable_thinking" not in other


def test_earlier_reasoning_goes_back_as_reasoning_content():
    thought = Message(role="assistant", parts=[ReasoningPart(text="think"), TextPart(text="answer")])
    only_thought = Message(role="assistant", parts=[ReasoningPart(text="mull")])
    redacted = Message(role="assistant", parts=[ReasoningPart(redacted="opaque"), TextPart(text="x")])
    body = body_of(chat(user("a"), thought, user("b"), only_thought, user("c"), redacted, user("d")))
    assistants = [m for m in body["messages"] if m["role"] == "assistant"]
    assert assistants[0] == {"role": "assistant", "content": "answer", "reasoning_content": "think"}
    assert assistants[1] == {"role": "assistant", "content": "", "reasoning_content": "mull"}
    assert assistants[2] == {"role": "assistant", "content": "x"}
    assert check_body(body) is None


def test_no_system_message_marks_only_the_last():
    body = body_of(chat(user("hi"), system=None))
    assert body["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "hi", "cache_control": EPHEMERAL}]}
    ]


def test_field_order_and_default_max_tokens_are_qwen_codes():
    # as captured from Qwen Code 0.24.4: model, messages, max_tokens, stream, stream_options, tools,
    # metadata, vl_high_resolution_images, preserve_thinking
    body = body_of(chat(user("hi"), tools=[Tool(name="a")]))
    assert list(body) == [
        "model",
        "messages",
        "max_tokens",
        "stream",
        "stream_options",
        "tools",
        "metadata",
        "vl_high_resolution_images",
        "preserve_thinking",
    ]
    assert body["max_tokens"] == 64_000
    sampled = body_of(chat(user("hi"), temperature=0.2, max_tokens=50, reasoning=Reasoning(effort="low")))
    assert list(sampled)[:5] == ["model", "messages", "temperature", "max_tokens", "stream"]
    assert list(sampled)[-1] == "enable_thinking"
