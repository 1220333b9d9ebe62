"""Canonical results and stream events -> Anthropic Messages responses and SSE streams.

A stream is `message_start`, then content blocks (`content_block_start`, deltas,
`content_block_stop`), then `message_delta` (stop reason, usage) and `message_stop`. A block stays
open while events of its kind keep coming and closes when another kind starts; a thinking block
closes once it is signed.

Thinking signatures (see `anthropic_signature`): every thinking block ends signed. A Gemini
thoughtSignature goes into a thinking block when the client enabled thinking and the block can still
take it, that is while no text or tool_use block has started (thinking blocks come first): a signed
thought part signs its own block; a signed first functionCall or first text part signs the open
thinking block, or a new empty one. A signature arriving later (after text, or on a second call)
cannot be put in a thinking block: a tool call's stays in its tool_use id (`<id>__thought__<sig>`, as
when thinking is off), a text part's is dropped (Gemini does not check those). The whole message
(`render_message`) follows the same rules, so it equals what a client accumulates from the stream.
"""

from __future__ import annotations

from typing import Any, Literal

from llmbridge.canonical import (
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
from llmbridge.errors import BridgeError, CapacityExhausted
from llmbridge.formats.anthropic_signature import UNSIGNED, mark_gemini
from llmbridge.formats.base import StreamRenderer, dumps
from llmbridge.formats.openai_parse import join_tool_call_id

STOP_REASONS: dict[FinishReason, str] = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "stop_sequence": "stop_sequence",
    "content_filter": "refusal",
    "error": "end_turn",
}
ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    502: "api_error",
    503: "overloaded_error",
    504: "timeout_error",
    529: "overloaded_error",
}

BlockKind = Literal["text", "thinking", "tool_use"]


def message_id(response_id: str) -> str:
    return response_id if response_id.startswith("msg_") else f"msg_{response_id}"


def error_type(status: int, error: BridgeError | None = None) -> str:
    if isinstance(error, CapacityExhausted):
        return "overloaded_error"
    return ERROR_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")


def error_payload(status: int, message: str, error: BridgeError | None = None) -> dict[str, Any]:
    return {"type": "error", "error": {"type": error_type(status, error), "message": message}}


def render_usage(usage: Usage | None) -> dict[str, int]:
    """Canonical input_tokens counts every prompt token; Anthropic's counts only those neither read
    from nor written to the cache (its total is the sum of the three)."""
    usage = usage or Usage()
    fresh = usage.input_tokens - usage.cached_tokens - usage.cache_creation_tokens
    return {
        "input_tokens": max(0, fresh),
        "output_tokens": usage.output_tokens,
        "cache_read_input_tokens": usage.cached_tokens,
        "cache_creation_input_tokens": usage.cache_creation_tokens,
    }


def tool_use_id(call_id: str, provider_metadata: dict[str, Any]) -> str:
    """Gemini's thoughtSignature rides in the id, which Anthropic clients send back verbatim."""
    return join_tool_call_id(call_id, gemini_signature(provider_metadata))


def thinking_signature(signature: str | None, provider_metadata: dict[str, Any]) -> str | None:
    """A thinking part's own signature: Gemini's (marked), else the Anthropic-family one."""
    gemini = gemini_signature(provider_metadata)
    return mark_gemini("thought", gemini) if gemini else signature


def render_content(
    parts: list[TextPart | ReasoningPart | ToolCallPart], show_thinking: bool = True
) -> list[dict[str, Any]]:
    """The content blocks of a whole message, by the stream's rules (module docstring)."""
    blocks: list[dict[str, Any]] = []
    thinking: dict[str, Any] | None = None  # the last block, while it is a thinking block
    started = False  # a text or tool_use block exists: no thinking block can take a signature now

    def sign(signature: str) -> None:
        nonlocal thinking
        if thinking is None or thinking["signature"]:
            thinking = {"type": "thinking", "thinking": "", "signature": ""}
            blocks.append(thinking)
        thinking["signature"] = signature

    for part in parts:
        if isinstance(part, ReasoningPart):
            if not show_thinking:
                continue
            if part.redacted:
                blocks.append({"type": "redacted_thinking", "data": part.redacted})
                thinking = None
                continue
            signature = thinking_signature(part.signature, part.provider_metadata)
            if part.text or signature:
                thinking = {"type": "thinking", "thinking": part.text, "signature": signature or ""}
                blocks.append(thinking)
            continue
        # a Gemini signature a thinking block can still take (else: a call's stays in its id)
        into_thinking = gemini_signature(part.provider_metadata) if show_thinking and not started else None
        if isinstance(part, TextPart):
            if into_thinking:
                sign(mark_gemini("text", into_thinking))
            if part.text:
                blocks.append({"type": "text", "text": part.text})
                thinking, started = None, True
            continue
        if into_thinking:
            sign(mark_gemini("call", into_thinking))
        call_id = part.id if into_thinking else tool_use_id(part.id, part.provider_metadata)
        blocks.append({"type": "tool_use", "id": call_id, "name": part.name, "input": part.arguments})
        thinking, started = None, True
    for block in blocks:
        if block["type"] == "thinking" and not block["signature"]:
            block["signature"] = UNSIGNED
    return blocks


def render_message(result: ChatResult, show_thinking: bool = True) -> dict[str, Any]:
    return {
        "id": message_id(result.id),
        "type": "message",
        "role": "assistant",
        "model": result.model,
        "content": render_content(result.parts, show_thinking),
        "stop_reason": STOP_REASONS[result.finish_reason],
        "stop_sequence": result.stop_sequence if result.finish_reason == "stop_sequence" else None,
        "usage": render_usage(result.usage),
    }


def frame(kind: str, payload: dict[str, Any]) -> bytes:
    return b"event: " + kind.encode() + b"\ndata: " + dumps({"type": kind, **payload}) + b"\n\n"


class AnthropicStreamRenderer(StreamRenderer):
    """One response's canonical events as Anthropic's SSE event sequence."""

    def __init__(
        self, response_id: str, model: str, input_tokens: int | None = None, show_thinking: bool = True
    ) -> None:
        self.id = message_id(response_id)
        # Some backends think whether asked or not (Gemini CLI); Anthropic clients that did not
        # enable thinking must not get thinking blocks they do not expect.
        self.show_thinking = show_thinking
        self.model = model
        self.input_tokens = input_tokens or 0
        self._index = -1  # index of the last block started
        self._open: BlockKind | None = None
        self._signed = False  # the open thinking block has its signature: new thinking starts anew
        self._started = False  # a text or tool_use block has started: no thinking block can be signed
        self._tool_blocks: dict[int, int] = {}  # canonical tool index -> block index
        self._finish: Finish | None = None
        self._usage: Usage | None = None
        self._ended = False

    def start(self) -> bytes:
        usage = {"input_tokens": self.input_tokens, "output_tokens": 0}
        return frame(
            "message_start",
            {
                "message": {
                    "id": self.id,
                    "type": "message",
                    "role": "assistant",
                    "model": self.model,
                    "content": [],
                    "stop_reason": None,
                    "stop_sequence": None,
                    "usage": usage,
                }
            },
        )

    def feed(self, event: StreamEvent) -> bytes:
        if self._ended:
            return b""
        match event:
            case TextDelta():
                return self._text(event)
            case ReasoningDelta():
                return self._reasoning(event) if self.show_thinking else b""
            case ToolCallStart():
                return self._tool_start(event)
            case ToolCallDelta():
                return self._tool_delta(event)
            case UsageEvent():
                self._usage = event.usage
            case Finish():
                self._finish = event
            case StreamError():
                self._ended = True
                return frame("error", {"error": error_payload(event.status, event.message)["error"]})
        return b""

    def close(self) -> bytes:
        if self._ended:
            return b""
        self._ended = True
        stop = self._stop_reason()
        delta = {
            "stop_reason": STOP_REASONS[stop],
            "stop_sequence": self._finish.stop_sequence if self._finish and stop == "stop_sequence" else None,
        }
        return (
            self._close_block()
            + frame("message_delta", {"delta": delta, "usage": self._final_usage()})
            + frame("message_stop", {})
        )

    def _final_usage(self) -> dict[str, int]:
        """The provider's counts; without any, the message_start input figure (not a 0 that would
        overwrite it in clients that merge the two)."""
        if self._usage is None:
            return render_usage(Usage(input_tokens=self.input_tokens))
        return render_usage(self._usage)

    def error(self, error: BridgeError) -> bytes:
        self._ended = True
        return frame("error", {"error": error_payload(error.status, error.message, error)["error"]})

    def keepalive(self) -> bytes:
        return frame("ping", {})

    # --- blocks -----------------------------------------------------------------------------------

    def _stop_reason(self) -> FinishReason:
        reason = self._finish.reason if self._finish else "stop"
        return "tool_calls" if reason == "stop" and self._tool_blocks else reason

    def _close_block(self) -> bytes:
        if self._open is None:
            return b""
        out = b""
        if self._open == "thinking" and not self._signed:  # Anthropic has no unsigned thinking
            out = self._delta({"type": "signature_delta", "signature": UNSIGNED})
        self._open = None
        return out + frame("content_block_stop", {"index": self._index})

    def _start_block(self, kind: BlockKind | None, block: dict[str, Any]) -> bytes:
        out = self._close_block()
        self._index += 1
        self._open = kind
        self._signed = False
        return out + frame("content_block_start", {"index": self._index, "content_block": block})

    def _delta(self, delta: dict[str, Any], index: int | None = None) -> bytes:
        return frame("content_block_delta", {"index": self._index if index is None else index, "delta": delta})

    def _sign(self, signature: str) -> bytes:
        """Sign the open thinking block, or a new empty one when none is open or it is signed."""
        out = b""
        if self._open != "thinking" or self._signed:
            out = self._start_block("thinking", {"type": "thinking", "thinking": "", "signature": ""})
        self._signed = True
        return out + self._delta({"type": "signature_delta", "signature": signature})

    def _into_thinking(self, provider_metadata: dict[str, Any]) -> str | None:
        """The Gemini signature of a text part or tool call, when a thinking block can still take it."""
        signature = gemini_signature(provider_metadata)
        return signature if signature and self.show_thinking and not self._started else None

    def _text(self, event: TextDelta) -> bytes:
        signature = self._into_thinking(event.provider_metadata)
        out = self._sign(mark_gemini("text", signature)) if signature else b""
        if not event.text:
            return out  # an empty text block is nothing a client could use (Anthropic refuses them)
        if self._open != "text":
            out += self._start_block("text", {"type": "text", "text": ""})
            self._started = True
        return out + self._delta({"type": "text_delta", "text": event.text})

    def _reasoning(self, event: ReasoningDelta) -> bytes:
        if event.redacted:
            block = {"type": "redacted_thinking", "data": event.redacted}
            return self._start_block(None, block) + frame("content_block_stop", {"index": self._index})
        signature = thinking_signature(event.signature, event.provider_metadata)
        if not event.text and not signature:
            return b""  # nothing an Anthropic client can hold
        out = b""
        if self._open != "thinking" or self._signed:
            out = self._start_block("thinking", {"type": "thinking", "thinking": "", "signature": ""})
        if event.text:
            out += self._delta({"type": "thinking_delta", "thinking": event.text})
        if signature:
            out += self._sign(signature)
        return out

    def _tool_start(self, event: ToolCallStart) -> bytes:
        signature = self._into_thinking(event.provider_metadata)
        out = self._sign(mark_gemini("call", signature)) if signature else b""
        call_id = event.id if signature else tool_use_id(event.id, event.provider_metadata)
        out += self._start_block("tool_use", {"type": "tool_use", "id": call_id, "name": event.name, "input": {}})
        self._started = True
        self._tool_blocks[event.index] = self._index
        return out

    def _tool_delta(self, event: ToolCallDelta) -> bytes:
        index = self._tool_blocks.get(event.index)
        if index is None or not event.arguments:
            return b""  # arguments for a call never started: nothing to attach them to
        # A delta for an earlier, already closed call (interleaved parallel calls) keeps its index.
        return self._delta({"type": "input_json_delta", "partial_json": event.arguments}, index)
