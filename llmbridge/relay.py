"""The in-process relay: a tiny HTTP/1.1 server on 127.0.0.1 that mitmproxy forwards parked
exchanges to.

Why it exists: mitmproxy can only stream a response body that arrives on its own upstream
connection; a response an addon makes itself goes out in one piece. So the addon parks the open
upstream answer here under a random token and points the flow at `http://127.0.0.1:<port>/<token>`;
mitmproxy then streams our translated bytes to the client as they come.

Only mitmproxy talks to it; an unknown token gets a 404 and nothing else is served.

The client lane: passing every chunk through mitmproxy (the relay writes it, mitmproxy reads and
parses it, runs it through its layers and writes it again) was about a third of a streamed chunk's
CPU. So once mitmproxy has sent the response head and passed on everything the relay gave it, the
addon lends the sink the client's own connection (`ClientLane`) and the body's chunks go straight
there, framed as mitmproxy would frame them. The head and the final `0\r\n\r\n` still go through
mitmproxy, so it ends the response itself and keeps the connection alive (or closes it) as before;
a client that leaves is still seen by mitmproxy, which closes our connection. Without a lane (TLS to
the client, HTTP/1.0, or a mitmproxy that does not expose the connection) every byte goes through
mitmproxy as before.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Callable
from http import HTTPStatus

from llmbridge.answer import Answer, ClientGone, DeferredAnswer, ResponseSink
from llmbridge.exchange import ExchangeRecord
from llmbridge.responses import LocalResponse

log = logging.getLogger(__name__)
MAX_HEADER_BYTES = 64 * 1024


def _no_activity() -> None:
    pass


class ClientLane:
    """The client's connection, lent by the addon once the response is under way (see the module
    docstring). `passing` is mitmproxy's `flow.response.stream` callable: it counts the body bytes
    mitmproxy has passed on, and the sink writes to `writer` only when that count equals what the
    relay gave mitmproxy, so that nothing the relay sent can be overtaken."""

    def __init__(self) -> None:
        self.writer: asyncio.StreamWriter | None = None
        self.passed = 0
        # Tells mitmproxy the connection is busy: its idle timeout sees only what passes through it.
        self.on_write: Callable[[], None] = _no_activity

    def open(self, writer: asyncio.StreamWriter, on_write: Callable[[], None]) -> None:
        self.writer, self.on_write = writer, on_write

    def passing(self, data: bytes) -> bytes:
        self.passed += len(data)
        return data


class ChunkedSink(ResponseSink):
    """Writes one HTTP/1.1 response: chunked for streams, content-length for whole bodies."""

    def __init__(self, writer: asyncio.StreamWriter, lane: ClientLane | None = None) -> None:
        self.writer = writer
        self.lane = lane
        self.relayed = 0  # body bytes given to mitmproxy
        self.chunked = False
        self.buffer = bytearray()
        self.unsent_head = b""

    async def start(self, status: int, headers: dict[str, str], stream: bool) -> None:
        self.chunked = stream
        self.status_line = f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\n"
        self.headers = dict(headers)
        if stream:
            self.headers["transfer-encoding"] = "chunked"
            # Goes out with the first chunk: one segment for mitmproxy to read, not two.
            self.unsent_head = self._head()

    def _head(self) -> bytes:
        lines = "".join(f"{k}: {v}\r\n" for k, v in self.headers.items())
        return (self.status_line + lines + "\r\n").encode("latin-1")

    async def write(self, data: bytes) -> None:
        if not data:
            return
        if not self.chunked:
            self.buffer += data
            return
        framed = b"%x\r\n%s\r\n" % (len(data), data)
        client = self._client_writer()
        if client is not None:
            await self._send_to_client(client, framed)
        else:
            self.relayed += len(data)
            await self._send(self._take_head() + framed)

    def _client_writer(self) -> asyncio.StreamWriter | None:
        """The client's connection, when the next chunk may go straight there: mitmproxy has passed
        on the first chunk (so the head is out) and everything after it."""
        lane = self.lane
        if lane is None or lane.writer is None or not 0 < self.relayed == lane.passed:
            return None
        return lane.writer

    async def flush(self) -> None:
        if self.unsent_head:
            await self._send(self._take_head())

    def _take_head(self) -> bytes:
        head, self.unsent_head = self.unsent_head, b""
        return head

    async def end(self) -> None:
        if self.chunked:  # through mitmproxy, which ends the response and the flow
            await self._send(self._take_head() + b"0\r\n\r\n")
        else:
            self.headers["content-length"] = str(len(self.buffer))
            await self._send(self._head() + bytes(self.buffer))

    async def _send(self, data: bytes) -> None:
        await _write_and_drain(self.writer, data)

    async def _send_to_client(self, client: asyncio.StreamWriter, data: bytes) -> None:
        assert self.lane is not None
        self.lane.on_write()
        await _write_and_drain(client, data)


async def _write_and_drain(writer: asyncio.StreamWriter, data: bytes) -> None:
    if writer.is_closing():
        raise ClientGone()
    writer.write(data)
    try:
        await writer.drain()  # a slow reader holds the answer back, not the bridge's memory
    except (ConnectionError, RuntimeError) as e:
        raise ClientGone() from e


class Relay:
    def __init__(self) -> None:
        self.parked: dict[str, Answer | DeferredAnswer] = {}
        self.lanes: dict[str, ClientLane] = {}  # token -> its client lane, until its answer has ended
        self.server: asyncio.Server | None = None
        self.port = 0
        self.tasks: set[asyncio.Task[None]] = set()
        self.opening: set[asyncio.Future[Answer | LocalResponse]] = set()  # deferred answers not opened yet

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self.port

    def park(self, answer: Answer | DeferredAnswer) -> str:
        if isinstance(answer, DeferredAnswer):  # tracked until opened, wherever it is awaited
            self.opening.add(answer.task)
            answer.task.add_done_callback(self.opening.discard)
        token = secrets.token_urlsafe(16)
        self.parked[token] = answer
        self.lanes[token] = ClientLane()
        return token

    def lane(self, token: str) -> ClientLane | None:
        """The client lane of a parked or running answer (None once it has ended)."""
        return self.lanes.get(token)

    def url(self, token: str) -> str:
        return f"http://127.0.0.1:{self.port}/{token}"

    async def unpark(self, token: str, failure: tuple[int, str] | None = None) -> None:
        """The flow died before mitmproxy reached the relay: close the upstream, keep the record.
        `failure`: the error (status, message) the client was answered with instead; without one the
        client is recorded as gone."""
        parked = self.parked.pop(token, None)
        self.lanes.pop(token, None)
        if parked is None:
            return
        record = parked.record
        if record is not None:
            _note_failure(record, failure)
        if isinstance(parked, DeferredAnswer) and not parked.task.done():
            parked.task.cancel()  # nobody is waiting for it: stop opening it
        answer = await _resolved(parked)
        if isinstance(answer, Answer):
            _note_failure(answer.record, failure)
            await _abandon(answer)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task:
            self.tasks.add(task)
        try:
            while await self._one_request(reader, writer):
                pass
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ClientGone):
            pass
        except Exception:  # never silent: a relay bug must show in the log
            log.exception("llmbridge: the relay failed")
        finally:
            writer.close()
            if task:
                self.tasks.discard(task)

    async def _one_request(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        head = await reader.readuntil(b"\r\n\r\n")
        if len(head) > MAX_HEADER_BYTES:
            return False
        request_line, *header_lines = head.decode("latin-1").split("\r\n")
        length = _content_length(header_lines)
        if length:
            await reader.readexactly(length)
        parts = request_line.split(" ")
        token = parts[1].lstrip("/") if len(parts) == 3 else ""
        parked = self.parked.pop(token, None)
        if parked is None:
            writer.write(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n")
            await writer.drain()
            return True
        try:
            return await self._answer(token, parked, reader, writer)
        finally:
            self.lanes.pop(token, None)

    async def _answer(
        self, token: str, parked: Answer | DeferredAnswer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> bool:
        answer = await _resolved(parked)
        if answer is None:
            return False
        sink = ChunkedSink(writer, self.lanes.get(token))
        if not isinstance(answer, Answer):  # no account could answer: the error, in the client's dialect
            await sink.start(answer.status, answer.headers, False)
            await sink.write(answer.body)
            await sink.end()
            return True
        gone = asyncio.Event()
        sink.gone = gone
        watcher = asyncio.ensure_future(_watch_for_close(reader, gone))
        try:
            await answer.run(sink)
        finally:
            watcher.cancel()  # and wait for it: the next request on this connection reads too
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
        return not answer.record.client_disconnected

    async def close(self, timeout: float = 5.0) -> None:
        """Stops serving: parked answers are closed and answers being sent are cancelled, and both
        are waited for, so that every exchange has reached `on_done` (and the recorder) on return."""
        for opening in list(self.opening):  # streams still being opened stop being opened
            opening.cancel()
        await asyncio.gather(*(self.unpark(token) for token in list(self.parked)), return_exceptions=True)
        if self.server:
            self.server.close()
        tasks = [task for task in self.tasks if task is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=timeout)


def _note_failure(record: ExchangeRecord, failure: tuple[int, str] | None) -> None:
    if failure is None:
        record.client_disconnected = True
    else:
        record.status, record.error_kind, record.error_message = failure[0], "bridge_error", failure[1]


async def _resolved(parked: Answer | DeferredAnswer) -> Answer | LocalResponse | None:
    """The answer itself, once a deferred one has been opened (or the error response); None when
    its opening was cancelled (the bridge is stopping; the exchange is recorded as interrupted)."""
    if not isinstance(parked, DeferredAnswer):
        return parked
    try:
        return await parked.task
    except asyncio.CancelledError:
        if parked.task.cancelled():
            return None
        # This task is being cancelled just as the answer finished opening: nobody will send it,
        # so close it here (its account slot and its record must not be lost), then stop.
        answer = parked.task.result() if parked.task.done() else None
        if isinstance(answer, Answer):
            answer.record.error_kind = "interrupted"
            answer.record.error_message = "the bridge stopped before the answer began"
            await _abandon(answer)
        raise


async def _abandon(answer: Answer) -> None:
    """An answer that will not be sent: close its upstream and finish it (slot freed, recorded)."""
    try:
        await answer.call.aclose()
    finally:
        await answer.on_done(answer)


async def _watch_for_close(reader: asyncio.StreamReader, gone: asyncio.Event) -> None:
    """mitmproxy sends nothing while a response is under way; end of input means the client left
    (mitmproxy closes our connection when its client goes), even while the upstream is silent."""
    try:
        if not await reader.read(1):
            gone.set()
    except ConnectionError:
        gone.set()


def _content_length(header_lines: list[str]) -> int:
    for line in header_lines:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            return int(value.strip() or 0)
    return 0
