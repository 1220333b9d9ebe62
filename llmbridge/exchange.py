"""What happened in one client exchange: the record the recorder writes and the console line prints.

Filled in by the bridge as the exchange runs (route, attempts, timings, usage); plain data, so the
recorder can take it to its writer thread once the exchange has ended.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Any


def new_id() -> str:
    """A sortable unique id (ms timestamp + randomness), like a ULID in hex."""
    return f"{int(time.time() * 1000):012x}{os.urandom(6).hex()}"


@dataclass
class AttemptRecord:
    """One upstream attempt (one account tried once)."""

    account: str
    provider: str
    url: str = ""
    method: str = "POST"
    request_headers: dict[str, str] = field(default_factory=dict)  # already redacted
    # The request body exactly as sent (bytes of JSON). Redacted by the recorder on its own thread:
    # a copy made here would cost the event loop time in proportion to the conversation's size.
    request_body: Any = field(default=None, repr=False)
    status: int | None = None
    response_headers: dict[str, str] = field(default_factory=dict)
    response_body: bytearray = field(default_factory=bytearray)  # raw upstream bytes, as received
    started: float = field(default_factory=time.time)
    ttfb_ms: float | None = None
    duration_ms: float | None = None
    error_kind: str | None = None
    error_message: str | None = None
    # Wall time the bridge spent waiting on this upstream: for its response head, and for each body
    # read it awaited (the peek's and the answer's). Not recorded; see `ExchangeRecord.overhead_ms`.
    waited_ms: float = 0.0


@dataclass
class ExchangeRecord:
    """One client request and everything done to answer it."""

    id: str = field(default_factory=new_id)
    started: float = field(default_factory=time.time)
    client_format: str = ""  # openai | anthropic | gemini
    endpoint: str = ""  # e.g. POST /v1/chat/completions
    key_label: str | None = None  # which client key was used (its label, never the key)
    # the client's request body as received (bytes of JSON); the recorder removes secrets
    request_raw: Any = field(default=None, repr=False)
    request_canonical: dict[str, Any] | None = None
    model_requested: str | None = None
    model_served: str | None = None
    provider: str | None = None
    account: str | None = None
    stream: bool = False
    attempts: list[AttemptRecord] = field(default_factory=list)
    status: int | None = None
    ttfb_ms: float | None = None
    duration_ms: float | None = None
    finish_reason: str | None = None
    usage: dict[str, Any] | None = None
    result: dict[str, Any] | None = None  # the canonical ChatResult as sent to the client
    error_kind: str | None = None
    error_message: str | None = None
    client_disconnected: bool = False

    def elapsed_ms(self) -> float:
        return (time.time() - self.started) * 1000

    def overhead_ms(self) -> float:
        """The bridge's own time so far (the `x-llmbridge-overhead-ms` header): the time since the
        request was handed to the bridge, less the time spent waiting on upstreams (every attempt's
        `waited_ms`). Never negative."""
        return max(0.0, self.elapsed_ms() - sum(attempt.waited_ms for attempt in self.attempts))
