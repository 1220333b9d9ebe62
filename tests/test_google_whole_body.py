"""A non-stream Gemini `GenerateContentResponse` (`:generateContent`) -> canonical events: a real
captured answer, thoughts and signatures, function calls, usage with cached and thinking tokens,
a blocked prompt, and an error object answered with a 200."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from llmbridge.accumulate import StreamAccumulator
from llmbridge.canonical import ChatResult, Finish, ReasoningDelta, StreamError, TextDelta, Usage, UsageEvent
from llmbridge.providers.gemini_api.errors import classify
from llmbridge.providers.google.decoder import GeminiDecoder
from llmbridge.providers.google.whole_body import whole_body_decoder
from tests.fakes import gemini_api as fg

SAMPLES = Path(__file__).parents[1] / "replay" / "samples" / "gemini-cli"
SIGNED_CALL = {
    "functionCall": {"name": "get_weather", "args": {"city": "Paris"}, "id": "fc-1"},
    "thoughtSignature": "U0lH",
}
REPLIES = {
    "text": fg.text_reply("Hello ", "world"),
    "thought": fg.text_reply("one ", "two", thought="Counting."),
    "tool": fg.tool_reply("get_weather", {"city": "Paris"}, call_id="fc-1"),
    "signed tool": fg.Reply(chunks=[fg.chunk({"text": "Checking."}), fg.chunk(SIGNED_CALL, finish="STOP", usage=True)]),
}


def whole(answer: dict) -> list:
    decoder = whole_body_decoder(classify)
    assert decoder.feed(json.dumps(answer).encode()) == []
    return decoder.close()


def result(events: list) -> ChatResult:
    accumulator = StreamAccumulator("x", "m")
    accumulator.feed_all(events)
    return accumulator.result()


def test_a_captured_non_stream_answer():
    answer = json.loads((SAMPLES / "gemini-codeassist-nonstream-unwrapped.json").read_text())
    done = result(whole(answer))
    assert "349187" in done.text() and done.finish_reason == "stop" and done.error is None
    assert done.usage.input_tokens == 106 and done.usage.output_tokens == 821 + 747
    assert done.usage.reasoning_tokens == 747


@pytest.mark.parametrize("name", sorted(REPLIES))
def test_a_whole_answer_accumulates_to_what_its_stream_does(name):
    chunks = REPLIES[name].chunks
    streamed = GeminiDecoder(classify)
    data = b"".join(b"data: " + json.dumps(c).encode() + b"\r\n\r\n" for c in chunks)
    from_stream = result(streamed.feed(data) + streamed.close())
    from_whole = result(whole(fg.whole_response(chunks)))
    assert from_whole.model_dump() == from_stream.model_dump()


def test_thoughts_signatures_usage_and_cached_tokens():
    answer = fg.whole_response(REPLIES["thought"].chunks)
    answer["usageMetadata"] = dict(fg.USAGE, cachedContentTokenCount=4)
    answer["candidates"][0]["content"]["parts"][1]["thoughtSignature"] = "U0lHMQ=="
    events = whole(answer)
    assert ReasoningDelta(text="Counting.") in events
    assert TextDelta(text="one two", provider_metadata={"gemini": {"thought_signature": "U0lHMQ=="}}) in events
    usage = next(e for e in events if isinstance(e, UsageEvent)).usage
    assert usage == Usage(input_tokens=12, output_tokens=6 + 2, cached_tokens=4, reasoning_tokens=2)
    assert events[-1] == Finish(reason="stop", raw_reason="STOP")


def test_a_signed_function_call_keeps_its_signature_and_finishes_as_tool_calls():
    done = result(whole(fg.whole_response(REPLIES["signed tool"].chunks)))
    call = done.parts[-1]
    assert (call.id, call.name, call.arguments) == ("fc-1", "get_weather", {"city": "Paris"})
    assert call.provider_metadata == {"gemini": {"thought_signature": "U0lH"}}
    assert done.finish_reason == "tool_calls" and done.text() == "Checking."


def test_a_blocked_prompt_is_a_content_filter_finish():
    events = whole({"promptFeedback": {"blockReason": "SAFETY"}, "usageMetadata": {"promptTokenCount": 3}})
    assert events[-1] == Finish(reason="content_filter", raw_reason="SAFETY")


def test_an_error_object_answered_with_200_is_classified_as_the_api_would_be():
    error = {"code": 429, "message": "Resource has been exhausted", "status": "RESOURCE_EXHAUSTED"}
    events = whole({"error": error})
    assert len(events) == 1 and isinstance(events[0], StreamError) and events[0].status == 429
    assert "Resource has been exhausted" in events[0].message


def test_an_answer_without_a_finish_reason_is_a_protocol_error():
    answer = fg.whole_response([fg.chunk({"text": "The answer is"})])
    events = whole(answer)
    assert isinstance(events[-1], StreamError) and events[-1].kind == "upstream_protocol_error"
    assert events[-1].message.startswith("Gemini answered with a malformed answer: an answer that does not say")
