"""Looks at the start of an upstream answer before the bridge commits to it.

Some upstreams answer 200 and then an error: Kiro sends throttling or suspension as event-stream
exception frames, Code Assist an error object in the stream. Read before the client has seen a
byte, such an answer is just a failed attempt: the pool learns what it means for the account and
the next account is tried, instead of the client getting a 200 that turns into an error. An answer
that ends before any content is a failed attempt too.
"""

from __future__ import annotations

import asyncio

import httpx

from llmbridge.canonical import (
    Finish,
    ReasoningDelta,
    StreamError,
    StreamEvent,
    TextDelta,
    ToolCallDelta,
    ToolCallStart,
)
from llmbridge.errors import BridgeError, UpstreamTimeout, UpstreamUnavailable, error_for_kind
from llmbridge.providers.base import UpstreamCall, failed

PEEK_SECONDS = 10.0  # longer silences are committed to, with keep-alives to the client meanwhile
CONTENT = (TextDelta, ReasoningDelta, ToolCallStart, ToolCallDelta, Finish)


class ClosedDecoder:
    """Stands in for a decoder the peek already closed (the body ended while peeking)."""

    def feed(self, data: bytes) -> list[StreamEvent]:
        return []

    def close(self) -> list[StreamEvent]:
        return []


async def peek(call: UpstreamCall, seconds: float = PEEK_SECONDS) -> None:
    """Read until the answer shows content (or `seconds` pass); raise the error it starts with.
    Whatever goes wrong here, the upstream response is closed before the error leaves."""
    task: asyncio.Future | None = None
    try:
        task = await _peek(call, seconds)
    except BridgeError:
        raise
    except BaseException as e:
        if task is not None:
            task.cancel()
        await call.aclose()
        if isinstance(e, Exception):  # a decoder bug: this attempt failed, another account may answer
            raise failed(call.attempt, UpstreamUnavailable(
                f"the bridge could not read the start of the answer ({type(e).__name__})")) from e
        raise
    call.pending = task


async def _peek(call: UpstreamCall, seconds: float) -> asyncio.Future | None:
    """Returns the read still under way when time ran out (the answer goes on waiting for it)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    chunks = call.chunks()
    while True:
        task = asyncio.ensure_future(anext(chunks, None))
        try:
            done, _ = await asyncio.wait({task}, timeout=max(0.0, deadline - loop.time()))
        except BaseException:
            task.cancel()
            raise
        if not done:
            return task
        chunk = await _result(call, task)
        if chunk is None:
            await _ended(call)
            return None
        call.peeked_raw += chunk
        events = call.decoder.feed(chunk)
        call.peeked_events += events  # all of them: the answer replays exactly what was decoded
        for event in events:
            if isinstance(event, StreamError):
                await _reject(call, event)
            if isinstance(event, CONTENT):
                return None


async def _ended(call: UpstreamCall) -> None:
    """The body ended before any content: an error (or a cut stream) fails the attempt."""
    events = call.decoder.close()
    call.decoder = ClosedDecoder()
    call.peeked_events += events
    for event in events:
        if isinstance(event, StreamError):
            await _reject(call, event)


async def _result(call: UpstreamCall, task: asyncio.Future) -> bytes | None:
    try:
        return task.result()
    except (httpx.TimeoutException, httpx.TransportError) as e:
        await call.aclose()
        error: BridgeError = (UpstreamTimeout if isinstance(e, httpx.TimeoutException) else UpstreamUnavailable)(
            f"the upstream broke off before answering ({type(e).__name__})")
        raise failed(call.attempt, error) from e


async def _reject(call: UpstreamCall, event: StreamError) -> None:
    await call.aclose()
    call.attempt.response_body += call.peeked_raw
    raise failed(call.attempt, error_for_kind(event.kind, event.message, event.status))
