"""Folds a stream of canonical events into one `ChatResult`.

This is the only place that joins tool-call argument fragments: non-stream clients, the recorder
and tests all go through it, so a fragment-joining bug shows up everywhere at once.
"""

from __future__ import annotations

import json
from typing import Any, Iterable

from llmbridge.canonical import (
    ChatResult,
    Finish,
    ReasoningDelta,
    ReasoningPart,
    ResponseMeta,
    StreamError,
    StreamEvent,
    TextDelta,
    TextPart,
    ToolCallDelta,
    ToolCallPart,
    ToolCallStart,
    Usage,
    UsageEvent,
)


def parse_tool_arguments(text: str) -> dict[str, Any]:
    """Arguments as an object; an empty string is `{}`; anything else that is not an object is kept
    under `_raw` so that nothing the model said is lost."""
    if not text.strip():
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        return {"_raw": text}
    return value if isinstance(value, dict) else {"_raw": value}


class StreamAccumulator:
    def __init__(self, response_id: str, model: str, keep_id: bool = False) -> None:
        self.id = response_id
        self.keep_id = keep_id  # the upstream's response id does not replace `response_id`
        self.model = model
        self.parts: list[TextPart | ReasoningPart | ToolCallPart] = []
        self._tool_args: dict[int, list[str]] = {}
        self._tool_parts: dict[int, ToolCallPart] = {}
        self.finish: Finish | None = None
        self.usage: Usage | None = None
        self.error: StreamError | None = None

    def feed(self, event: StreamEvent) -> None:
        match event:
            case TextDelta():
                self._append_text(event)
            case ReasoningDelta():
                self._append_reasoning(event)
            case ToolCallStart():
                part = ToolCallPart(id=event.id, name=event.name, provider_metadata=dict(event.provider_metadata))
                self._tool_parts[event.index] = part
                self._tool_args[event.index] = []
                self.parts.append(part)
            case ToolCallDelta():
                self._tool_args.setdefault(event.index, []).append(event.arguments)
            case UsageEvent():
                self.usage = event.usage
            case Finish():
                self.finish = event
            case ResponseMeta():
                self.id = self.id if self.keep_id else event.response_id or self.id
                self.model = event.model or self.model
            case StreamError():
                self.error = event

    def feed_all(self, events: Iterable[StreamEvent]) -> None:
        for event in events:
            self.feed(event)

    def _append_text(self, event: TextDelta) -> None:
        last = self.parts[-1] if self.parts else None
        if isinstance(last, TextPart) and not event.provider_metadata:
            last.text += event.text
        else:
            self.parts.append(TextPart(text=event.text, provider_metadata=dict(event.provider_metadata)))

    def _append_reasoning(self, event: ReasoningDelta) -> None:
        last = self.parts[-1] if self.parts else None
        if not isinstance(last, ReasoningPart) or last.signature is not None or last.redacted:
            last = ReasoningPart()
            self.parts.append(last)
        last.text += event.text
        last.signature = event.signature or last.signature
        last.redacted = event.redacted or last.redacted
        last.provider_metadata.update(event.provider_metadata)

    def result(self) -> ChatResult:
        for index, part in self._tool_parts.items():
            part.arguments = parse_tool_arguments("".join(self._tool_args.get(index, [])))
        has_tools = bool(self._tool_parts)
        reason = self.finish.reason if self.finish else ("error" if self.error else "stop")
        if has_tools and reason == "stop":
            reason = "tool_calls"  # providers differ on this; clients expect tool_calls
        return ChatResult(
            id=self.id,
            model=self.model,
            parts=[p for p in self.parts if not (isinstance(p, TextPart) and not p.text and not p.provider_metadata)],
            finish_reason=reason,
            stop_sequence=self.finish.stop_sequence if self.finish else None,
            usage=self.usage,
            error=self.error,
        )
