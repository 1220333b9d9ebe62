"""The in-process relay: a tiny HTTP/1.1 server on 127.0.0.1 that mitmproxy forwards parked
exchanges to.

Why it exists: mitmproxy can only stream a response body that arrives on its own upstream
connection; a response an addon makes itself goes out in one piece. So the addon parks the open
upstream answer here under a random token and points the flow at `http://127.0.0.1:<port>/<token>`;
mitmproxy then streams our translated bytes to the client as they come.

Only mitmproxy talks to it; an unknown token gets a 404 and nothing else is served.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from http import HTTPStatus

from llmbridge.answer import Answer, ClientGone, DeferredAnswer, ResponseSink
from llmbridge.exchange import ExchangeRecord
from llmbridge.responses import LocalResponse

log = logging.getLogger(__name__)
MAX_HEADER_BYTES = 64 * 1024


class ChunkedSink(ResponseSink):
    """Writes one HTTP/1.1 response: chunked for streams, content-length for whole bodies."""

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self.writer = writer
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
        if self.chunked:
            await self._send(self._take_head() + b"%x\r\n%s\r\n" % (len(data), data))
        else:
            self.buffer += data

    async def flush(self) -> None:
        if self.unsent_head:
            await self._send(self._take_head())

    def _take_head(self) -> bytes:
        head, self.unsent_head = self.unsent_head, b""
        return head

    async def end(self) -> None:
        if self.chunked:
            await self._send(self._take_head() + b"0\r\n\r\n")
        else:
            self.headers["content-length"] = str(len(self.buffer))
            await self._send(self._head() + bytes(self.buffer))

    async def _send(self, data: bytes) -> None:
        if self.writer.is_closing():
            raise ClientGone()
        self.writer.write(data)
        try:
            await self.writer.drain()
        except (ConnectionError, RuntimeError) as e:
            raise ClientGone() from e


class Relay:
    def __init__(self) -> None:
        self.parked: dict[str, Answer | DeferredAnswer] = {}
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
        return token

    def url(self, token: str) -> str:
        return f"http://127.0.0.1:{self.port}/{token}"

    async def unpark(self, token: str, failure: tuple[int, str] | None = None) -> None:
        """The flow died before mitmproxy reached the relay: close the upstream, keep the record.
        `failure`: the error (status, message) the client was answered with instead; without one the
        client is recorded as gone."""
        parked = self.parked.pop(token, None)
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
        answer = await _resolved(parked)
        if answer is None:
            return False
        sink = ChunkedSink(writer)
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
