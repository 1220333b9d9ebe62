"""What `Answer` writes into the exchange record when the client leaves part-way or stays to the end."""

from __future__ import annotations

import asyncio
import json
import time

import httpx

from llmbridge.answer import Answer, ClientGone, ResponseSink
from llmbridge.canonical import ChatRequest
from llmbridge.exchange import AttemptRecord, ExchangeRecord
from llmbridge.formats.openai import OpenAIFormat
from llmbridge.providers.base import UpstreamCall
from llmbridge.providers.openai_api.decoder import ChatCompletionChunkDecoder


def sse(delta: dict | None = None, finish: str | None = None) -> bytes:
    chunk = {
        "id": "c",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "m",
        "choices": [{"index": 0, "delta": delta or {}, "finish_reason": finish}],
    }
    return b"data: " + json.dumps(chunk).encode() + b"\n\n"


UPSTREAM = [
    sse({"role": "assistant", "content": "one "}),
    sse({"content": "two "}),
    sse({"content": "three"}),
    sse(finish="stop"),
    b"data: [DONE]\n\n",
]


class LeavingSink(ResponseSink):
    """A client that goes away after `writes` writes (None: stays to the end)."""

    def __init__(self, writes: int | None) -> None:
        self.writes, self.seen = writes, 0

    async def write(self, data: bytes) -> None:
        if not data:
            return
        self.seen += 1
        if self.writes is not None and self.seen > self.writes:
            raise ClientGone()


async def run_answer(writes: int | None) -> tuple[ExchangeRecord, list[ExchangeRecord]]:
    async def body():
        for chunk in UPSTREAM:
            yield chunk

    attempt = AttemptRecord(account="a", provider="openai", status=200)
    call = UpstreamCall(
        response=httpx.Response(200, content=body()), decoder=ChatCompletionChunkDecoder(), attempt=attempt
    )
    request = ChatRequest.model_validate(
        {"model": "m", "stream": True, "messages": [{"role": "user", "parts": [{"type": "text", "text": "hi"}]}]}
    )
    record = ExchangeRecord(stream=True, attempts=[attempt])
    done: list[ExchangeRecord] = []

    async def on_done(answer: Answer) -> None:
        done.append(answer.record)

    answer = Answer(
        call=call, client_format=OpenAIFormat(), request=request, record=record, keepalive_seconds=5, on_done=on_done
    )
    await answer.run(LeavingSink(writes))
    return record, done


def test_client_leaving_mid_stream_is_recorded_once_as_partial_without_finish_reason():
    record, done = asyncio.run(run_answer(writes=2))
    assert done == [record]  # submitted once
    assert record.client_disconnected and record.status == 200
    assert record.finish_reason is None and record.result["finish_reason"] is None
    assert record.result["parts"] and "three" not in json.dumps(record.result["parts"])


def test_client_staying_to_the_end_keeps_the_finish_reason():
    record, done = asyncio.run(run_answer(writes=None))
    assert done == [record] and not record.client_disconnected
    assert record.finish_reason == "stop" and record.result["finish_reason"] == "stop"
    assert "".join(p["text"] for p in record.result["parts"]) == "one two three"


def test_relay_close_waits_for_answers_being_sent_so_their_records_are_submitted():
    from llmbridge.relay import Relay

    async def scenario() -> list[ExchangeRecord]:
        async def slow_body():
            yield UPSTREAM[0]
            await asyncio.sleep(30)  # an upstream still generating when the bridge stops
            yield UPSTREAM[-1]

        attempt = AttemptRecord(account="a", provider="openai", status=200)
        call = UpstreamCall(
            response=httpx.Response(200, content=slow_body()), decoder=ChatCompletionChunkDecoder(), attempt=attempt
        )
        request = ChatRequest.model_validate(
            {"model": "m", "stream": True, "messages": [{"role": "user", "parts": [{"type": "text", "text": "hi"}]}]}
        )
        done: list[ExchangeRecord] = []

        async def on_done(answer: Answer) -> None:
            done.append(answer.record)

        relay = Relay()
        await relay.start()
        token = relay.park(
            Answer(
                call=call,
                client_format=OpenAIFormat(),
                request=request,
                record=ExchangeRecord(stream=True, attempts=[attempt]),
                keepalive_seconds=5,
                on_done=on_done,
            )
        )
        reader, writer = await asyncio.open_connection("127.0.0.1", relay.port)
        writer.write(f"GET /{token} HTTP/1.1\r\nhost: relay\r\n\r\n".encode())
        await reader.readuntil(b"one ")  # the first words reached the client
        await asyncio.wait_for(relay.close(), 5)
        submitted = list(done)  # what had reached on_done when close() returned
        writer.close()
        return submitted

    (record,) = asyncio.run(scenario())
    assert record.error_kind == "interrupted" and record.finish_reason is None
    assert "one" in json.dumps(record.result["parts"])


def test_overhead_is_the_time_so_far_less_the_upstream_waits():
    record = ExchangeRecord(started=time.time() - 1.0)  # a second ago
    record.attempts = [AttemptRecord("a", "openai", waited_ms=300.0), AttemptRecord("b", "openai", waited_ms=200.0)]
    assert 450 < record.overhead_ms() < 5000 - 500
    record.attempts[0].waited_ms = 10_000.0  # more waiting than time passed (clocks differ): never negative
    assert record.overhead_ms() == 0.0
