"""llmbridge.http_transport: httpx requests over aiohttp, held byte for byte against a raw server.

The server here is a plain asyncio socket server on 127.0.0.1 that keeps every byte it received and
answers from a script, so the tests see exactly what goes on the wire and what the client makes of
malformed, slow or broken answers.
"""

from __future__ import annotations

import asyncio
import functools
import gzip
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import httpx
import pytest

from llmbridge.app import environment_proxies, make_http_client
from llmbridge.config import BridgeConfig
from llmbridge.http_transport import AiohttpTransport

Answer = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@dataclass
class RawServer:
    port: int
    received: list[bytes] = field(default_factory=list)
    connections: int = 0


async def read_request(reader: asyncio.StreamReader) -> bytes:
    """One request's head and (content-length) body, as received."""
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    return head + (await reader.readexactly(length) if length else b"")


@asynccontextmanager
async def raw_server(answer: Answer) -> AsyncIterator[RawServer]:
    state = RawServer(port=0)

    async def on_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        state.connections += 1
        try:
            while True:
                try:
                    state.received.append(await read_request(reader))
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                await answer(reader, writer)
        finally:
            writer.close()

    server = await asyncio.start_server(on_connection, "127.0.0.1", 0)
    state.port = server.sockets[0].getsockname()[1]
    async with server:
        yield state


def in_loop(test: Callable[..., Awaitable[None]]) -> Callable[..., None]:
    """Run an async test in a loop of its own (the suite has no async plugin)."""

    @functools.wraps(test)
    def run(*args: object, **kwargs: object) -> None:
        asyncio.run(test(*args, **kwargs))  # type: ignore[arg-type]

    return run


def reply(data: bytes) -> Answer:
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(data)
        await writer.drain()

    return answer


OK = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}"


def client(read: float = 5.0) -> httpx.AsyncClient:
    timeout = httpx.Timeout(connect=2.0, read=read, write=5.0, pool=5.0)
    return httpx.AsyncClient(transport=AiohttpTransport(), timeout=timeout)


@in_loop
async def test_the_request_goes_out_as_built() -> None:
    async with raw_server(reply(OK)) as server, client() as http:
        url = f"http://127.0.0.1:{server.port}/v1beta/models/m:streamGenerateContent?alt=sse&x=%2F"
        headers = {"X-Goog-Api-Client": "gl-node/22", "content-type": "application/json", "User-Agent": "cli/1"}
        request = httpx.Request("POST", url, headers=headers, content=b'{"a":1}')
        response = await http.send(request)
        assert response.status_code == 200 and response.json() == {}
    head, body = server.received[0].split(b"\r\n\r\n", 1)
    lines = head.split(b"\r\n")
    assert lines[0] == b"POST /v1beta/models/m:streamGenerateContent?alt=sse&x=%2F HTTP/1.1"
    # the request's own headers, in its order and case; nothing of aiohttp's added
    assert lines[1:] == [
        f"Host: 127.0.0.1:{server.port}".encode(),
        b"X-Goog-Api-Client: gl-node/22",
        b"content-type: application/json",
        b"User-Agent: cli/1",
        b"Content-Length: 7",
    ]
    assert body == b'{"a":1}'


@in_loop
async def test_a_get_without_a_body_adds_nothing() -> None:
    async with raw_server(reply(OK)) as server, client() as http:
        await http.send(httpx.Request("GET", f"http://127.0.0.1:{server.port}/v1/models", headers={"a": "b"}))
    assert server.received[0] == f"GET /v1/models HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\na: b\r\n\r\n".encode()


@in_loop
async def test_a_chunked_stream_arrives_piece_by_piece() -> None:
    gate = asyncio.Event()

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n")
        writer.write(b"6\r\ndata:1\r\n")
        await writer.drain()
        await gate.wait()  # the second piece only once the client has the first
        writer.write(b"6\r\ndata:2\r\n0\r\n\r\n")
        await writer.drain()

    async with raw_server(answer) as server, client() as http:
        request = httpx.Request("POST", f"http://127.0.0.1:{server.port}/s", content=b"{}")
        response = await http.send(request, stream=True)
        pieces = response.aiter_bytes()
        assert await anext(pieces) == b"data:1"
        gate.set()
        assert b"".join([p async for p in pieces]) == b"data:2"
        await response.aclose()


@in_loop
async def test_a_gzip_body_is_decoded_by_httpx() -> None:
    packed = gzip.compress(b'{"ok":true}')
    head = f"HTTP/1.1 200 OK\r\ncontent-encoding: gzip\r\ncontent-length: {len(packed)}\r\n\r\n".encode()
    async with raw_server(reply(head + packed)) as server, client() as http:
        response = await http.get(f"http://127.0.0.1:{server.port}/")
    assert response.json() == {"ok": True}
    assert response.headers["content-encoding"] == "gzip"


@in_loop
async def test_connections_are_reused_and_one_left_mid_body_is_closed() -> None:
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if len(server.received) == 4:  # the fourth request gets an answer that has not ended
            writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\nab\r\n")
        else:
            writer.write(OK)
        await writer.drain()

    async with raw_server(answer) as server, client() as http:
        for _ in range(3):
            assert (await http.get(f"http://127.0.0.1:{server.port}/")).status_code == 200
        assert server.connections == 1
        response = await http.send(httpx.Request("GET", f"http://127.0.0.1:{server.port}/"), stream=True)
        await response.aclose()  # left mid-body: that connection cannot carry another request
        assert (await http.get(f"http://127.0.0.1:{server.port}/")).status_code == 200
        assert server.connections == 2


@in_loop
async def test_no_cookie_is_kept_between_requests() -> None:
    with_cookie = OK.replace(b"\r\n\r\n", b"\r\nset-cookie: s=1; Path=/\r\n\r\n", 1)
    async with raw_server(reply(with_cookie)) as server:
        transport = AiohttpTransport()
        try:
            for _ in range(2):
                request = httpx.Request("GET", f"http://127.0.0.1:{server.port}/")
                response = await transport.handle_async_request(request)
                await response.aread()
        finally:
            await transport.aclose()
    assert all(b"cookie" not in r.lower() for r in server.received)


@in_loop
async def test_a_refused_connection_is_a_connect_error() -> None:
    async with raw_server(reply(OK)) as server:
        port = server.port
    async with client() as http:
        with pytest.raises(httpx.ConnectError):
            await http.get(f"http://127.0.0.1:{port}/")


@in_loop
async def test_a_silent_upstream_is_a_read_timeout() -> None:
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(1)  # nothing, until the client gives up

    async with raw_server(answer) as server, client(read=0.2) as http:
        with pytest.raises(httpx.ReadTimeout):
            await http.get(f"http://127.0.0.1:{server.port}/")


@in_loop
async def test_a_body_that_stops_coming_is_a_read_timeout() -> None:
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\nab\r\n")
        await writer.drain()
        await reader.read(1)

    async with raw_server(answer) as server, client(read=0.3) as http:
        response = await http.send(httpx.Request("GET", f"http://127.0.0.1:{server.port}/"), stream=True)
        with pytest.raises(httpx.ReadTimeout):
            await response.aread()
        await response.aclose()


@pytest.mark.parametrize(
    "answer",
    [
        b"",  # closed before any answer
        b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nabc",  # cut inside the body
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n",  # broken chunk framing
        b"NOT HTTP AT ALL\r\n\r\n",
    ],
    ids=["nothing", "cut-body", "bad-chunk", "not-http"],
)
@in_loop
async def test_a_broken_answer_is_an_httpx_transport_error(answer: bytes) -> None:
    async def broken(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(answer)
        await writer.drain()
        writer.close()

    async with raw_server(broken) as server, client() as http:
        with pytest.raises(httpx.TransportError) as caught:
            await http.get(f"http://127.0.0.1:{server.port}/")
    assert not isinstance(caught.value, httpx.TimeoutException)


def test_a_proxy_in_the_environment_keeps_httpx_transport(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    assert not environment_proxies()
    assert isinstance(make_http_client(BridgeConfig())._transport, AiohttpTransport)
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:3128")
    assert environment_proxies()
    assert not isinstance(make_http_client(BridgeConfig())._transport, AiohttpTransport)
