"""Looks at the start of an upstream answer before the bridge commits to it.

Some upstreams answer 200 and then an error: Kiro sends throttling or suspension as event-stream
exception frames, Code Assist an error object in the stream. Read before the client has seen a
byte, such an answer is just a failed attempt: the pool learns what it means for the account and
the next account is tried, instead of the client getting a 200 that turns into an error. An answer
that ends before any content is a failed attempt too.

With a first-token deadline (`first_token_timeout`, when another account could take the request) the
peek waits for content until the deadline instead of committing after `seconds`: an upstream silent
that long is closed and the attempt fails with FirstTokenTimeout, before the client has seen a byte.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import httpx

from llmbridge.canonical import (
    Finish,
    ReasoningDelta,
    StreamError,
    TextDelta,
    ToolCallDelta,
    ToolCallStart,
)
from llmbridge.errors import BridgeError, FirstTokenTimeout, UpstreamUnavailable, error_for_kind, transport_error
from llmbridge.providers.base import UpstreamCall, failed

PEEK_SECONDS = 10.0  # longer silences are committed to, with keep-alives to the client meanwhile
FIRST_TOKEN_COOLDOWN = 30.0  # seconds an account that sent no first token in time is passed over
CONTENT = (TextDelta, ReasoningDelta, ToolCallStart, ToolCallDelta, Finish)
Read = asyncio.Future[bytes | None]


@dataclass(frozen=True)
class FirstTokenDeadline:
    """By when (event-loop time) an attempt's upstream must have shown content, from the moment it
    was sent: `timeout` is the setting, for the message."""

    timeout: float
    at: float

    @classmethod
    def starting_now(cls, timeout: float) -> FirstTokenDeadline:
        return cls(timeout, asyncio.get_running_loop().time() + timeout)

    def remaining(self) -> float:
        return max(0.0, self.at - asyncio.get_running_loop().time())

    def error(self) -> FirstTokenTimeout:
        return FirstTokenTimeout(
            f"no first token within {self.timeout:g} s (setting 'first_token_timeout'); "
            f"the account is passed over for {FIRST_TOKEN_COOLDOWN:g} s",
            retry_after=FIRST_TOKEN_COOLDOWN,
        )


async def peek(
    call: UpstreamCall, seconds: float | None = PEEK_SECONDS, first_token: FirstTokenDeadline | None = None
) -> None:
    """Read until the answer shows content (or `seconds` pass); raise the error it starts with. With
    `first_token`, wait for content until that deadline instead, then fail with FirstTokenTimeout.
    `seconds=None`: until the body ends (a whole, non-stream answer shows nothing before it is
    complete, and its client waits for all of it anyway: an error in it can still fail over).
    Whatever goes wrong here, the upstream response is closed before the error leaves."""
    read: Read | None = None
    try:
        read = await _peek(call, seconds if first_token is None else first_token.remaining(), first_token)
    except BridgeError:
        raise
    except BaseException as e:
        if read is not None:
            read.cancel()
        await call.aclose()
        if isinstance(e, Exception):  # a decoder bug: this attempt failed, another account may answer
            raise failed(
                call.attempt,
                UpstreamUnavailable(f"the bridge could not read the start of the answer ({type(e).__name__})"),
            ) from e
        raise
    call.hold_pending(read)


async def _peek(call: UpstreamCall, seconds: float | None, first_token: FirstTokenDeadline | None) -> Read | None:
    """Returns the read still under way when time ran out (the answer goes on waiting for it); with
    a `first_token` deadline, running out of time is its FirstTokenTimeout instead."""
    loop = asyncio.get_running_loop()
    deadline = None if seconds is None else loop.time() + seconds
    while True:
        read = call.read()
        waiting_since = loop.time()
        try:
            timeout = None if deadline is None else max(0.0, deadline - loop.time())
            done, _ = await asyncio.wait({read}, timeout=timeout)
        except BaseException:
            read.cancel()
            raise
        finally:
            call.attempt.waited_ms += (loop.time() - waiting_since) * 1000
        if not done and first_token is not None:
            read.cancel()
            await asyncio.wait({read})  # the read is over before the response is closed under it
            raise await call.reject(first_token.error())
        if not done:
            return read
        chunk = await _result(call, read)
        if chunk is None:
            await _ended(call)
            return None
        for event in call.peek_feed(chunk):
            if isinstance(event, StreamError):
                await _reject(call, event)
            if isinstance(event, CONTENT):
                return None


async def _ended(call: UpstreamCall) -> None:
    """The body ended before any content: an error (or a cut stream) fails the attempt."""
    for event in call.peek_close():
        if isinstance(event, StreamError):
            await _reject(call, event)


async def _reject(call: UpstreamCall, event: StreamError) -> None:
    raise await call.reject(error_for_kind(event.kind, event.message, event.status))


async def _result(call: UpstreamCall, read: Read) -> bytes | None:
    try:
        return read.result()
    except httpx.TransportError as e:
        await call.aclose()
        message = f"the upstream broke off before answering ({type(e).__name__})"
        raise failed(call.attempt, transport_error(e, timeout=message, broken=message)) from e
