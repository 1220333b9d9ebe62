"""Canonical results and stream events -> Gemini `GenerateContentResponse`s.

Streams come in two framings: SSE (`alt=sse`: `data: <chunk>\\r\\n\\r\\n`) and, for
`:streamGenerateContent` without it, one JSON array written element by element. Function calls are
sent whole, as Gemini does: argument fragments are buffered until a non-tool event or the end. The
last chunk carries finishReason and usageMetadata. Thought parts are sent only when the client asked
(`thinkingConfig.includeThoughts`), as Gemini does.
"""

from __future__ import annotations

from typing import Any

from llmbridge.accumulate import parse_tool_arguments
from llmbridge.canonical import (
    ChatRequest,
    ChatResult,
    Finish,
    FinishReason,
    ReasoningDelta,
    ReasoningPart,
    StreamError,
    StreamEvent,
    TextDelta,
    TextPart,
    ToolCallDelta,
    ToolCallPart,
    ToolCallStart,
    Usage,
    UsageEvent,
    gemini_signature,
)
from llmbridge.errors import BridgeError
from llmbridge.formats.base import StreamRenderer, dumps

FINISH_REASONS: dict[FinishReason, str] = {
    "stop": "STOP",
    "length": "MAX_TOKENS",
    "tool_calls": "STOP",
    "content_filter": "SAFETY",
    "stop_sequence": "STOP",
    "error": "OTHER",
}
STATUSES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    413: "INVALID_ARGUMENT",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    502: "UNAVAILABLE",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}


def error_payload(status: int, message: str) -> dict[str, Any]:
    code_name = STATUSES.get(status, "INTERNAL" if status >= 500 else "INVALID_ARGUMENT")
    return {"error": {"code": status, "message": message, "status": code_name}}


def wants_thoughts(request: ChatRequest) -> bool:
    return bool(request.reasoning and request.reasoning.include_thoughts)


def signed(part: dict[str, Any], provider_metadata: dict[str, Any]) -> dict[str, Any]:
    signature = gemini_signature(provider_metadata)
    return {**part, "thoughtSignature": signature} if signature else part


def render_usage(usage: Usage | None) -> dict[str, int]:
    """Gemini's candidatesTokenCount excludes thinking, which it counts apart."""
    usage = usage or Usage()
    rendered = {
        "promptTokenCount": usage.input_tokens,
        "candidatesTokenCount": max(0, usage.output_tokens - usage.reasoning_tokens),
        "totalTokenCount": usage.total_tokens,
    }
    if usage.reasoning_tokens:
        rendered["thoughtsTokenCount"] = usage.reasoning_tokens
    if usage.cached_tokens:
        rendered["cachedContentTokenCount"] = usage.cached_tokens
    return rendered


def render_call(call: ToolCallPart) -> dict[str, Any]:
    body = {"name": call.name, "args": call.arguments, "id": call.id}
    return signed({"functionCall": body}, call.provider_metadata)


def render_part(part: TextPart | ReasoningPart | ToolCallPart, thoughts: bool) -> dict[str, Any] | None:
    if isinstance(part, ToolCallPart):
        return render_call(part)
    if isinstance(part, TextPart):
        return signed({"text": part.text}, part.provider_metadata)
    if not thoughts or part.redacted:
        return None
    return signed({"text": part.text, "thought": True}, part.provider_metadata)


def chunk(
    response_id: str, model: str, parts: list[dict[str, Any]], finish: str | None = None, usage: Usage | None = None
) -> dict[str, Any]:
    candidate: dict[str, Any] = {"content": {"role": "model", "parts": parts}, "index": 0}
    if finish:
        candidate["finishReason"] = finish
    rendered: dict[str, Any] = {"candidates": [candidate]}
    if finish:
        rendered["usageMetadata"] = render_usage(usage)
    rendered["modelVersion"] = model
    rendered["responseId"] = response_id
    return rendered


def render_response(result: ChatResult, request: ChatRequest) -> dict[str, Any]:
    thoughts = wants_thoughts(request)
    parts = [p for p in (render_part(part, thoughts) for part in result.parts) if p is not None]
    return chunk(result.id, result.model, parts, FINISH_REASONS[result.finish_reason], result.usage)


class GeminiStreamRenderer(StreamRenderer):
    """One response as Gemini stream chunks, SSE-framed or as a JSON array (`json_array=True`)."""

    def __init__(self, request: ChatRequest, response_id: str, model: str, json_array: bool = False) -> None:
        self.id = response_id
        self.model = model
        self.json_array = json_array
        if json_array:
            self.content_type = "application/json"  # type: ignore[misc]
        self._thoughts = wants_thoughts(request)
        self._calls: dict[int, ToolCallPart] = {}  # buffered until complete
        self._args: dict[int, list[str]] = {}
        self._finish: Finish | None = None
        self._usage: Usage | None = None
        self._sent = 0
        self._ended = False  # no more chunks (finished or failed)
        self._array_closed = False

    def start(self) -> bytes:
        return b"[" if self.json_array else b""

    def feed(self, event: StreamEvent) -> bytes:
        if self._ended:
            return b""
        if isinstance(event, ToolCallStart | ToolCallDelta):
            self._buffer_call(event)
            return b""
        match event:
            case TextDelta() if event.text or event.provider_metadata:
                part = signed({"text": event.text}, event.provider_metadata)
                return self._flush_calls() + self._parts([part])
            case ReasoningDelta() if self._thoughts and not event.redacted:
                part = signed({"text": event.text, "thought": True}, event.provider_metadata)
                if not event.text and "thoughtSignature" not in part:
                    return b""  # e.g. Anthropic's signature_delta: nothing a Gemini client could use
                return self._flush_calls() + self._parts([part])
            case UsageEvent():
                self._usage = event.usage
            case Finish():
                self._finish = event  # buffered calls go out with it, in the last chunk
            case StreamError():
                return self._flush_calls() + self._error(error_payload(event.status, event.message))
        return b""

    def close(self) -> bytes:
        out = b""
        if not self._ended:
            reason = self._finish.reason if self._finish else "stop"
            final = chunk(self.id, self.model, self._pending_calls(), FINISH_REASONS[reason], self._usage)
            out = self._frame(final)
            self._ended = True
        return out + self._close_array()

    def error(self, error: BridgeError) -> bytes:
        """The error as the stream's last element (the array is closed: nothing may follow)."""
        if self._ended:
            return self._close_array()
        return self._error(error_payload(error.status, error.message)) + self._close_array()

    def keepalive(self) -> bytes:
        return b"\n" if self.json_array else b": keep-alive\r\n\r\n"

    # --- framing and buffering --------------------------------------------------------------------

    def _frame(self, payload: dict[str, Any]) -> bytes:
        self._sent += 1
        if not self.json_array:
            return b"data: " + dumps(payload) + b"\r\n\r\n"
        return (b"" if self._sent == 1 else b",\r\n") + dumps(payload)

    def _close_array(self) -> bytes:
        if not self.json_array or self._array_closed:
            return b""
        self._array_closed = True
        return b"]"

    def _error(self, payload: dict[str, Any]) -> bytes:
        self._ended = True
        return self._frame(payload)

    def _parts(self, parts: list[dict[str, Any]]) -> bytes:
        return self._frame(chunk(self.id, self.model, parts))

    def _buffer_call(self, event: ToolCallStart | ToolCallDelta) -> None:
        if isinstance(event, ToolCallStart):
            self._calls[event.index] = ToolCallPart(
                id=event.id, name=event.name, provider_metadata=dict(event.provider_metadata)
            )
            self._args[event.index] = []
        elif event.index in self._calls:
            self._args[event.index].append(event.arguments)

    def _pending_calls(self) -> list[dict[str, Any]]:
        parts = []
        for index, call in sorted(self._calls.items()):
            call.arguments = parse_tool_arguments("".join(self._args[index]))
            parts.append(render_call(call))
        self._calls.clear()
        self._args.clear()
        return parts

    def _flush_calls(self) -> bytes:
        return self._parts(self._pending_calls()) if self._calls else b""
