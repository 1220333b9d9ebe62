"""A non-stream `chat.completion` -> the same canonical events, and the same accumulated result, as
the stream of that answer; an error object answered with a 200 is the stream's error event."""

from __future__ import annotations

import json

import pytest

from llmbridge.accumulate import StreamAccumulator
from llmbridge.canonical import ChatResult, Finish, ReasoningDelta, StreamError, ToolCallStart, Usage, UsageEvent
from llmbridge.providers.openai_api.decoder import ChatCompletionChunkDecoder
from llmbridge.providers.openai_api.whole_body import whole_body_decoder
from tests.bridge_kit import sse
from tests.fakes.openai_upstream import Reply, completion

USAGE = {
    "prompt_tokens": 40,
    "completion_tokens": 12,
    "total_tokens": 52,
    "prompt_tokens_details": {"cached_tokens": 32},
    "completion_tokens_details": {"reasoning_tokens": 5},
}
CALLS = [
    {"index": 0, "id": "call_a", "type": "function", "function": {"name": "get_weather", "arguments": '{"ci'}},
    {"index": 0, "function": {"arguments": 'ty":"Paris"}'}},
    {"index": 1, "id": "call_b", "type": "function", "function": {"name": "get_time", "arguments": "{}"}},
]
REPLIES = {
    "text": Reply(deltas=[{"content": "Hel"}, {"content": "lo."}], usage=USAGE),
    "reasoning": Reply(deltas=[{"reasoning_content": "Think."}, {"content": "Done."}], usage=USAGE),
    "tools": Reply(
        deltas=[{"content": "Checking."}, {"tool_calls": CALLS[:2]}, {"tool_calls": CALLS[2:]}],
        finish="tool_calls",
        usage=USAGE,
    ),
    "length": Reply(deltas=[{"content": "cut"}], finish="length", usage=USAGE),
    "filtered": Reply(deltas=[], finish="content_filter", usage=USAGE),
}


def whole(answer: dict) -> list:
    decoder = whole_body_decoder()
    assert decoder.feed(json.dumps(answer).encode()) == []
    return decoder.close()


def as_stream(reply: Reply) -> bytes:
    """The same answer as OpenAI streams it (what the fake sends for `"stream": true`)."""
    base = {"id": "chatcmpl-fake", "object": "chat.completion.chunk", "model": "gpt-test"}
    chunks = [dict(base, choices=[{"index": 0, "delta": d, "finish_reason": None}]) for d in reply.deltas]
    chunks.append(dict(base, choices=[{"index": 0, "delta": {}, "finish_reason": reply.finish}]))
    if reply.usage:
        chunks.append(dict(base, choices=[], usage=reply.usage))
    return sse(*chunks)


def result(events: list) -> ChatResult:
    accumulator = StreamAccumulator("x", "m")
    accumulator.feed_all(events)
    return accumulator.result()


@pytest.mark.parametrize("name", sorted(REPLIES))
def test_a_whole_answer_accumulates_to_what_its_stream_does(name):
    reply = REPLIES[name]
    streamed = ChatCompletionChunkDecoder()
    from_stream = result(streamed.feed(as_stream(reply)) + streamed.close())
    from_whole = result(whole(completion(reply, "gpt-test")))
    assert from_whole.model_dump() == from_stream.model_dump()
    assert from_whole.error is None


def test_text_reasoning_usage_and_cached_tokens():
    events = whole(completion(REPLIES["reasoning"], "gpt-test"))
    assert ReasoningDelta(text="Think.") in events
    usage = next(e for e in events if isinstance(e, UsageEvent)).usage
    assert usage == Usage(input_tokens=40, output_tokens=12, cached_tokens=32, reasoning_tokens=5)
    assert Finish(reason="stop", raw_reason="stop") in events
    done = result(events)
    assert (done.id, done.model, done.text()) == ("chatcmpl-fake", "gpt-test", "Done.")


def test_tool_calls_keep_their_order_ids_and_arguments():
    done = result(whole(completion(REPLIES["tools"], "gpt-test")))
    calls = [(p.id, p.name, p.arguments) for p in done.parts if p.type == "tool_call"]
    assert calls == [("call_a", "get_weather", {"city": "Paris"}), ("call_b", "get_time", {})]
    assert done.finish_reason == "tool_calls" and done.text() == "Checking."


def test_reasoning_under_its_other_name():
    answer = completion(Reply(deltas=[{"content": "ok"}]), "m")
    answer["choices"][0]["message"]["reasoning"] = "via reasoning"
    assert ReasoningDelta(text="via reasoning") in whole(answer)


def test_an_error_object_answered_with_200_is_the_error_event():
    events = whole({"error": {"message": "The server had an error", "type": "server_error"}})
    assert events == [StreamError(kind="upstream_error", message="The server had an error", status=502)]


def test_a_tool_call_without_an_id_gets_one_by_position():
    answer = completion(Reply(deltas=[], finish="tool_calls"), "m")
    answer["choices"][0]["message"]["tool_calls"] = [{"type": "function", "function": {"name": "f", "arguments": "{}"}}]
    assert ToolCallStart(index=0, id="call_0", name="f") in whole(answer)
