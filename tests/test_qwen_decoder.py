"""Qwen's stream quirks: cumulative content, leaked <think> blocks, reasoning_content, tool-call
fragments, usage with cached tokens."""

from __future__ import annotations

import json
from typing import Any

import pytest

from llmbridge.canonical import (
    Finish,
    ReasoningDelta,
    StreamError,
    TextDelta,
    ToolCallDelta,
    ToolCallStart,
    UsageEvent,
)
from llmbridge.providers.qwen.decoder import QwenChunkDecoder, ThinkSplitter


def stream(*deltas: dict[str, Any], finish: str = "stop", usage: dict[str, Any] | None = None) -> bytes:
    base = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "coder-model"}
    chunks = [dict(base, choices=[{"index": 0, "delta": d, "finish_reason": None}]) for d in deltas]
    chunks.append(dict(base, choices=[{"index": 0, "delta": {}, "finish_reason": finish}]))
    if usage:
        chunks.append(dict(base, choices=[], usage=usage))
    return b"".join(b"data: " + json.dumps(c).encode() + b"\n\n" for c in chunks) + b"data: [DONE]\n\n"


def decode(raw: bytes, step: int | None = None) -> list[Any]:
    decoder = QwenChunkDecoder()
    step = step or len(raw)
    events = [e for i in range(0, len(raw), step) for e in decoder.feed(raw[i : i + step])]
    return events + decoder.close()


def texts(events: list[Any]) -> tuple[str, str]:
    text = "".join(e.text for e in events if isinstance(e, TextDelta))
    thinking = "".join(e.text for e in events if isinstance(e, ReasoningDelta))
    return text, thinking


@pytest.mark.parametrize("step", [None, 1, 7])
def test_cumulative_content_is_deduplicated(step):
    raw = stream({"content": "Hel"}, {"content": "Hello"}, {"content": "Hello, wor"}, {"content": "Hello, world"})
    assert texts(decode(raw, step)) == ("Hello, world", "")


def test_incremental_content_passes_unchanged_even_when_a_piece_repeats_earlier_text():
    raw = stream({"content": "ab"}, {"content": "c"}, {"content": "ab"}, {"content": "abcab!"})
    assert texts(decode(raw))[0] == "abcababcab!"


def test_repeated_cumulative_piece_adds_nothing():
    raw = stream({"content": "Hi"}, {"content": "Hi the"}, {"content": "Hi the"}, {"content": "Hi there"})
    assert texts(decode(raw))[0] == "Hi there"


@pytest.mark.parametrize("step", [None, 1, 3])
def test_leaked_think_block_becomes_reasoning(step):
    raw = stream({"content": "<thi"}, {"content": "nk>plan it"}, {"content": "</th"}, {"content": "ink>\n\nDone <b>"})
    assert texts(decode(raw, step)) == ("Done <b>", "plan it")


def test_reasoning_content_and_cumulative_think_leak_together():
    raw = stream(
        {"reasoning_content": "first "},
        {"content": "<think>x"},
        {"content": "<think>xy</think>"},
        {"content": "<think>xy</think>Answer"},
    )
    assert texts(decode(raw)) == ("Answer", "first xy")


def test_unclosed_partial_tag_at_the_end_is_text():
    raw = stream({"content": "a <thin"})
    assert texts(decode(raw)) == ("a <thin", "")


def test_tool_call_fragments_are_joined_and_usage_mapped():
    raw = stream(
        {"content": "Let me look."},
        {
            "tool_calls": [
                {"index": 0, "id": "call_1", "type": "function", "function": {"name": "read", "arguments": ""}}
            ]
        },
        {"tool_calls": [{"index": 0, "function": {"arguments": '{"path": '}}]},
        {"tool_calls": [{"index": 0, "function": {"arguments": '"a.txt"}'}}]},
        finish="tool_calls",
        usage={
            "prompt_tokens": 50,
            "completion_tokens": 9,
            "total_tokens": 59,
            "prompt_tokens_details": {"cached_tokens": 32},
        },
    )
    events = decode(raw, 5)
    starts = [e for e in events if isinstance(e, ToolCallStart)]
    assert [(s.id, s.name) for s in starts] == [("call_1", "read")]
    assert json.loads("".join(e.arguments for e in events if isinstance(e, ToolCallDelta))) == {"path": "a.txt"}
    assert next(e for e in events if isinstance(e, Finish)).reason == "tool_calls"
    usage = next(e for e in events if isinstance(e, UsageEvent)).usage
    assert (usage.input_tokens, usage.output_tokens, usage.cached_tokens) == (50, 9, 32)
    assert texts(events)[0] == "Let me look."


def test_a_cut_stream_is_an_error_not_an_answer():
    raw = stream({"content": "partial"}).split(b"data: {")[0:2]
    events = decode(b"data: {".join(raw))
    assert any(isinstance(e, StreamError) for e in events)


def test_splitter_keeps_text_around_tags():
    splitter = ThinkSplitter()
    runs = splitter.feed("a<think>b</think>c<think>d") + splitter.flush()
    assert runs == [(False, "a"), (True, "b"), (False, "c"), (True, "d")]
