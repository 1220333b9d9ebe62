"""Sends one upstream answer to the client: the job the relay runs for a parked exchange.

Streams go out chunk by chunk as the upstream produces them, with keep-alives during long silences
(thinking models can be quiet for minutes; idle timeouts would cut them). Non-stream clients get the
accumulated result as one JSON body. If the upstream dies mid-stream the client gets an error event
in its own dialect and a cleanly ended body; if the client goes away, the upstream request is closed.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from llmbridge.accumulate import StreamAccumulator
from llmbridge.canonical import ChatRequest, ChatResult
from llmbridge.errors import BridgeError, InternalError, ShuttingDown, error_for_kind, transport_error
from llmbridge.exchange import ExchangeRecord
from llmbridge.formats.base import DEFAULT_OPTIONS, ClientFormat, RenderOptions, dumps
from llmbridge.providers.base import UpstreamCall
from llmbridge.responses import LocalResponse
from llmbridge.translate import Translation

log = logging.getLogger(__name__)


DROPPED_TOOLS_HEADER = "x-llmbridge-dropped-tools"
# The bridge's own milliseconds up to the answer's head (`ExchangeRecord.overhead_ms`): for a whole
# answer, once the upstream's has been read and translated; for a stream, once its first content has.
OVERHEAD_HEADER = "x-llmbridge-overhead-ms"


def answer_headers(request: ChatRequest, record: ExchangeRecord) -> dict[str, str]:
    """Headers every answer carries: the account that answered and how many upstream attempts it
    took (`attempt_headers`), the bridge's own time so far (`OVERHEAD_HEADER`), and the tools its
    door left out, if any."""
    headers = attempt_headers(record)
    headers[OVERHEAD_HEADER] = f"{record.overhead_ms():.2f}"
    if record.model_requested and request.model != record.model_requested:  # a `[fallbacks]` model answered
        headers["x-llmbridge-fallback"] = f"{record.model_requested} -> {request.model}"
    if request.dropped_tools:
        headers[DROPPED_TOOLS_HEADER] = ", ".join(request.dropped_tools)
    return headers


def attempt_headers(record: ExchangeRecord) -> dict[str, str]:
    """`x-llmbridge-account` (the account of the last attempt) and `x-llmbridge-attempts`, once an
    upstream was tried; the account name is the config's label, never a credential."""
    if not record.attempts or not record.account:
        return {}
    return {"x-llmbridge-account": record.account, "x-llmbridge-attempts": str(len(record.attempts))}


def shutdown_error(what: str) -> ShuttingDown:
    return ShuttingDown(
        f"the bridge is shutting down: {what} when its grace period ended "
        "(setting 'shutdown_grace_seconds'); retry the request",
        retry_after=1,
    )


class ClientGone(Exception):
    """The client (through mitmproxy) closed the connection."""


class ResponseSink:
    """Where the answer goes: the relay implements it over its connection to mitmproxy."""

    # Set when the client is known to be gone, so a silent upstream need not be waited for.
    gone: asyncio.Event | None = None

    async def start(self, status: int, headers: dict[str, str], stream: bool) -> None: ...

    async def write(self, data: bytes) -> None: ...

    async def end(self) -> None: ...

    async def flush(self) -> None:
        """Send what is held back (the response head), if anything."""


class BufferedSink(ResponseSink):
    """Collects a whole response in memory: for non-stream clients, which need no relay hop."""

    def __init__(self) -> None:
        self.status = 0
        self.headers: dict[str, str] = {}
        self.body = bytearray()

    async def start(self, status: int, headers: dict[str, str], stream: bool) -> None:
        self.status, self.headers = status, dict(headers)

    async def write(self, data: bytes) -> None:
        self.body += data

    async def end(self) -> None:
        pass


@dataclass
class DeferredAnswer:
    """A stream whose upstream is still being opened (accounts tried, the start peeked at).

    Streams are handed to the relay at once, so that mitmproxy connects to it while the upstream is
    being opened; the relay then waits for `task`, which gives the `Answer`, or the finished error
    response when no account could answer."""

    task: asyncio.Future[Answer | LocalResponse]
    record: ExchangeRecord | None = None


@dataclass
class Answer:
    call: UpstreamCall
    client_format: ClientFormat
    request: ChatRequest
    record: ExchangeRecord
    keepalive_seconds: float
    # Called once when the answer has ended, however (sent, failed, abandoned): frees the account's slot.
    on_done: Callable[[Answer], Awaitable[None]]
    options: RenderOptions = DEFAULT_OPTIONS  # from the route, for the stream renderer
    # Done when the bridge's shutdown grace period is over: the answer then ends at once, with an
    # error in the client's dialect (an error event in a stream, a 503 for a whole answer).
    cut_off: asyncio.Future[None] | None = None
    # The error the answer ended with: the one raised, else the one the upstream's stream reported.
    error: BridgeError | None = field(default=None, init=False)

    async def run(self, sink: ResponseSink) -> None:
        fmt = self.client_format
        accumulator = StreamAccumulator(f"{fmt.id_prefix}{self.record.id}", self.request.model, keep_id=fmt.own_ids)
        translation = Translation(self.call.decoder, None, accumulator, self.call.attempt.response_body)
        stream_id = accumulator.id  # a stream's id is fixed at its start; a whole answer's is the result's
        try:
            if self.request.stream:
                translation.renderer = self.client_format.stream_renderer(
                    self.request, accumulator.id, self.request.model, self.options
                )
                await self._stream(sink, translation)
            else:
                await self._buffered(sink, translation)
        except ClientGone:
            self.record.client_disconnected = True
        except asyncio.CancelledError:  # the bridge is stopping: record what there is, then stop
            self.record.error_kind = "interrupted"
            self.record.error_message = "the bridge stopped before the answer ended"
            raise
        finally:  # whatever happened: upstream closed, record finished, account slot freed
            try:
                await self.call.aclose()
            except Exception:
                log.exception("llmbridge: closing the upstream response failed")
            try:
                self._finish_record(translation)
                self._answered(translation, stream_id if self.request.stream else None)
            finally:
                await self.on_done(self)

    async def _stream(self, sink: ResponseSink, translation: Translation) -> None:
        content_type = translation.renderer.content_type if translation.renderer else "text/event-stream"
        await sink.start(
            200,
            {"content-type": content_type, "cache-control": "no-cache", **answer_headers(self.request, self.record)},
            True,
        )
        try:
            # the stream's opening and what the peek decoded go out together, as one chunk; the
            # response head goes now even when there is nothing yet (a long silent start)
            await self._write(
                sink, translation.start() + translation.replay(self.call.peeked_raw, self.call.peeked_events)
            )
            await sink.flush()
            async for chunk in self._upstream_chunks(sink, translation):
                await self._write(sink, translation.feed(chunk))
            out = translation.close()
        except BridgeError as error:
            log.warning("upstream failed mid-stream: %s", error.message)
            out = self._fail(translation, error)
        except (ClientGone, asyncio.CancelledError):
            raise
        except Exception:  # a translator bug: end the stream with an error event, never just cut it
            log.exception("llmbridge: translating the stream failed")
            out = self._fail(translation, self._internal_error())
        await sink.write(out)
        await sink.end()

    async def _write(self, sink: ResponseSink, out: bytes) -> None:
        if out:
            self._mark_first_byte()
            await sink.write(out)

    async def _buffered(self, sink: ResponseSink, translation: Translation) -> None:
        try:
            translation.replay(self.call.peeked_raw, self.call.peeked_events)
            async for chunk in self._upstream_chunks(None, translation):
                translation.feed(chunk)
            translation.close()
        except BridgeError as error:
            self._fail(translation, error)
        except Exception:  # a translator bug: an error response, never a half-built 200
            log.exception("llmbridge: translating the answer failed")
            self._fail(translation, self._internal_error())
        result = translation.result()
        failure = self._ended_with(result)
        if failure is not None:
            # An answer cut short is not an answer: the client must not take it for a complete one.
            status, headers, body = self.client_format.error_response(failure)
        else:
            status, headers, body = (
                200,
                {"content-type": "application/json", **answer_headers(self.request, self.record)},
                dumps(self.client_format.render_result(result, self.request)),
            )
        self._mark_first_byte()
        await sink.start(status, headers, False)
        await sink.write(body)
        await sink.end()
        self.record.status = status

    def _fail(self, translation: Translation, error: BridgeError) -> bytes:
        self.error = error
        return translation.fail(error)

    def _internal_error(self) -> InternalError:
        return InternalError(
            f"the bridge failed while translating this answer; see its log (exchange {self.record.id})"
        )

    def _ended_with(self, result: ChatResult) -> BridgeError | None:
        """The error the answer ended with: the one raised, else the one the upstream's stream
        reported (an error event carries only kind, message and status: its class is looked up)."""
        if self.error is None and result.error is not None:
            self.error = error_for_kind(result.error.kind, result.error.message, result.error.status)
        return self.error

    async def _upstream_chunks(self, sink: ResponseSink | None, translation: Translation) -> AsyncIterator[bytes]:
        """Upstream body chunks; keep-alives go to the client while the upstream is silent."""
        started = time.time()
        gone = asyncio.ensure_future(sink.gone.wait()) if sink is not None and sink.gone else None
        try:
            while True:
                chunk = await self._next_chunk(sink, translation, gone)
                if chunk is None:
                    return
                if self.call.attempt.ttfb_ms is None:
                    self.call.attempt.ttfb_ms = (time.time() - started) * 1000
                yield chunk
        finally:
            if gone is not None:
                gone.cancel()

    async def _next_chunk(
        self, sink: ResponseSink | None, translation: Translation, gone: asyncio.Future[Any] | None
    ) -> bytes | None:
        """The next upstream chunk, sending keep-alives while waiting; ClientGone if the client left."""
        next_chunk = self.call.read()
        waiting = {next_chunk} | ({gone} if gone is not None else set())
        if self.cut_off is not None:
            waiting.add(self.cut_off)
        waiting_since = time.monotonic()
        try:
            while not next_chunk.done():
                done, _ = await asyncio.wait(
                    waiting, timeout=self.keepalive_seconds, return_when=asyncio.FIRST_COMPLETED
                )
                if gone is not None and gone in done:
                    raise ClientGone()
                if self.cut_off is not None and self.cut_off in done:
                    raise shutdown_error("the answer was cut short")
                if not done and sink is not None:
                    await sink.write(translation.renderer.keepalive() if translation.renderer else b"")
            return next_chunk.result()
        except httpx.TransportError as e:
            raise transport_error(
                e,
                timeout="the upstream stopped sending data (read timeout); retry the request",
                broken=f"the upstream connection broke mid-response ({type(e).__name__}); retry the request",
            ) from e
        finally:
            self.call.attempt.waited_ms += (time.monotonic() - waiting_since) * 1000
            if not next_chunk.done():
                next_chunk.cancel()

    def _answered(self, translation: Translation, stream_id: str | None) -> None:
        """Tell the door about an answer the client got whole (see `ClientFormat.answered`)."""
        record = self.record
        if self.error is not None or record.client_disconnected or record.error_kind or not translation.closed:
            return
        result = translation.result()
        try:
            self.client_format.answered(self.request, result, stream_id or result.id)
        except Exception:
            log.exception("llmbridge: the %s door failed to take note of its answer", self.client_format.name)

    def _mark_first_byte(self) -> None:
        if self.record.ttfb_ms is None:
            self.record.ttfb_ms = self.record.elapsed_ms()

    def _finish_record(self, translation: Translation) -> None:
        result = translation.result()
        record = self.record
        record.model_served = result.model
        record.finish_reason = result.finish_reason
        record.usage = result.usage.model_dump() if result.usage else None
        record.result = result.model_dump(mode="json")
        if (record.client_disconnected or record.error_kind == "interrupted") and not translation.closed:
            # The client left (or the bridge stopped) before the upstream ended: the answer is partial
            # and did not finish; the accumulator's default ("stop") would record it as complete.
            record.finish_reason = record.result["finish_reason"] = None
        if record.status is None:
            record.status = 200
        if result.error:
            record.error_kind, record.error_message = result.error.kind, result.error.message
            self._ended_with(result)
        record.duration_ms = record.elapsed_ms()
        self.call.attempt.duration_ms = (time.time() - self.call.attempt.started) * 1000
