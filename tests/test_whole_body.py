"""WholeBodyDecoder: a non-stream JSON answer, fed in pieces, decoded at close; every way a body can
be malformed is one upstream_protocol_error naming the problem."""

from __future__ import annotations

import json
import random

import pytest

from llmbridge.canonical import Finish, StreamError, TextDelta
from llmbridge.providers.openai_api.decoder import ChatCompletionChunkDecoder
from llmbridge.providers.openai_api.whole_body import as_chunks
from llmbridge.whole_body import WholeBodyDecoder

ANSWER = {
    "id": "chatcmpl-1",
    "object": "chat.completion",
    "model": "m",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "héllo ✓"}, "finish_reason": "stop"}],
}


def decoder() -> WholeBodyDecoder:
    return WholeBodyDecoder(ChatCompletionChunkDecoder(), as_chunks)


def decode(body: bytes) -> list:
    whole = decoder()
    assert whole.feed(body) == []
    return whole.close()


def problem(body: bytes) -> str:
    events = decode(body)
    assert len(events) == 1 and isinstance(events[0], StreamError), events
    assert events[0].kind == "upstream_protocol_error" and events[0].status == 502
    assert events[0].message.startswith("the OpenAI-compatible upstream answered with a malformed answer: ")
    return events[0].message.split("malformed answer: ", 1)[1]


@pytest.mark.parametrize("seed", range(4))
def test_pieces_split_anywhere_decode_only_at_close_and_alike(seed):
    body = json.dumps(ANSWER, ensure_ascii=False).encode()
    rng = random.Random(seed)
    whole, pos = decoder(), 0
    while pos < len(body):  # cuts land inside UTF-8 sequences too
        step = rng.randint(1, 7)
        assert whole.feed(body[pos : pos + step]) == []
        pos += step
    events = whole.close()
    assert events == decode(body)
    assert TextDelta(text="héllo ✓") in events and events[-1] == Finish(reason="stop", raw_reason="stop")


def test_close_twice_gives_the_events_once():
    whole = decoder()
    whole.feed(json.dumps(ANSWER).encode())
    assert whole.close() and whole.close() == []


@pytest.mark.parametrize(
    "body,expected",
    [
        (b"", "an empty body"),
        (b"  \n", "an empty body"),
        (b"data: {}\n\n", "a body that is not JSON ('data: {}\\n\\n')"),
        (b'{"choices": [', "a body that is not JSON"),
        (b"[1, 2]", "a body that is not a JSON object (list)"),
        (b"NaN", "a body that is not JSON ('NaN')"),
        (b"\xff\xfe{}", "bytes that are not UTF-8 text at byte 0"),
        (b'{"choices": "\\ud800"}', "text that is not valid Unicode (a lone surrogate) at 'choices'"),
        (b"[" * 100_000 + b"]" * 100_000, "a body that is not JSON"),
    ],
)
def test_a_body_that_is_not_one_json_object_is_named(body, expected):
    assert problem(body).startswith(expected)


def test_an_answer_of_the_wrong_shape_is_a_protocol_error():
    assert problem(b'{"choices": []}').startswith("an answer of a shape it cannot have (ValueError")
    assert problem(b'{"object": "list"}').startswith("an answer of a shape it cannot have (KeyError")
    assert problem(b'{"choices": ["text"]}').startswith("an answer of a shape it cannot have (AttributeError")
    content_list = b'{"choices": [{"message": {"content": [1]}, "finish_reason": "stop"}]}'
    assert problem(content_list).startswith("an event of a shape it cannot have")


def test_an_answer_that_does_not_say_how_it_ended_is_not_taken_for_a_whole_one():
    answer = {"choices": [{"index": 0, "message": {"content": "The answer is"}, "finish_reason": None}]}
    events = decode(json.dumps(answer).encode())
    assert TextDelta(text="The answer is") in events
    assert isinstance(events[-1], StreamError) and "does not say how it ended" in events[-1].message
