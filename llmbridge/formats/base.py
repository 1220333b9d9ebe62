"""What every client format (the dialect a client speaks) implements.

A format parses the client's request into the canonical `ChatRequest`, renders a `ChatResult` for
non-stream clients, renders canonical stream events as its own stream, and renders every
`BridgeError` in its own error shape. It knows nothing about providers.
"""

from __future__ import annotations

import json
import math
from abc import ABC, abstractmethod
from typing import Any, ClassVar

from llmbridge.canonical import ChatRequest, ChatResult, ModelInfo, StreamEvent
from llmbridge.errors import BridgeError


def dumps(value: Any) -> bytes:
    """Compact JSON, UTF-8 (not ASCII-escaped), as the real APIs send it."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


class StreamRenderer(ABC):
    """Renders one response's canonical events as the client's stream; one per exchange."""

    content_type: ClassVar[str] = "text/event-stream"

    @abstractmethod
    def start(self) -> bytes:
        """Bytes to send before the first event (e.g. Anthropic's message_start); may be b""."""

    @abstractmethod
    def feed(self, event: StreamEvent) -> bytes:
        """The client bytes for one event; b"" when the event produces nothing yet."""

    @abstractmethod
    def close(self) -> bytes:
        """The end of the stream ([DONE], message_stop, ...)."""

    @abstractmethod
    def error(self, error: BridgeError) -> bytes:
        """An in-stream error event, for failures after the stream started."""

    def keepalive(self) -> bytes:
        """Sent during long upstream silences so that no idle timeout cuts the stream."""
        return b": keep-alive\n\n"


class ClientFormat(ABC):
    name: ClassVar[str]  # openai | anthropic | gemini

    @abstractmethod
    def parse_request(self, body: Any, model: str | None = None, stream: bool | None = None) -> ChatRequest:
        """Canonical request from the parsed JSON body; InvalidRequest naming the field at fault.
        `model`/`stream` come from the URL for formats that put them there (Gemini)."""

    @abstractmethod
    def stream_renderer(self, request: ChatRequest, response_id: str, model: str) -> StreamRenderer:
        """Formats with several stream framings take keyword options (Gemini: `json_array`)."""

    @abstractmethod
    def render_result(self, result: ChatResult, request: ChatRequest) -> dict[str, Any]: ...

    @abstractmethod
    def error_body(self, error: BridgeError) -> dict[str, Any]:
        """The error in this dialect's JSON shape."""

    @abstractmethod
    def render_models(self, models: list[ModelInfo]) -> dict[str, Any]: ...

    @abstractmethod
    def render_model(self, model: ModelInfo) -> dict[str, Any]:
        """One model, for `GET .../models/{model}`."""

    @abstractmethod
    def render_count_tokens(self, input_tokens: int) -> dict[str, Any]: ...

    def error_response(self, error: BridgeError) -> tuple[int, dict[str, str], bytes]:
        headers = {"content-type": "application/json"}
        if error.retry_after is not None:
            headers["retry-after"] = str(max(1, math.ceil(error.retry_after)))  # never too early
        return error.status, headers, dumps(self.error_body(error))
