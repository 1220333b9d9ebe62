"""A response the bridge makes itself, whole (model lists, token counts, errors, /health).

Its own module so that the bridge, which makes them, and the answer and relay, which hand one on
when no account could answer a stream, share it without importing each other.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from llmbridge.exchange import ExchangeRecord
from llmbridge.formats.base import dumps


@dataclass
class LocalResponse:
    status: int
    headers: dict[str, str]
    body: bytes
    record: ExchangeRecord | None = None


def json_response(body: Any) -> LocalResponse:
    return LocalResponse(200, {"content-type": "application/json"}, dumps(body))
