"""A malformed upstream stream is an upstream protocol error (issue 10, point 7), never a 200 with empty
or shortened content: each provider's decoder, then what a client gets and what is recorded, in
process (the real bridge process: tests/test_e2e_faults_recorded.py)."""

from __future__ import annotations

import asyncio
import json

import pytest

from llmbridge.canonical import StreamError, TextDelta
from llmbridge.errors import UpstreamProtocolError, error_for_kind
from llmbridge.providers.anthropic_api.decoder import AnthropicDecoder
from llmbridge.providers.google.decoder import GeminiDecoder
from llmbridge.providers.google.errors import classify
from llmbridge.providers.kiro.decoder import KiroDecoder
from llmbridge.providers.openai_api.decoder import ChatCompletionChunkDecoder
from llmbridge.sse import JsonEventStreamDecoder, SSEDecoder, SSEProtocolError
from tests.bridge_kit import answer, chat_request, make_bridge, streamed

CHUNK = b'data: {"id":"u","model":"m","choices":[{"index":0,"delta":{"content":"Hel"}}]}\n\n'
STOP = b'data: {"id":"u","model":"m","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}\n\n'

DECODERS = {
    "openai": ChatCompletionChunkDecoder,
    "anthropic": AnthropicDecoder,
    "gemini": lambda: GeminiDecoder(classify),
}

MALFORMED = {
    "not JSON, then [DONE]": b"data: {broken\n\ndata: [DONE]\n\n",
    "bytes that are not UTF-8": b"\xff\xfe\x00\x01garbage\n\n",
    "NUL bytes": b"\x00\x00\x00\x00\n\n",
    "a JSON number": b"data: 5\n\n",
    "NaN": b'data: {"id": NaN}\n\n',
    "a lone surrogate": b'data: {"choices":[{"index":0,"delta":{"content":"\\ud800"}}]}\n\n',
    "nested past the parser": b"data: " + b"[" * 100_000 + b"\n\n",
}


def decode(decoder: JsonEventStreamDecoder | KiroDecoder, *chunks: bytes) -> list:
    events = []
    for chunk in chunks:
        events += decoder.feed(chunk)
    return events + decoder.close()


@pytest.mark.parametrize("provider", sorted(DECODERS))
@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_a_malformed_stream_is_one_protocol_error(provider: str, name: str) -> None:
    events = decode(DECODERS[provider](), MALFORMED[name], STOP)
    errors = [e for e in events if isinstance(e, StreamError)]
    assert len(errors) == 1 and events[-1] is errors[0], events  # nothing decoded after the fault
    assert (errors[0].kind, errors[0].status) == ("upstream_protocol_error", 502)
    assert "malformed stream" in errors[0].message


def test_binary_bytes_mid_stream_end_the_answer_with_an_error() -> None:
    events = decode(ChatCompletionChunkDecoder(), CHUNK, b"\x89PNG\r\n\x1a\n\x00\x00", STOP, b"data: [DONE]\n\n")
    assert [type(e).__name__ for e in events] == ["ResponseMeta", "TextDelta", "StreamError"]
    assert events[-1].kind == "upstream_protocol_error" and "not UTF-8" in events[-1].message


def test_an_event_of_an_impossible_shape_is_a_protocol_error() -> None:
    events = decode(ChatCompletionChunkDecoder(), b'data: {"choices":[5]}\n\n')
    assert events[-1].kind == "upstream_protocol_error" and "AttributeError" in events[-1].message


def test_good_streams_are_unchanged() -> None:
    # a multi-byte character split between chunks, blank keep-alive data, comments, [DONE]
    text = "h\u00e9llo \U0001f600".encode()
    chunk = b'data: {"choices":[{"index":0,"delta":{"content":"' + text + b'"}}]}\n\n'
    split = chunk.index(b"\xf0") + 2
    events = decode(ChatCompletionChunkDecoder(), chunk[:split], chunk[split:], b": ping\n\ndata: \n\n", STOP)
    assert [e for e in events if isinstance(e, TextDelta)] == [TextDelta(text="h\u00e9llo \U0001f600")]
    assert not [e for e in events if isinstance(e, StreamError)]
    pair = b'data: {"choices":[{"index":0,"delta":{"content":"\\ud83d\\ude00"}}]}\n\n'
    assert TextDelta(text="\U0001f600") in decode(ChatCompletionChunkDecoder(), pair, STOP)


def test_the_sse_decoder_says_where_the_bytes_stop_being_text() -> None:
    decoder = SSEDecoder()
    decoder.feed(b"data: ok\n\n")
    with pytest.raises(SSEProtocolError, match="byte 12"):
        decoder.feed(b"da\xc3\x28")  # an invalid continuation byte


def test_kiro_garbage_is_a_protocol_error() -> None:
    events = decode(KiroDecoder(), b"\x00\x00\x00\x10" + b"\xff" * 40)
    assert events[-1].kind == "upstream_protocol_error" and "Kiro" in events[-1].message


def test_the_kind_names_its_class() -> None:
    error = error_for_kind("upstream_protocol_error", "x", 502)
    assert isinstance(error, UpstreamProtocolError) and error.status == 502 and error.action == "rotate"


# --- what the client gets and what is recorded --------------------------------------------------


def test_garbage_before_any_content_is_a_502_recorded_with_the_raw_bytes() -> None:
    raw = b"data: {broken\n\ndata: [DONE]\n\n"
    bridge, _ = make_bridge(lambda request: streamed(raw))
    for stream in (False, True):
        status, body = asyncio.run(answer(bridge, chat_request(stream=stream)))
        assert status == 502, body
        assert json.loads(body)["error"]["code"] == "upstream_protocol_error" or "malformed" in body.decode()
    for record in bridge.records:  # type: ignore[attr-defined]
        assert record.status == 502 and record.error_kind == "upstream_protocol_error"
        assert bytes(record.attempts[-1].response_body) == raw


def test_binary_mid_stream_is_an_error_event_and_recorded_as_an_error() -> None:
    raw = CHUNK + b"\xff\xfe\xfd" + STOP + b"data: [DONE]\n\n"
    bridge, _ = make_bridge(lambda request: streamed(raw))
    status, body = asyncio.run(answer(bridge, chat_request(stream=True)))
    assert status == 200  # the stream had started: its head went out with the first content
    events = [line[6:] for line in body.decode().splitlines() if line.startswith("data: ")]
    assert '"Hel"' in body.decode() and "error" in json.loads(events[-2]) and events[-1] == "[DONE]"
    (record,) = bridge.records  # type: ignore[attr-defined]
    assert record.error_kind == "upstream_protocol_error" and record.finish_reason != "stop"
    assert bytes(record.attempts[-1].response_body) == raw

    # a non-stream client gets no half answer: a 502
    bridge, _ = make_bridge(lambda request: streamed(raw))
    status, body = asyncio.run(answer(bridge, chat_request(stream=False)))
    assert status == 502 and "malformed" in json.loads(body)["error"]["message"]
