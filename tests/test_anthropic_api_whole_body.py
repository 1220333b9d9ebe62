"""A non-stream Anthropic `message` -> the same canonical events and result as its stream: thinking
with its signature, redacted thinking, text, tool_use input, stop reasons, usage with cache reads and
writes; an error object answered with a 200 is the stream's error event."""

from __future__ import annotations

import json

import pytest

from llmbridge.accumulate import StreamAccumulator
from llmbridge.canonical import ChatResult, Finish, ReasoningDelta, StreamError, Usage, UsageEvent
from llmbridge.providers.anthropic_api.decoder import AnthropicDecoder
from llmbridge.providers.anthropic_api.whole_body import whole_body_decoder
from tests.fakes import anthropic_api as fa

REDACTED = [
    fa._start(),
    *fa._block(0, {"type": "redacted_thinking", "data": "EmwKAhgBEgy3va3pzix/LafPsn4a"}, []),
    *fa._block(
        1,
        {"type": "thinking", "thinking": "", "signature": ""},
        [
            {"type": "thinking_delta", "thinking": "Plan."},
            {"type": "signature_delta", "signature": "c2ln"},
        ],
    ),
    *fa.text_events("Hi."),
    *fa._end("end_turn"),
]
SCRIPTS = {
    "text": fa.text_reply("Hello there").events,
    "stop_sequence": fa.text_reply("one two", stop_reason="stop_sequence", stop_sequence="END").events,
    "thinking": fa.thinking_reply("Let me think.", "c2lnbmF0dXJl", "Forty-two.").events,
    "tool": fa.tool_reply("get_weather", "toolu_01", {"city": "Paris"}, text="Checking.").events,
    "redacted": REDACTED,
}


def whole(message: dict) -> list:
    decoder = whole_body_decoder()
    assert decoder.feed(json.dumps(message).encode()) == []
    return decoder.close()


def result(events: list) -> ChatResult:
    accumulator = StreamAccumulator("x", "m")
    accumulator.feed_all(events)
    return accumulator.result()


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_a_whole_message_accumulates_to_what_its_stream_does(name):
    status, message = fa.message(SCRIPTS[name])
    assert status == 200
    streamed = AnthropicDecoder()
    from_stream = result(streamed.feed(fa._sse(SCRIPTS[name])) + streamed.close())
    from_whole = result(whole(message))
    assert from_whole.model_dump() == from_stream.model_dump()
    assert from_whole.error is None


def test_thinking_keeps_its_signature_and_usage_counts_cache_reads_and_writes():
    _, message = fa.message(SCRIPTS["thinking"])
    events = whole(message)
    assert ReasoningDelta(text="Let me think.", signature="c2lnbmF0dXJl") in events
    usage = next(e for e in events if isinstance(e, UsageEvent)).usage
    assert usage == Usage(input_tokens=20 + 5 + 3, output_tokens=9, cached_tokens=5, cache_creation_tokens=3)
    done = result(events)
    assert [p.type for p in done.parts] == ["reasoning", "text"] and done.id == "msg_fake01"


def test_redacted_thinking_and_tool_input():
    redacted = result(whole(fa.message(SCRIPTS["redacted"])[1]))
    assert redacted.parts[0].redacted == "EmwKAhgBEgy3va3pzix/LafPsn4a"
    assert redacted.parts[1].signature == "c2ln"
    tool = result(whole(fa.message(SCRIPTS["tool"])[1]))
    call = tool.parts[-1]
    assert (call.id, call.name, call.arguments) == ("toolu_01", "get_weather", {"city": "Paris"})
    assert tool.finish_reason == "tool_calls"


def test_stop_sequence_is_named():
    events = whole(fa.message(SCRIPTS["stop_sequence"])[1])
    assert Finish(reason="stop_sequence", raw_reason="stop_sequence", stop_sequence="END") in events


def test_an_error_object_answered_with_200_is_the_error_event():
    events = whole({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})
    assert len(events) == 1 and isinstance(events[0], StreamError)
    assert events[0].kind == "overloaded" and "Overloaded" in events[0].message


@pytest.mark.parametrize(
    "message,problem",
    [
        ({"type": "completion", "completion": "hi"}, "an answer of type 'completion' without a list of content"),
        ({"type": "message", "content": "hi"}, "an answer of type 'message' without a list of content"),
        (dict(fa.message(SCRIPTS["text"])[1], stop_reason=None), "does not say how it ended"),
    ],
)
def test_a_message_of_another_shape_or_unfinished_is_a_protocol_error(message, problem):
    events = whole(message)
    assert isinstance(events[-1], StreamError) and events[-1].kind == "upstream_protocol_error"
    assert "Anthropic answered with a malformed answer" in events[-1].message and problem in events[-1].message
