"""OpenAI-style `chat.completion.chunk` SSE -> canonical stream events."""

from __future__ import annotations

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
from llmbridge.sse import JsonEventStreamDecoder

FINISH: dict[str, FinishReason] = {
    "stop": "stop",
    "length": "length",
    "tool_calls": "tool_calls",
    "function_call": "tool_calls",
    "content_filter": "content_filter",
}


class ChatCompletionChunkDecoder(JsonEventStreamDecoder):
    service = "the OpenAI-compatible upstream"

    def __init__(self) -> None:
        super().__init__()
        self.meta_sent = False
        self.tool_ids: dict[int, str] = {}

    def on_text(self, data: str) -> list[StreamEvent]:
        if data.strip() == "[DONE]":
            self.finished = True  # some servers send no finish_reason; [DONE] still ends the answer
            return []
        return super().on_text(data)

    def on_json(self, chunk: object) -> list[StreamEvent]:
        if not isinstance(chunk, dict):
            return self.protocol_error(f"a chunk that is not a JSON object ({type(chunk).__name__})")
        if "error" in chunk:
            self.failed = True
            error = chunk["error"] if isinstance(chunk["error"], dict) else {"message": str(chunk["error"])}
            return [StreamError(kind="upstream_error", message=str(error.get("message")), status=502)]
        events: list[StreamEvent] = []
        if not self.meta_sent:
            self.meta_sent = True
            events.append(ResponseMeta(response_id=chunk.get("id"), model=chunk.get("model")))
        for choice in chunk.get("choices") or []:
            events += self._choice(choice)
        if chunk.get("usage"):
            events.append(UsageEvent(usage=_usage(chunk["usage"])))
        return events

    def _choice(self, choice: dict[str, Any]) -> list[StreamEvent]:
        delta = choice.get("delta") or {}
        events: list[StreamEvent] = []
        reasoning = delta.get("reasoning_content") or delta.get("reasoning")
        if reasoning:
            events.append(ReasoningDelta(text=reasoning))
        if delta.get("content"):
            events.append(TextDelta(text=delta["content"]))
        for call in delta.get("tool_calls") or []:
            events += self._tool_call(call)
        if choice.get("finish_reason"):
            self.finished = True
            events.append(
                Finish(reason=FINISH.get(choice["finish_reason"], "stop"), raw_reason=choice["finish_reason"])
            )
        return events

    def _tool_call(self, call: dict[str, Any]) -> list[StreamEvent]:
        index = call.get("index", len(self.tool_ids))
        fn = call.get("function") or {}
        events: list[StreamEvent] = []
        if index not in self.tool_ids:
            self.tool_ids[index] = call.get("id") or f"call_{index}"
            events.append(ToolCallStart(index=index, id=self.tool_ids[index], name=fn.get("name") or ""))
        if fn.get("arguments"):
            events.append(ToolCallDelta(index=index, arguments=fn["arguments"]))
        return events


def _usage(raw: dict[str, Any]) -> Usage:
    prompt_details = raw.get("prompt_tokens_details") or {}
    completion_details = raw.get("completion_tokens_details") or {}
    return Usage(
        input_tokens=raw.get("prompt_tokens") or 0,
        output_tokens=raw.get("completion_tokens") or 0,
        cached_tokens=prompt_details.get("cached_tokens") or raw.get("cached_tokens") or 0,
        reasoning_tokens=completion_details.get("reasoning_tokens") or 0,
    )
