"""Kiro frames -> canonical events: text, thinking tags split anywhere, tools, usage, errors."""

from __future__ import annotations

import json

import pytest

from llmbridge.accumulate import StreamAccumulator
from llmbridge.canonical import (
    Finish,
    ReasoningDelta,
    StreamError,
    ToolCallDelta,
    ToolCallStart,
    UsageEvent,
)
from llmbridge.providers.kiro.decoder import KiroDecoder, ThinkingTagParser
from llmbridge.providers.kiro.request import shorten_tool_name
from tests.fakes.kiro import (
    ContextUsage,
    Metadata,
    Metering,
    Reasoning,
    StreamException,
    Text,
    ToolUse,
    encode_frame,
    render_step,
)


def stream(*steps) -> bytes:
    return b"".join(p for s in steps for p in render_step(s) if isinstance(p, bytes))


def run(data: bytes, chunk: int | None = None, **kwargs):
    decoder = KiroDecoder(**kwargs)
    events = []
    if chunk is None:
        events += decoder.feed(data)
    else:
        for i in range(0, len(data), chunk):
            events += decoder.feed(data[i : i + chunk])
    events += decoder.close()
    acc = StreamAccumulator("id", "model")
    acc.feed_all(events)
    return events, acc.result()


def test_text_and_usage_estimate() -> None:
    events, result = run(
        stream(Text("Hello "), Text("world"), ContextUsage(1.0), Metering(0.02)), context_window=200_000
    )
    assert result.text() == "Hello world"
    assert result.finish_reason == "stop"
    usage = [e for e in events if isinstance(e, UsageEvent)]
    assert len(usage) == 1 and usage[0].usage.estimated
    assert usage[0].usage.output_tokens == 3  # 11 chars / 4, rounded up
    assert usage[0].usage.input_tokens == 2000 - 3
    assert isinstance(events[-1], Finish)


def test_token_usage_from_metadata_is_exact() -> None:
    _, result = run(
        stream(
            Text("x"),
            Metadata(
                token_usage={
                    "uncachedInputTokens": 100,
                    "cacheReadInputTokens": 50,
                    "cacheWriteInputTokens": 10,
                    "outputTokens": 7,
                    "totalTokens": 167,
                },
                stop_reason="END_TURN",
            ),
        )
    )
    u = result.usage
    assert (u.input_tokens, u.output_tokens, u.cached_tokens, u.cache_creation_tokens, u.estimated) == (
        160,
        7,
        50,
        10,
        False,
    )


def test_usage_without_context_event_uses_request_size() -> None:
    _, result = run(stream(Text("abcd")), input_chars=400)
    assert result.usage.input_tokens == 100 and result.usage.estimated


@pytest.mark.parametrize("chunk", [None, 1, 7, 50])
def test_tool_use_fragments_streamed_and_joined(chunk) -> None:
    long_name = "mcp__server__" + "x" * 70
    short = shorten_tool_name(long_name)
    data = stream(
        Text("Let me write."),
        ToolUse("Write", "t1", ['{"path": "a.t', 'xt", "content"', ': "hi"}']),
        ToolUse(short, "t2", []),
        ContextUsage(3.0),
    )
    events, result = run(data, chunk, tool_names={short: long_name})
    starts = [e for e in events if isinstance(e, ToolCallStart)]
    assert [(s.index, s.id, s.name) for s in starts] == [(0, "t1", "Write"), (1, "t2", long_name)]
    deltas = [e for e in events if isinstance(e, ToolCallDelta) and e.index == 0]
    assert len(deltas) == 3  # streamed as they came
    calls = result.tool_calls()
    assert calls[0].arguments == {"path": "a.txt", "content": "hi"}
    assert calls[1].arguments == {}
    assert json.loads("".join(e.arguments for e in events if isinstance(e, ToolCallDelta) and e.index == 1)) == {}
    assert result.finish_reason == "tool_calls"
    assert result.text() == "Let me write."


def test_native_reasoning_event() -> None:
    events, result = run(stream(Reasoning("Thinking about it."), Reasoning("", signature="sig-1"), Text("Answer")))
    reasoning = [e for e in events if isinstance(e, ReasoningDelta)]
    assert reasoning[0].text == "Thinking about it." and reasoning[-1].signature == "sig-1"
    assert result.reasoning_text() == "Thinking about it." and result.text() == "Answer"
    assert result.parts[0].signature == "sig-1"


THINKING_TEXT = "\n<thinking>I should say hi.\nDone</thinking>\n\nHello <thinking> is a tag."


@pytest.mark.parametrize("cut", range(0, len(THINKING_TEXT) + 1))
def test_thinking_tags_split_anywhere(cut: int) -> None:
    pieces = [THINKING_TEXT[:cut], THINKING_TEXT[cut:]]
    data = stream(*[Text(p) for p in pieces if p])
    _, result = run(data, thinking=True)
    assert result.reasoning_text() == "I should say hi.\nDone"
    assert result.text() == "Hello <thinking> is a tag."


def test_thinking_tags_char_by_char_frames() -> None:
    data = stream(*[Text(c) for c in THINKING_TEXT])
    _, result = run(data, chunk=3, thinking=True)
    assert result.reasoning_text() == "I should say hi.\nDone"
    assert result.text() == "Hello <thinking> is a tag."


def test_thinking_not_parsed_when_not_requested() -> None:
    _, result = run(stream(Text("<thinking>x</thinking>y")))
    assert result.text() == "<thinking>x</thinking>y" and not result.reasoning_text()


def test_thinking_parser_unterminated_and_partial_prefix() -> None:
    parser = ThinkingTagParser()
    assert parser.feed("<thi") == []
    assert parser.feed("nking>abc</thin") == [("reasoning", "abc")]
    assert parser.flush() == [("reasoning", "</thin")]
    parser = ThinkingTagParser()
    assert parser.feed("<thx") == [("text", "<thx")]


def test_exception_frame_mid_stream() -> None:
    events, result = run(stream(Text("partial"), StreamException("ThrottlingException", "slow down"), Text("ignored")))
    errors = [e for e in events if isinstance(e, StreamError)]
    assert len(errors) == 1 and errors[0].status == 429 and errors[0].kind == "rate_limited"
    assert result.text() == "partial" and result.finish_reason == "error"
    assert not any(isinstance(e, Finish) for e in events)


def test_error_message_type_frame() -> None:
    frame = encode_frame({":message-type": "error", ":error-code": "InternalError", ":error-message": "boom"}, b"")
    events, result = run(stream(Text("a")) + frame)
    assert isinstance(events[-1], StreamError) and "boom" in events[-1].message


def test_empty_stream_is_an_error() -> None:
    events, _ = run(b"")
    assert isinstance(events[-1], StreamError)


def test_stop_reason_max_tokens_is_length() -> None:
    _, result = run(stream(Text("a"), Metadata(stop_reason="MAX_TOKENS")))
    assert result.finish_reason == "length"
