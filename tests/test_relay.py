"""The relay's sink and its client lane (`llmbridge.relay`), over real loopback sockets.

The sink writes a stream to its connection with mitmproxy until mitmproxy has passed on everything
it was given; then the body goes to the client's own connection, framed the same way, and the end
goes back through mitmproxy. Here "mitmproxy" and "the client" are two plain socket pairs, so what
each side receives is exactly what was written to it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest

from llmbridge.answer import ClientGone, DeferredAnswer
from llmbridge.relay import ChunkedSink, ClientLane, Relay


@asynccontextmanager
async def socket_pair() -> AsyncIterator[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    """A connected pair on 127.0.0.1: the reader of the far end and the writer of the near end."""
    accepted: asyncio.Future[asyncio.StreamReader] = asyncio.get_running_loop().create_future()

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.set_result(reader)
        await asyncio.sleep(3600)

    server = await asyncio.start_server(on_connect, "127.0.0.1", 0)
    _, writer = await asyncio.open_connection("127.0.0.1", server.sockets[0].getsockname()[1])
    far = await accepted
    try:
        yield far, writer
    finally:
        writer.close()
        server.close()


async def received(reader: asyncio.StreamReader, expected: bytes) -> bytes:
    return await asyncio.wait_for(reader.readexactly(len(expected)), 5)


async def nothing_more(reader: asyncio.StreamReader) -> bool:
    try:
        await asyncio.wait_for(reader.read(1), 0.2)
    except TimeoutError:
        return True
    return False


def frame(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


def test_without_a_lane_the_whole_stream_goes_to_mitmproxy_chunked():
    async def run() -> None:
        async with socket_pair() as (mitmproxy, to_mitmproxy):
            sink = ChunkedSink(to_mitmproxy)
            await sink.start(200, {"content-type": "text/event-stream"}, True)
            await sink.write(b"data: one\n\n")
            await sink.write(b"data: two\n\n")
            await sink.end()
            head = await mitmproxy.readuntil(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 200 OK\r\n") and b"transfer-encoding: chunked" in head
            body = frame(b"data: one\n\n") + frame(b"data: two\n\n") + b"0\r\n\r\n"
            assert await received(mitmproxy, body) == body

    asyncio.run(run())


def test_the_body_goes_to_the_client_once_mitmproxy_has_passed_on_all_it_was_given():
    async def run() -> None:
        async with socket_pair() as (mitmproxy, to_mitmproxy), socket_pair() as (client, to_client):
            lane = ClientLane()
            activity: list[int] = []
            sink = ChunkedSink(to_mitmproxy, lane)
            await sink.start(200, {"content-type": "text/event-stream"}, True)
            await sink.write(b"first")  # the head and the first chunk: always through mitmproxy
            lane.open(to_client, lambda: activity.append(1))
            await sink.write(b"second")  # mitmproxy has not passed "first" on yet: it must go the same way
            await mitmproxy.readuntil(b"\r\n\r\n")
            assert await received(mitmproxy, frame(b"first") + frame(b"second")) == frame(b"first") + frame(b"second")
            assert lane.passing(b"first") == b"first"
            await sink.write(b"third")  # "second" is still in mitmproxy's hands
            assert await received(mitmproxy, frame(b"third")) == frame(b"third")
            lane.passing(b"second")
            lane.passing(b"third")
            await sink.write(b"fourth")  # everything passed on: straight to the client
            await sink.write(b"fifth")
            await sink.end()  # the end through mitmproxy, which ends the response itself
            assert await received(client, frame(b"fourth") + frame(b"fifth")) == frame(b"fourth") + frame(b"fifth")
            assert await received(mitmproxy, b"0\r\n\r\n") == b"0\r\n\r\n"
            assert await nothing_more(client) and await nothing_more(mitmproxy)
            assert len(activity) == 2  # mitmproxy's idle timer is told about each direct write

    asyncio.run(run())


def test_after_a_head_sent_alone_the_first_chunk_still_goes_through_mitmproxy():
    """A stream whose upstream is silent at first sends its head alone. mitmproxy may lend the lane
    before it has written that head to the client: only a chunk it has passed on proves it has."""

    async def run() -> None:
        async with socket_pair() as (mitmproxy, to_mitmproxy), socket_pair() as (client, to_client):
            lane = ClientLane()
            sink = ChunkedSink(to_mitmproxy, lane)
            await sink.start(200, {}, True)
            await sink.flush()
            lane.open(to_client, lambda: None)
            await sink.write(b"first")
            await mitmproxy.readuntil(b"\r\n\r\n")
            assert await received(mitmproxy, frame(b"first")) == frame(b"first")
            assert await nothing_more(client)

    asyncio.run(run())


def test_a_lane_never_opened_leaves_every_byte_to_mitmproxy():
    async def run() -> None:
        async with socket_pair() as (mitmproxy, to_mitmproxy):
            lane = ClientLane()
            sink = ChunkedSink(to_mitmproxy, lane)
            await sink.start(200, {}, True)
            await sink.write(b"a")
            lane.passing(b"a")  # passed on, but the addon lent no connection (TLS, HTTP/1.0)
            await sink.write(b"b")
            await sink.end()
            await mitmproxy.readuntil(b"\r\n\r\n")
            body = frame(b"a") + frame(b"b") + b"0\r\n\r\n"
            assert await received(mitmproxy, body) == body

    asyncio.run(run())


def test_a_client_connection_that_is_closing_means_the_client_is_gone():
    async def run() -> None:
        async with socket_pair() as (_, to_mitmproxy), socket_pair() as (_, to_client):
            lane = ClientLane()
            sink = ChunkedSink(to_mitmproxy, lane)
            await sink.start(200, {}, True)
            await sink.write(b"a")
            lane.open(to_client, lambda: None)
            lane.passing(b"a")
            to_client.close()
            with pytest.raises(ClientGone):
                await sink.write(b"b")

    asyncio.run(run())


def test_a_whole_answer_never_uses_the_lane():
    async def run() -> None:
        async with socket_pair() as (mitmproxy, to_mitmproxy), socket_pair() as (client, to_client):
            lane = ClientLane()
            lane.open(to_client, lambda: None)
            sink = ChunkedSink(to_mitmproxy, lane)
            await sink.start(429, {"content-type": "application/json"}, False)
            await sink.write(b'{"error":{}}')
            await sink.end()
            head = await mitmproxy.readuntil(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 429 ") and b"content-length: 12" in head
            assert await received(mitmproxy, b'{"error":{}}') == b'{"error":{}}'
            assert await nothing_more(client)

    asyncio.run(run())


def test_the_relay_keeps_a_lane_for_a_parked_answer_until_it_is_unparked():
    async def run() -> None:
        relay = Relay()
        future: asyncio.Future = asyncio.get_running_loop().create_future()
        future.set_result(None)
        token = relay.park(DeferredAnswer(task=future))
        assert isinstance(relay.lane(token), ClientLane)
        await relay.unpark(token)
        assert relay.lane(token) is None

    asyncio.run(run())
