"""Gemini `GenerateContentResponse` SSE bytes -> canonical stream events.

Each SSE `data:` is one response chunk: bare from the public API, or in Code Assist's envelope
`{response: {candidates, usageMetadata, modelVersion}, traceId}` (both are read). Each chunk carries
only new parts (text deltas, whole thoughts, whole function calls). The stream has no end marker: a
`finishReason` is the only proof that the answer is complete, so a stream that ends without one is
reported as cut. An `{"error": google.rpc.Status}` in the stream is classified by the provider's own
classifier, so its message names that provider's API.
"""

from __future__ import annotations

import json
import time
from typing import Any, Callable

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
    with_gemini_signature,
)
from llmbridge.errors import BridgeError
from llmbridge.sse import JsonEventStreamDecoder

# (HTTP status, error body) -> the classified error: each provider's `errors.classify`.
Classify = Callable[[int, Any], BridgeError]

FINISH_REASONS: dict[str, FinishReason] = {
    "STOP": "stop",
    "MAX_TOKENS": "length",
    "SAFETY": "content_filter",
    "RECITATION": "content_filter",
    "PROHIBITED_CONTENT": "content_filter",
    "BLOCKLIST": "content_filter",
    "SPII": "content_filter",
    "IMAGE_SAFETY": "content_filter",
    "IMAGE_PROHIBITED_CONTENT": "content_filter",
    "MALFORMED_FUNCTION_CALL": "error",
    "UNEXPECTED_TOOL_CALL": "error",
    "TOO_MANY_TOOL_CALLS": "error",
    "LANGUAGE": "error",
    "OTHER": "error",
    "FINISH_REASON_UNSPECIFIED": "error",
}


CUT_MESSAGE = "the upstream stream was cut before Gemini finished its answer"


def new_call_id(name: str, n: int) -> str:
    """An id for a function call Gemini sent without one, as the Gemini CLI mints it
    (`<name>_<epoch ms>_<n>`, n counting the calls of one answer): it goes back upstream with the
    call and its result."""
    return f"{name.strip() or 'generic_tool'}_{int(time.time() * 1000)}_{n}"


class GeminiDecoder(JsonEventStreamDecoder):
    """One per upstream response: `feed(bytes)` as they arrive, `close()` at the end of the body."""

    cut_message = CUT_MESSAGE
    service = "Gemini"

    def __init__(self, classify: Classify) -> None:
        super().__init__()
        self.classify = classify
        self._response_id: str | None = None
        self._model: str | None = None
        self._tool_calls = 0

    def on_json(self, envelope: object) -> list[StreamEvent]:
        # (an unparsable chunk is a protocol error, in the base class: never a silently shorter answer)
        if isinstance(envelope, list) and envelope:
            envelope = envelope[0]
        if not isinstance(envelope, dict):
            return self.protocol_error(f"a chunk that is not a JSON object ({type(envelope).__name__})")
        if "error" in envelope:
            return self._error(envelope)
        response = envelope.get("response", envelope)  # bare, or in the Code Assist envelope
        if not isinstance(response, dict):
            return self.protocol_error("a chunk whose 'response' is not a JSON object")
        response_id = envelope.get("traceId") or response.get("responseId")
        events = self._meta(response_id, response.get("modelVersion"))
        return events + self._response(response)

    def _error(self, envelope: dict[str, Any]) -> list[StreamEvent]:
        self.failed = True
        error = envelope["error"]
        if not isinstance(error, dict):
            error = {"message": str(error)}
        classified = self.classify(int(error.get("code") or 500), {"error": error})
        return [StreamError(kind=classified.kind, message=classified.message, status=classified.status)]

    def _meta(self, response_id: Any, model: Any) -> list[StreamEvent]:
        new_id = isinstance(response_id, str) and response_id != self._response_id
        new_model = isinstance(model, str) and model != self._model
        if not (new_id or new_model):
            return []
        self._response_id = response_id if new_id else self._response_id
        self._model = model if new_model else self._model
        return [ResponseMeta(response_id=self._response_id, model=self._model)]

    def _response(self, response: dict[str, Any]) -> list[StreamEvent]:
        candidates = response.get("candidates") or []
        candidate = candidates[0] if candidates and isinstance(candidates[0], dict) else {}
        content = candidate.get("content") or {}
        events: list[StreamEvent] = []
        for part in content.get("parts") or []:
            if isinstance(part, dict):
                events += self._part(part)
        events += self._usage(response.get("usageMetadata"))
        events += self._finish(candidate.get("finishReason"), response.get("promptFeedback"))
        return events

    def _part(self, part: dict[str, Any]) -> list[StreamEvent]:
        signature = part.get("thoughtSignature")
        metadata = with_gemini_signature({}, signature)
        if isinstance(part.get("functionCall"), dict):
            return self._call(part["functionCall"], metadata)
        text = part.get("text")
        if part.get("thought") is True:
            return [ReasoningDelta(text=text or "", signature=signature, provider_metadata=metadata)]
        if isinstance(text, str) and (text or metadata):
            return [TextDelta(text=text, provider_metadata=metadata)]
        return []

    def _call(self, call: dict[str, Any], metadata: dict[str, Any]) -> list[StreamEvent]:
        index = self._tool_calls
        self._tool_calls += 1
        name = str(call.get("name", ""))
        call_id = call.get("id") or new_call_id(name, index)
        args = call.get("args") if isinstance(call.get("args"), dict) else {}
        arguments = json.dumps(args, ensure_ascii=False, separators=(",", ":"))
        return [
            ToolCallStart(index=index, id=call_id, name=name, provider_metadata=metadata),
            ToolCallDelta(index=index, arguments=arguments),
        ]

    def _usage(self, meta: Any) -> list[StreamEvent]:
        if not isinstance(meta, dict) or not ("promptTokenCount" in meta or "candidatesTokenCount" in meta):
            return []  # early chunks carry only {trafficType}
        thoughts = int(meta.get("thoughtsTokenCount") or 0)
        usage = Usage(
            input_tokens=int(meta.get("promptTokenCount") or 0),
            output_tokens=int(meta.get("candidatesTokenCount") or 0) + thoughts,
            cached_tokens=int(meta.get("cachedContentTokenCount") or 0),
            reasoning_tokens=thoughts,
        )
        return [UsageEvent(usage=usage)]

    def _finish(self, raw: Any, feedback: Any) -> list[StreamEvent]:
        if not raw and isinstance(feedback, dict) and feedback.get("blockReason"):
            raw = feedback["blockReason"]  # the prompt itself was blocked: no candidate at all
            reason: FinishReason = "content_filter"
        elif isinstance(raw, str) and raw:
            reason = FINISH_REASONS.get(raw, "error")
        else:
            return []
        if self.finished:
            return []
        self.finished = True
        if reason == "stop" and self._tool_calls:
            reason = "tool_calls"
        return [Finish(reason=reason, raw_reason=str(raw))]
