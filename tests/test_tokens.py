"""The local input-token estimate used when an upstream cannot count."""

from __future__ import annotations

from llmbridge.canonical import (
    ChatRequest,
    ImagePart,
    Message,
    TextPart,
    Tool,
    ToolCallPart,
    ToolResultPart,
)
from llmbridge.tokens import CHARS_PER_TOKEN, IMAGE_TOKENS, MESSAGE_OVERHEAD, estimate_input_tokens


def request(*messages: Message, **extra: object) -> ChatRequest:
    return ChatRequest(model="m", messages=list(messages), **extra)


def test_text_is_about_four_characters_a_token() -> None:
    estimate = estimate_input_tokens(request(Message(role="user", parts=[TextPart(text="x" * 400)])))
    assert estimate == 400 // CHARS_PER_TOKEN + MESSAGE_OVERHEAD


def test_everything_the_model_reads_counts() -> None:
    bare = request(Message(role="user", parts=[TextPart(text="hi")]))
    full = request(
        Message(role="user", parts=[TextPart(text="hi"), ImagePart(data="QUJD")]),
        Message(role="assistant", parts=[ToolCallPart(id="c", name="read", arguments={"path": "a" * 100})]),
        Message(
            role="user",
            parts=[ToolResultPart(tool_call_id="c", content=[TextPart(text="y" * 200), ImagePart(url="u")])],
        ),
        system=[TextPart(text="s" * 400)],
        tools=[Tool(name="read", description="d" * 400)],
    )
    assert estimate_input_tokens(full) > estimate_input_tokens(bare) + 2 * IMAGE_TOKENS + 250
