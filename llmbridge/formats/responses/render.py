"""Canonical answers -> OpenAI Responses objects and their event stream.

A stream is exactly what OpenAI sends, each event with its `sequence_number` (from 0) and an `event:`
line naming its type:

    response.created, response.in_progress                 (the Response, status in_progress)
    per output item, in order (output_index counts them):
      response.output_item.added                            (the item, status in_progress)
      reasoning:     response.reasoning_summary_part.added, response.reasoning_summary_text.delta...,
                     response.reasoning_summary_text.done, response.reasoning_summary_part.done
      message:       response.content_part.added, response.output_text.delta...,
                     response.output_text.done, response.content_part.done
      function_call: response.function_call_arguments.delta..., response.function_call_arguments.done
      response.output_item.done                             (the whole item)
    response.completed (or response.incomplete: max_output_tokens, content_filter), with usage

and on failure after the start an `error` event, then `response.failed` (the Response with
`error`). A whole answer (`stream: false`) is the final Response of the same machine, so it always
equals what a stream client puts together.

Reasoning items appear when the client asked for a summary (`reasoning.summary`: the thinking text is
the summary) or for `reasoning.encrypted_content`, which then carries thought signatures
(`carrier.py`): a signature Gemini put on the first function call (or text) closes the reasoning item
before it with the signature sealed in, or gets a reasoning item of its own (empty summary) just
before that call. A client that did not ask for encrypted content gets a call's signature in its
`call_id` instead (as at the chat completions door); a text part's is dropped (Gemini does not check
those).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

from llmbridge.canonical import (
    ChatRequest,
    ChatResult,
    Finish,
    FinishReason,
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
    gemini_signature,
)
from llmbridge.errors import BridgeError
from llmbridge.formats.base import StreamRenderer, dumps
from llmbridge.formats.openai_parse import join_tool_call_id
from llmbridge.formats.responses.carrier import Placement, Sealed, seal

RESPONSE_PREFIX = "resp_"
INCOMPLETE: dict[FinishReason, str] = {"length": "max_output_tokens", "content_filter": "content_filter"}


def render_usage(usage: Usage | None) -> dict[str, Any]:
    usage = usage or Usage()
    rendered: dict[str, Any] = {
        "input_tokens": usage.input_tokens,
        "input_tokens_details": {
            "cached_tokens": usage.cached_tokens,
            "cache_write_tokens": usage.cache_creation_tokens,
        },
        "output_tokens": usage.output_tokens,
        "output_tokens_details": {"reasoning_tokens": usage.reasoning_tokens},
        "total_tokens": usage.total_tokens,
    }
    if usage.estimated:
        rendered["estimated"] = True  # not an OpenAI field: the counts are the bridge's estimate
    return rendered


def error_code(status: int) -> str:
    """A `ResponseError.code` (OpenAI's list is closed): rate limits are told apart, the rest is a
    server error."""
    return "rate_limit_exceeded" if status == 429 else "server_error"


@dataclass
class _Item:
    """The output item being written."""

    index: int
    body: dict[str, Any]
    text: list[str] = field(default_factory=list)  # output text, summary text or arguments
    part_open: bool = False  # a content / summary part was announced
    sealed: Sealed = field(default_factory=Sealed)

    @property
    def kind(self) -> str:
        return str(self.body["type"])

    @property
    def id(self) -> str:
        return str(self.body["id"])


class ResponsesRenderer(StreamRenderer):
    """One Response: its event stream, and the Response object it adds up to."""

    def __init__(self, request: ChatRequest, rid: str, model: str) -> None:
        options = request.client_options
        self.request = request
        self.id = rid
        self.model = model
        self.created_at = int(time.time())
        self.summary = bool(options.get("summary"))
        self.encrypted = bool(options.get("encrypted_reasoning"))
        self.originals: dict[str, list[str | None]] = options.get("tool_names") or {}
        self.echo: dict[str, Any] = options.get("echo") or {}
        self.sequence = 0
        self.output: list[dict[str, Any]] = []  # items, in output_index order (open ones included)
        self.open: _Item | None = None
        self.calls: dict[int, _Item] = {}  # canonical tool-call index -> its item
        self.usage: Usage | None = None
        self.finish: FinishReason | None = None
        self.failed: dict[str, Any] | None = None
        self.closed = False

    # --- the stream ------------------------------------------------------------------------------

    def _event(self, kind: str, **fields: Any) -> bytes:
        body = {"type": kind, "sequence_number": self.sequence, **fields}
        self.sequence += 1
        return b"event: " + kind.encode() + b"\ndata: " + dumps(body) + b"\n\n"

    def start(self) -> bytes:
        snapshot = self.response("in_progress")
        return self._event("response.created", response=snapshot) + self._event(
            "response.in_progress", response=snapshot
        )

    def feed(self, event: StreamEvent) -> bytes:
        if self.closed:
            return b""
        match event:
            case ReasoningDelta():
                return self._reasoning(event)
            case TextDelta():
                return self._text(event)
            case ToolCallStart():
                return self._call_start(event)
            case ToolCallDelta(arguments=arguments) if arguments:
                return self._call_delta(event.index, arguments)
            case UsageEvent():
                self.usage = event.usage
            case Finish():
                self.finish = event.reason
            case ResponseMeta(model=model) if model:
                self.model = model
            case StreamError():
                return self._fail(event.kind, event.message, event.status)
        return b""

    def close(self) -> bytes:
        if self.closed:
            return b""
        self.closed = True
        reason = INCOMPLETE.get(self.finish) if self.finish else None
        out = self._close_open("incomplete" if reason else "completed")
        if reason:
            return out + self._event("response.incomplete", response=self.response("incomplete"))
        return out + self._event("response.completed", response=self.response("completed"))

    def error(self, error: BridgeError) -> bytes:
        return self._fail(error.kind, error.message, error.status)

    def _fail(self, kind: str, message: str, status: int) -> bytes:
        if self.closed:
            return b""
        self.closed = True
        out = self._close_open("incomplete")
        self.failed = {"code": error_code(status), "message": message}
        out += self._event("error", code=kind, message=message, param=None)
        return out + self._event("response.failed", response=self.response("failed"))

    # --- items -----------------------------------------------------------------------------------

    def _add(self, body: dict[str, Any]) -> tuple[_Item, bytes]:
        prefix = {"reasoning": "rs", "message": "msg", "function_call": "fc"}[body["type"]]
        index = len(self.output)
        body = {"id": f"{prefix}_{self.id.removeprefix(RESPONSE_PREFIX)}_{index}", **body}
        item = _Item(index, body)
        self.output.append(body)
        self.open = item
        return item, self._event("response.output_item.added", output_index=index, item=dict(body))

    def _close_open(self, status: str = "completed") -> bytes:
        item, self.open = self.open, None
        if item is None:
            return b""
        if item.kind == "reasoning":
            return self._close_reasoning(item)
        if item.kind == "message":
            return self._close_message(item, status)
        return self._close_call(item, status)

    def _done(self, item: _Item) -> bytes:
        return self._event("response.output_item.done", output_index=item.index, item=item.body)

    # reasoning

    def _reasoning(self, event: ReasoningDelta) -> bytes:
        if not (self.summary or self.encrypted):
            return b""  # thinking stays hidden, as at OpenAI without a summary
        out = b""
        item = self.open
        sealed = item.sealed if item is not None and item.kind == "reasoning" else None
        if item is None or sealed is None or (not sealed.empty() and event.text):
            out += self._close_open()
            item, added = self._add({"type": "reasoning", "summary": []})
            out += added
        gemini = gemini_signature(event.provider_metadata)
        if gemini:
            item.sealed.gemini, item.sealed.placement = gemini, "thought"
        elif event.signature:
            item.sealed.signature = event.signature
        if event.redacted:
            item.sealed.redacted = event.redacted
        if not event.text:
            return out
        item.sealed.text += event.text
        if not self.summary:
            return out
        if not item.part_open:
            item.part_open = True
            part = {"type": "summary_text", "text": ""}
            out += self._event(
                "response.reasoning_summary_part.added",
                item_id=item.id,
                output_index=item.index,
                summary_index=0,
                part=part,
            )
        item.text.append(event.text)
        return out + self._event(
            "response.reasoning_summary_text.delta",
            item_id=item.id,
            output_index=item.index,
            summary_index=0,
            delta=event.text,
        )

    def _close_reasoning(self, item: _Item) -> bytes:
        out = b""
        text = "".join(item.text)
        if item.part_open:
            where = {"item_id": item.id, "output_index": item.index, "summary_index": 0}
            out += self._event("response.reasoning_summary_text.done", **where, text=text)
            out += self._event(
                "response.reasoning_summary_part.done", **where, part={"type": "summary_text", "text": text}
            )
            item.body["summary"] = [{"type": "summary_text", "text": text}]
        if self.encrypted and (item.sealed.text or not item.sealed.empty()):
            item.body["encrypted_content"] = seal(item.sealed)
        return out + self._done(item)

    def _carry(self, signature: str | None, placement: Placement) -> bytes:
        """Seal a Gemini signature of a call or text part into the reasoning item before it: the open
        one if it has room, else one of its own (module docstring)."""
        if not (signature and self.encrypted):
            return b""
        item = self.open
        if item is not None and item.kind == "reasoning" and item.sealed.gemini is None:
            item.sealed.gemini, item.sealed.placement = signature, placement
            return self._close_open()
        out = self._close_open()
        item, added = self._add({"type": "reasoning", "summary": []})
        item.sealed.gemini, item.sealed.placement = signature, placement
        return out + added + self._close_open()

    # message

    def _text(self, event: TextDelta) -> bytes:
        out = b""
        item = self.open
        if item is None or item.kind != "message":
            out += self._carry(gemini_signature(event.provider_metadata), "text")
            if not event.text:
                return out
            out += self._close_open()
            item, added = self._add({"type": "message", "status": "in_progress", "content": [], "role": "assistant"})
            out += added
        if not event.text:
            return out
        if not item.part_open:
            item.part_open = True
            out += self._event(
                "response.content_part.added",
                item_id=item.id,
                output_index=item.index,
                content_index=0,
                part=_output_text(""),
            )
        item.text.append(event.text)
        return out + self._event(
            "response.output_text.delta",
            item_id=item.id,
            output_index=item.index,
            content_index=0,
            delta=event.text,
            logprobs=[],
        )

    def _close_message(self, item: _Item, status: str) -> bytes:
        text = "".join(item.text)
        where = {"item_id": item.id, "output_index": item.index, "content_index": 0}
        out = self._event("response.output_text.done", **where, text=text, logprobs=[])
        out += self._event("response.content_part.done", **where, part=_output_text(text))
        item.body.update(status=status, content=[_output_text(text)])
        return out + self._done(item)

    # function calls

    def _call_start(self, event: ToolCallStart) -> bytes:
        signature = gemini_signature(event.provider_metadata)
        out = self._carry(signature, "call")
        out += self._close_open()
        call_id = event.id if self.encrypted else join_tool_call_id(event.id, signature)
        namespace, name = self.originals.get(event.name) or [None, event.name]
        body: dict[str, Any] = {
            "type": "function_call",
            "status": "in_progress",
            "arguments": "",
            "call_id": call_id,
            "name": name,
        }
        if namespace:
            body["namespace"] = namespace
        item, added = self._add(body)
        self.calls[event.index] = item
        return out + added

    def _call_delta(self, index: int, arguments: str) -> bytes:
        item = self.calls.get(index)
        if item is None or item.body["status"] != "in_progress":
            return b""  # a fragment for a call already finished (never seen from the decoders)
        item.text.append(arguments)
        return self._event(
            "response.function_call_arguments.delta", item_id=item.id, output_index=item.index, delta=arguments
        )

    def _close_call(self, item: _Item, status: str) -> bytes:
        arguments = "".join(item.text) or "{}"
        out = self._event(
            "response.function_call_arguments.done", item_id=item.id, output_index=item.index, arguments=arguments
        )
        item.body.update(status=status, arguments=arguments)
        return out + self._done(item)

    # --- the Response object ---------------------------------------------------------------------

    def response(self, status: str) -> dict[str, Any]:
        echo = self.echo
        reason = INCOMPLETE.get(self.finish) if self.finish and status == "incomplete" else None
        body: dict[str, Any] = {
            "id": self.id,
            "object": "response",
            "created_at": self.created_at,
            "status": status,
            "background": False,
            "error": self.failed if status == "failed" else None,
            "incomplete_details": {"reason": reason} if reason else None,
            "instructions": echo.get("instructions"),
            "max_output_tokens": echo.get("max_output_tokens"),
            "max_tool_calls": None,
            "model": self.model,
            "output": [dict(item) for item in self.output] if status != "in_progress" else [],
            "parallel_tool_calls": echo.get("parallel_tool_calls", True),
            "previous_response_id": echo.get("previous_response_id"),
            "reasoning": echo.get("reasoning") or {"effort": None, "summary": None},
            "service_tier": "default",
            "store": echo.get("store", True),
            "temperature": echo.get("temperature", 1.0),
            "text": echo.get("text") or {"format": {"type": "text"}},
            "tool_choice": echo.get("tool_choice", "auto"),
            "tools": self._tools(),
            "top_p": echo.get("top_p", 1.0),
            "truncation": echo.get("truncation", "disabled"),
            "usage": render_usage(self.usage) if status != "in_progress" else None,
            "user": echo.get("user"),
            "metadata": echo.get("metadata") or {},
        }
        if status == "completed":
            body["completed_at"] = int(time.time())
        return body

    def _tools(self) -> list[dict[str, Any]]:
        """The function tools as the client declared them (namespaces regrouped)."""
        tools: list[dict[str, Any]] = []
        namespaces: dict[str, dict[str, Any]] = {}
        for tool in self.request.tools:
            namespace, name = self.originals.get(tool.name) or [None, tool.name]
            function = {
                "type": "function",
                "name": name,
                "description": tool.description,
                "parameters": tool.parameters,
                "strict": None,
            }
            if namespace is None:
                tools.append(function)
                continue
            if namespace not in namespaces:
                namespaces[namespace] = {"type": "namespace", "name": namespace, "description": "", "tools": []}
                tools.append(namespaces[namespace])
            namespaces[namespace]["tools"].append(function)
        return tools


def _output_text(text: str) -> dict[str, Any]:
    return {"type": "output_text", "annotations": [], "logprobs": [], "text": text}


def render_response(result: ChatResult, request: ChatRequest) -> dict[str, Any]:
    """A whole answer: the Response a stream of the same answer ends with."""
    renderer = ResponsesRenderer(request, result.id, result.model)
    calls = 0
    for part in result.parts:
        if isinstance(part, ReasoningPart):
            renderer.feed(
                ReasoningDelta(
                    text=part.text,
                    signature=part.signature,
                    redacted=part.redacted,
                    provider_metadata=part.provider_metadata,
                )
            )
        elif isinstance(part, TextPart):
            renderer.feed(TextDelta(text=part.text, provider_metadata=part.provider_metadata))
        elif isinstance(part, ToolCallPart):
            renderer.feed(
                ToolCallStart(index=calls, id=part.id, name=part.name, provider_metadata=part.provider_metadata)
            )
            renderer.feed(ToolCallDelta(index=calls, arguments=json.dumps(part.arguments, ensure_ascii=False)))
            calls += 1
    if result.usage is not None:
        renderer.feed(UsageEvent(usage=result.usage))
    renderer.feed(Finish(reason=result.finish_reason))
    renderer.close()
    reason = INCOMPLETE.get(result.finish_reason)
    return renderer.response("incomplete" if reason else "completed")
