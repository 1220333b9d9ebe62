"""Anthropic Messages SSE -> canonical stream events.

    message_start  {message: {id, model, usage}}           -> ResponseMeta (usage kept for the end)
    content_block_start / _delta / _stop                   -> text, thinking (+ signature),
                                                              redacted_thinking, tool_use (+ input JSON)
    message_delta  {delta: {stop_reason, stop_sequence}, usage}  -> UsageEvent, Finish
    message_stop, ping                                     -> nothing
    error          {error: {type, message}}                -> StreamError

Usage: canonical input_tokens counts every prompt token, so it is Anthropic's input_tokens plus
cache reads plus cache writes; cached_tokens is the cache reads.
"""

from __future__ import annotations

import json
from typing import Any

from llmbridge.canonical import (
    Finish,
    FinishReason,
    ReasoningDelta,
    ResponseMeta,
    StreamError,
    StreamEvent,
    TextDelta,
    ToolCallDelta,
    ToolCallStart,
    Usage,
    UsageEvent,
)
from llmbridge.providers.anthropic_api.errors import classify_error_object
from llmbridge.sse import JsonEventStreamDecoder

STOP_REASONS: dict[str, FinishReason] = {
    "end_turn": "stop",
    "max_tokens": "length",
    "tool_use": "tool_calls",
    "stop_sequence": "stop_sequence",
    "refusal": "content_filter",
    "pause_turn": "stop",
    "model_context_window_exceeded": "length",
}
CUT_MESSAGE = "the Anthropic stream ended before the response was complete"


class AnthropicDecoder(JsonEventStreamDecoder):
    """One per upstream response: `feed(bytes)` as they arrive, `close()` at the end of the body."""

    cut_message = CUT_MESSAGE
    service = "Anthropic"

    def __init__(self) -> None:
        super().__init__()
        self._usage: dict[str, Any] = {}
        self._tools: dict[int, int] = {}  # content block index -> canonical tool call index

    def on_json(self, event: object) -> list[StreamEvent]:
        if not isinstance(event, dict):
            return self.protocol_error(f"an event that is not a JSON object ({type(event).__name__})")
        handler = _HANDLERS.get(str(event.get("type")))
        return handler(self, event) if handler else []

    def _message_start(self, event: dict[str, Any]) -> list[StreamEvent]:
        message = _dict(event.get("message"))
        self._usage.update(_dict(message.get("usage")))
        return [ResponseMeta(response_id=message.get("id"), model=message.get("model"))]

    def _block_start(self, event: dict[str, Any]) -> list[StreamEvent]:
        block = _dict(event.get("content_block"))
        kind = block.get("type")
        if kind == "text" and block.get("text"):
            return [TextDelta(text=str(block["text"]))]
        if kind == "thinking" and (block.get("thinking") or block.get("signature")):
            return [ReasoningDelta(text=str(block.get("thinking") or ""), signature=block.get("signature") or None)]
        if kind == "redacted_thinking":
            return [ReasoningDelta(redacted=str(block.get("data") or ""))]
        if kind == "tool_use":
            return self._tool_start(int(event.get("index") or 0), block)
        return []  # server tools, citations and other blocks the canonical model has no place for

    def _tool_start(self, block_index: int, block: dict[str, Any]) -> list[StreamEvent]:
        index = len(self._tools)
        self._tools[block_index] = index
        events: list[StreamEvent] = [
            ToolCallStart(index=index, id=str(block.get("id") or f"toolu_{index}"), name=str(block.get("name") or ""))
        ]
        if block.get("input"):
            events.append(ToolCallDelta(index=index, arguments=json.dumps(block["input"], ensure_ascii=False)))
        return events

    def _block_delta(self, event: dict[str, Any]) -> list[StreamEvent]:
        delta = _dict(event.get("delta"))
        kind = delta.get("type")
        if kind == "text_delta" and delta.get("text"):
            return [TextDelta(text=str(delta["text"]))]
        if kind == "thinking_delta" and delta.get("thinking"):
            return [ReasoningDelta(text=str(delta["thinking"]))]
        if kind == "signature_delta" and delta.get("signature"):
            return [ReasoningDelta(signature=str(delta["signature"]))]
        if kind == "input_json_delta" and delta.get("partial_json"):
            index = self._tools.get(int(event.get("index") or 0))
            if index is not None:
                return [ToolCallDelta(index=index, arguments=str(delta["partial_json"]))]
        return []

    def _message_delta(self, event: dict[str, Any]) -> list[StreamEvent]:
        self._usage.update({k: v for k, v in _dict(event.get("usage")).items() if v is not None})
        events: list[StreamEvent] = [UsageEvent(usage=usage_of(self._usage))]
        delta = _dict(event.get("delta"))
        raw = delta.get("stop_reason")
        if isinstance(raw, str) and not self.finished:
            self.finished = True
            reason = STOP_REASONS.get(raw, "stop")
            sequence = delta.get("stop_sequence") if reason == "stop_sequence" else None
            events.append(Finish(reason=reason, raw_reason=raw, stop_sequence=sequence))
        return events

    def _error(self, event: dict[str, Any]) -> list[StreamEvent]:
        self.failed = True
        error = classify_error_object(_dict(event.get("error")))
        return [StreamError(kind=error.kind, message=error.message, status=error.status)]


def usage_of(raw: dict[str, Any]) -> Usage:
    cached = int(raw.get("cache_read_input_tokens") or 0)
    created = int(raw.get("cache_creation_input_tokens") or 0)
    return Usage(
        input_tokens=int(raw.get("input_tokens") or 0) + cached + created,
        output_tokens=int(raw.get("output_tokens") or 0),
        cached_tokens=cached,
        cache_creation_tokens=created,
    )


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


_HANDLERS = {
    "message_start": AnthropicDecoder._message_start,
    "content_block_start": AnthropicDecoder._block_start,
    "content_block_delta": AnthropicDecoder._block_delta,
    "message_delta": AnthropicDecoder._message_delta,
    "error": AnthropicDecoder._error,
}
