"""Anthropic SSE bytes -> canonical events, fed split at random points (even inside UTF-8)."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from llmbridge.accumulate import StreamAccumulator
from llmbridge.canonical import Finish, ReasoningDelta, ResponseMeta, StreamError, ToolCallDelta, UsageEvent
from llmbridge.providers.anthropic_api.decoder import AnthropicDecoder
from tests.fakes.anthropic_api import (
    _sse,
    error_event_reply,
    text_reply,
    thinking_reply,
    tool_reply,
)


def decode(data: bytes, seed: int = 0) -> list:
    rng = random.Random(seed)
    decoder = AnthropicDecoder()
    events, pos = [], 0
    while pos < len(data):
        step = rng.randint(1, 40)
        events += decoder.feed(data[pos : pos + step])
        pos += step
    return events + decoder.close()


def result(data: bytes, seed: int = 0):
    acc = StreamAccumulator("x", "m")
    acc.feed_all(decode(data, seed))
    return acc.result()


@pytest.mark.parametrize("seed", range(5))
def test_text_with_usage_and_meta(seed):
    events = decode(_sse(text_reply("Héllo wörld ✓").events), seed)
    assert events[0] == ResponseMeta(response_id="msg_fake01", model="claude-test")
    done = result(_sse(text_reply("Héllo wörld ✓").events), seed)
    assert done.text() == "Héllo wörld ✓" and done.finish_reason == "stop"
    # input = 20 fresh + 5 cache reads + 3 cache writes
    assert done.usage is not None
    assert (
        done.usage.input_tokens,
        done.usage.cached_tokens,
        done.usage.cache_creation_tokens,
        done.usage.output_tokens,
    ) == (28, 5, 3, 9)


@pytest.mark.parametrize("seed", range(5))
def test_thinking_with_signature(seed):
    done = result(_sse(thinking_reply("step one, step two", "sig==", "answer").events), seed)
    reasoning = done.parts[0]
    assert reasoning.type == "reasoning" and reasoning.text == "step one, step two"
    assert reasoning.signature == "sig==" and done.text() == "answer"


@pytest.mark.parametrize("seed", range(5))
def test_tool_use_with_fragmented_input(seed):
    args = {"city": "Zürich", "days": [1, 2, 3], "nested": {"a": "b"}}
    events = decode(_sse(tool_reply("weather", "toolu_01", args, text="checking").events), seed)
    assert sum(isinstance(e, ToolCallDelta) for e in events) >= 4
    done = result(_sse(tool_reply("weather", "toolu_01", args, text="checking").events), seed)
    call = done.tool_calls()[0]
    assert (call.id, call.name, call.arguments) == ("toolu_01", "weather", args)
    assert done.text() == "checking" and done.finish_reason == "tool_calls"


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("end_turn", "stop"),
        ("max_tokens", "length"),
        ("tool_use", "tool_calls"),
        ("refusal", "content_filter"),
        ("stop_sequence", "stop_sequence"),
    ],
)
def test_stop_reasons(raw, reason):
    events = decode(_sse(text_reply("x", stop_reason=raw, stop_sequence="END").events))
    finish = next(e for e in events if isinstance(e, Finish))
    assert finish.reason == reason and finish.raw_reason == raw
    assert finish.stop_sequence == ("END" if raw == "stop_sequence" else None)


def test_redacted_thinking_ping_and_unknown_events():
    data = _sse(
        [
            ("message_start", {"type": "message_start", "message": {"id": "msg_1", "usage": {}}}),
            ("ping", {"type": "ping"}),
            (
                "content_block_start",
                {
                    "type": "content_block_start",
                    "index": 0,
                    "content_block": {"type": "redacted_thinking", "data": "XYZ"},
                },
            ),
            ("content_block_stop", {"type": "content_block_stop", "index": 0}),
            ("future_event", {"type": "future_event"}),
            (
                "message_delta",
                {"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 3}},
            ),
            ("message_stop", {"type": "message_stop"}),
        ]
    )
    events = decode(data)
    assert ReasoningDelta(redacted="XYZ") in events
    assert isinstance(events[-1], Finish) and isinstance(events[-2], UsageEvent)


def test_error_event_becomes_stream_error():
    events = decode(_sse(error_event_reply("overloaded_error", "Overloaded").events))
    error = events[-1]
    assert isinstance(error, StreamError) and error.kind == "overloaded" and error.status == 503
    assert "Overloaded" in error.message


def test_cut_stream_is_reported():
    data = _sse(text_reply("hello").events)
    cut = data[: data.index(b"event: message_delta")]
    events = decode(cut)
    assert isinstance(events[-1], StreamError) and events[-1].status == 502


@pytest.mark.parametrize("garbage", [b"data: not json\n\n", b"data: [1]\n\n", b'data: {"type": NaN}\n\n'])
def test_garbage_is_a_protocol_error(garbage):
    decoder = AnthropicDecoder()
    (error,) = decoder.feed(garbage + b'event: message_stop\ndata: {"type":"message_stop"}\n\n')
    assert (error.kind, error.status) == ("upstream_protocol_error", 502)
    assert decoder.close() == []  # one error: not also "cut"
    assert json.dumps(error.model_dump())


GOLDEN = Path(__file__).parent / "data" / "golden" / "anthropic_thinking_text_tool.sse"


@pytest.mark.parametrize("seed", range(3))
def test_golden_anthropic_stream_decodes(seed):
    """The bridge's own Anthropic rendering (the golden file) read back: the two sides agree."""
    done = result(GOLDEN.read_bytes(), seed)
    kinds = [p.type for p in done.parts]
    assert kinds[:3] == ["reasoning", "text", "tool_call"]
    assert done.parts[0].signature == "SIG==" and done.parts[0].text == "Let me think."
    assert done.tool_calls()[0].name == "Read" and done.tool_calls()[0].arguments
