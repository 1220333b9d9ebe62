"""Kiro event-stream frames -> canonical stream events.

* `assistantResponseEvent {content}` -> TextDelta (ReasoningDelta inside `<thinking>` when thinking
  was requested);
* `reasoningContentEvent {text, signature, redactedContent}` -> ReasoningDelta;
* `toolUseEvent {toolUseId, name, input?, stop?}` -> ToolCallStart on a new id, ToolCallDelta per
  input fragment (`{}` when a call ends with no input), names mapped back to the client's;
* `contextUsageEvent`, `meteringEvent`, `metadataEvent` -> folded into one UsageEvent at the end;
* `:message-type` `exception` / `error` -> StreamError (classified like the matching HTTP error);
* end of body -> UsageEvent, Finish (tool_calls / stop / length).

Kiro rarely reports token counts: when `metadataEvent.tokenUsage` is missing, usage is estimated from
`contextUsagePercentage` x the model's context window (input + output) and output characters / 4,
and marked `estimated=True`.
"""

from __future__ import annotations

import json
import math
from typing import Any

from llmbridge.canonical import (
    Finish,
    ReasoningDelta,
    StreamError,
    StreamEvent,
    TextDelta,
    ToolCallDelta,
    ToolCallStart,
    Usage,
    UsageEvent,
)
from llmbridge.hostile import lone_surrogate_path
from llmbridge.providers.kiro.errors import classify_exception_frame
from llmbridge.providers.kiro.eventstream import EventStreamDecodeError, EventStreamReader, Frame

OPEN_TAG = "<thinking>"
CLOSE_TAG = "</thinking>"


def _partial_suffix(text: str, tag: str) -> int:
    """Length of the longest end of `text` that is a proper start of `tag` (to hold back)."""
    for n in range(min(len(tag) - 1, len(text)), 0, -1):
        if text.endswith(tag[:n]):
            return n
    return 0


class ThinkingTagParser:
    """Splits streamed text into thinking and answer, parsing `<thinking>...</thinking>` at the start
    of a text run incrementally (tags may be split across frames anywhere).

    A thinking block is recognised only where no answer text has been produced yet in the current run
    (whitespace aside): a model that writes "<thinking>" in the middle of its answer is not mangled.
    `reset()` starts a new run (after a tool call)."""

    def __init__(self) -> None:
        self.state = "start"  # start | thinking | after | answer
        self.buffer = ""

    def reset(self) -> None:
        if self.state == "answer" or self.state == "after":
            self.state = "start"

    def feed(self, text: str) -> list[tuple[str, str]]:
        out: list[tuple[str, str]] = []
        self.buffer += text
        while self.buffer:
            if self.state == "start":
                stripped = self.buffer.lstrip()
                if stripped.startswith(OPEN_TAG):
                    self.buffer = stripped[len(OPEN_TAG) :]
                    self.state = "thinking"
                    continue
                if not stripped or OPEN_TAG.startswith(stripped):
                    break  # could still become <thinking>
                self.state = "answer"
                continue
            if self.state == "thinking":
                end = self.buffer.find(CLOSE_TAG)
                if end >= 0:
                    if end:
                        out.append(("reasoning", self.buffer[:end]))
                    self.buffer = self.buffer[end + len(CLOSE_TAG) :]
                    self.state = "after"
                    continue
                hold = _partial_suffix(self.buffer, CLOSE_TAG)
                emit = self.buffer[: len(self.buffer) - hold]
                if emit:
                    out.append(("reasoning", emit))
                self.buffer = self.buffer[len(emit) :]
                break
            if self.state == "after":
                stripped = self.buffer.lstrip("\r\n")
                if not stripped:
                    self.buffer = ""
                    break
                self.buffer = stripped
                self.state = "answer"
                continue
            out.append(("text", self.buffer))
            self.buffer = ""
        return out

    def flush(self) -> list[tuple[str, str]]:
        rest, self.buffer = self.buffer, ""
        if not rest:
            return []
        return [("reasoning" if self.state == "thinking" else "text", rest)]


def _finish_reason(stop_reason: str | None, has_tools: bool) -> str:
    reason = (stop_reason or "").upper()
    if "MAX_TOKENS" in reason or "LENGTH" in reason:
        return "length"
    if "CONTENT_FILTER" in reason or "GUARDRAIL" in reason:
        return "content_filter"
    return "tool_calls" if has_tools else "stop"


class KiroDecoder:
    """`feed(bytes) -> events`, `close() -> events`; one per response."""

    def __init__(
        self,
        tool_names: dict[str, str] | None = None,
        thinking: bool = False,
        context_window: int = 200_000,
        input_chars: int = 0,
    ) -> None:
        self.reader = EventStreamReader()
        self.tool_names = tool_names or {}
        self.thinking = ThinkingTagParser() if thinking else None
        self.context_window = context_window
        self.input_chars = input_chars
        self.tool_index = -1
        self.tool_id: str | None = None
        self.tool_has_input = False
        self.tool_open = False
        self.output_chars = 0
        self.context_pct: float | None = None
        self.credits: float | None = None
        self.token_usage: dict[str, Any] | None = None
        self.stop_reason: str | None = None
        self.failed = False
        self.closed = False
        self.frames = 0

    # --- bytes -------------------------------------------------------------------------------------

    def feed(self, data: bytes) -> list[StreamEvent]:
        if self.failed or self.closed:
            return []
        broken: EventStreamDecodeError | None = None
        try:
            frames = self.reader.feed(data)
        except EventStreamDecodeError as e:
            frames, broken = e.frames, e
        events: list[StreamEvent] = []
        for frame in frames:
            self.frames += 1
            events.extend(self._frame(frame))
            if self.failed:
                return events
        if broken is not None:
            self.failed = True
            events.append(
                StreamError(
                    kind="upstream_protocol_error",
                    message=f"Kiro answered with a malformed stream: {broken}",
                    status=502,
                )
            )
        return events

    def close(self) -> list[StreamEvent]:
        if self.closed:
            return []
        self.closed = True
        if self.failed:
            return []
        events: list[StreamEvent] = []
        events.extend(self._flush_text())
        events.extend(self._end_tool())
        if self.reader.pending():
            self.failed = True
            events.append(
                StreamError(
                    kind="upstream_unavailable",
                    status=502,
                    message="Kiro stream ended inside an event-stream frame",
                )
            )
            return events
        if self.frames == 0:
            self.failed = True
            events.append(
                StreamError(kind="upstream_unavailable", status=502, message="Kiro answered with an empty stream")
            )
            return events
        events.append(UsageEvent(usage=self.usage()))
        events.append(
            Finish(
                reason=_finish_reason(self.stop_reason, self.tool_index >= 0),  # type: ignore[arg-type]
                raw_reason=self.stop_reason,
            )
        )
        return events

    # --- frames ------------------------------------------------------------------------------------

    def _frame(self, frame: Frame) -> list[StreamEvent]:
        kind = frame.message_type
        if kind == "exception":
            exc_type = str(frame.headers.get(":exception-type") or "InternalServerException")
            return self._fail(classify_exception_frame(exc_type, frame.payload), exc_type)
        if kind == "error":
            code = str(frame.headers.get(":error-code") or "InternalError")
            message = str(frame.headers.get(":error-message") or frame.payload.decode("utf-8", "replace"))
            body = json.dumps({"message": message or code, "reason": code})
            return self._fail(classify_exception_frame(code, body.encode()), code)
        if kind and kind != "event":
            return []
        try:
            payload = json.loads(frame.payload) if frame.payload else {}
        except (ValueError, RecursionError):  # not JSON, not UTF-8, or nested past the parser
            return self._malformed(f"a {frame.event_type} frame that is not JSON")
        if not isinstance(payload, dict):
            return self._malformed(f"a {frame.event_type} frame that is not a JSON object")
        if lone_surrogate_path(frame.payload, payload) is not None:
            return self._malformed(f"a {frame.event_type} frame with text that is not valid Unicode (a lone surrogate)")
        handler = getattr(self, "_on_" + frame.event_type, None)
        return handler(payload) if handler else []

    def _malformed(self, problem: str) -> list[StreamEvent]:
        self.failed = True
        message = f"Kiro answered with a malformed stream: {problem}"
        return [StreamError(kind="upstream_protocol_error", status=502, message=message)]

    def _fail(self, error: Exception, exc_type: str) -> list[StreamEvent]:
        self.failed = True
        kind = getattr(error, "kind", "upstream_error")
        status = getattr(error, "status", 502)
        message = getattr(error, "message", str(error))
        return [StreamError(kind=kind, message=f"{message} [{exc_type} mid-stream]", status=status)]

    def _on_assistantResponseEvent(self, payload: dict[str, Any]) -> list[StreamEvent]:
        text = payload.get("content")
        if not isinstance(text, str) or not text:
            return []
        events: list[StreamEvent] = list(self._end_tool())
        self.output_chars += len(text)
        if self.thinking is None:
            events.append(TextDelta(text=text))
            return events
        for kind, piece in self.thinking.feed(text):
            events.append(ReasoningDelta(text=piece) if kind == "reasoning" else TextDelta(text=piece))
        return events

    def _on_reasoningContentEvent(self, payload: dict[str, Any]) -> list[StreamEvent]:
        text = payload.get("text") or ""
        signature = payload.get("signature") or None
        redacted = payload.get("redactedContent") or None
        if not (text or signature or redacted):
            return []
        self.output_chars += len(text)
        return [ReasoningDelta(text=text, signature=signature, redacted=redacted)]

    def _on_toolUseEvent(self, payload: dict[str, Any]) -> list[StreamEvent]:
        events: list[StreamEvent] = []
        tool_id = payload.get("toolUseId")
        if tool_id and tool_id != self.tool_id:
            events.extend(self._flush_text())
            events.extend(self._end_tool())
            name = str(payload.get("name") or "")
            self.tool_index += 1
            self.tool_id = tool_id
            self.tool_has_input = False
            self.tool_open = True
            events.append(ToolCallStart(index=self.tool_index, id=str(tool_id), name=self.tool_names.get(name, name)))
            if self.thinking is not None:
                self.thinking.reset()
        if not self.tool_open:
            return events
        fragment = payload.get("input")
        if isinstance(fragment, dict):  # some streams send the whole input as an object
            fragment = json.dumps(fragment, ensure_ascii=False)
        if isinstance(fragment, str) and fragment:
            self.tool_has_input = True
            self.output_chars += len(fragment)
            events.append(ToolCallDelta(index=self.tool_index, arguments=fragment))
        if payload.get("stop"):
            events.extend(self._end_tool())
        return events

    def _on_contextUsageEvent(self, payload: dict[str, Any]) -> list[StreamEvent]:
        value = payload.get("contextUsagePercentage")
        if isinstance(value, (int, float)):
            self.context_pct = float(value)
        return []

    def _on_meteringEvent(self, payload: dict[str, Any]) -> list[StreamEvent]:
        value = payload.get("usage")
        if isinstance(value, (int, float)):
            self.credits = float(value)
        return []

    def _on_metadataEvent(self, payload: dict[str, Any]) -> list[StreamEvent]:
        usage = payload.get("tokenUsage")
        if isinstance(usage, dict):
            self.token_usage = usage
        if payload.get("stopReason"):
            self.stop_reason = str(payload["stopReason"])
        return []

    def _on_invalidStateEvent(self, payload: dict[str, Any]) -> list[StreamEvent]:
        self.failed = True
        message = payload.get("message") or payload.get("reason") or "invalid state"
        return [StreamError(kind="upstream_error", status=502, message=f"Kiro: {message}")]

    # --- helpers -----------------------------------------------------------------------------------

    def _flush_text(self) -> list[StreamEvent]:
        if self.thinking is None:
            return []
        return [ReasoningDelta(text=t) if k == "reasoning" else TextDelta(text=t) for k, t in self.thinking.flush()]

    def _end_tool(self) -> list[StreamEvent]:
        if not self.tool_open:
            return []
        self.tool_open = False
        if not self.tool_has_input:
            self.output_chars += 2
            return [ToolCallDelta(index=self.tool_index, arguments="{}")]
        return []

    def usage(self) -> Usage:
        tokens = self.token_usage
        if tokens:

            def n(key: str) -> int:
                value = tokens.get(key)
                return int(value) if isinstance(value, (int, float)) else 0

            cache_read, cache_write = n("cacheReadInputTokens"), n("cacheWriteInputTokens")
            input_tokens = n("uncachedInputTokens") + cache_read + cache_write
            if not input_tokens and n("inputTokens"):
                input_tokens = n("inputTokens")
            return Usage(
                input_tokens=input_tokens,
                output_tokens=n("outputTokens"),
                cached_tokens=cache_read,
                cache_creation_tokens=cache_write,
            )
        output_tokens = math.ceil(self.output_chars / 4)
        if self.context_pct is not None:
            total = round(self.context_pct * self.context_window / 100)
            input_tokens = max(0, total - output_tokens)
        else:
            input_tokens = math.ceil(self.input_chars / 4)
        return Usage(input_tokens=input_tokens, output_tokens=output_tokens, estimated=True)
