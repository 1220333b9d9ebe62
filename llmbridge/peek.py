"""Looks at the start of an upstream answer before the bridge commits to it.

Some upstreams answer 200 and then an error: Kiro sends throttling or suspension as event-stream
exception frames, Code Assist an error object in the stream. Read before the client has seen a
byte, such an answer is just a failed attempt: the pool learns what it means for the account and
the next account is tried, instead of the client getting a 200 that turns into an error.
"""

from __future__ import annotations

import asyncio

import httpx

from llmbridge.canonical import Finish, ReasoningDelta, StreamError, TextDelta, ToolCallDelta, ToolCallStart
from llmbridge.errors import BridgeError, UpstreamTimeout, UpstreamUnavailable, error_for_kind
from llmbridge.providers.base import UpstreamCall, failed

PEEK_SECONDS = 10.0  # longer silences are committed to, with keep-alives to the client meanwhile
CONTENT = (TextDelta, ReasoningDelta, ToolCallStart, ToolCallDelta, Finish)


async def peek(call: UpstreamCall, seconds: float = PEEK_SECONDS) -> None:
    """Read until the answer shows content (or `seconds` pass); raise the error it starts with."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    chunks = call.chunks()
    while True:
        task = asyncio.ensure_future(anext(chunks, None))
        done, _ = await asyncio.wait({task}, timeout=max(0.0, deadline - loop.time()))
        if not done:
            call.pending = task  # the answer goes on waiting for this read
            return
        chunk = await _result(call, task)
        if chunk is None:
            return
        call.peeked_raw += chunk
        events = call.decoder.feed(chunk)
        call.peeked_events += events  # all of them: the answer replays exactly what was decoded
        for event in events:
            if isinstance(event, StreamError):
                await _reject(call, event)
            if isinstance(event, CONTENT):
                return


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
