"""The OpenAI chat completions dialect: `POST /v1/chat/completions`, `GET /v1/models[/{model}]`."""

from __future__ import annotations

import json
import time
from typing import Any

from llmbridge.canonical import (
    ChatRequest,
    ChatResult,
    Finish,
    ModelInfo,
    ReasoningDelta,
    ResponseMeta,
    StreamError,
    StreamEvent,
    TextDelta,
    ToolCallDelta,
    ToolCallPart,
    ToolCallStart,
    Usage,
    UsageEvent,
    gemini_signature,
)
from llmbridge.errors import BridgeError
from llmbridge.formats.base import DEFAULT_OPTIONS, ClientFormat, Endpoint, RenderOptions, StreamRenderer, dumps
from llmbridge.formats.openai_parse import join_tool_call_id, parse_chat_request

FINISH_REASONS = {
    "stop": "stop",
    "length": "length",
    "tool_calls": "tool_calls",
    "content_filter": "content_filter",
    "stop_sequence": "stop",
    "error": "stop",
}

ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "invalid_request_error",
    405: "invalid_request_error",
    408: "invalid_request_error",
    413: "invalid_request_error",
    431: "invalid_request_error",
    429: "rate_limit_error",
    500: "server_error",
    502: "upstream_error",
    503: "service_unavailable",
    504: "timeout_error",
}


def render_usage(usage: Usage) -> dict[str, Any]:
    rendered: dict[str, Any] = {
        "prompt_tokens": usage.input_tokens,
        "completion_tokens": usage.output_tokens,
        "total_tokens": usage.total_tokens,
        "prompt_tokens_details": {"cached_tokens": usage.cached_tokens},
        "completion_tokens_details": {"reasoning_tokens": usage.reasoning_tokens},
    }
    if usage.estimated:
        rendered["estimated"] = True  # not an OpenAI field: says the counts are our estimate
    return rendered


def render_tool_call(call: ToolCallPart) -> dict[str, Any]:
    return {
        "id": join_tool_call_id(call.id, gemini_signature(call.provider_metadata)),
        "type": "function",
        "function": {"name": call.name, "arguments": json.dumps(call.arguments, ensure_ascii=False)},
    }


class OpenAIStreamRenderer(StreamRenderer):
    """`chat.completion.chunk` events, then `data: [DONE]`."""

    def __init__(self, response_id: str, model: str, include_usage: bool) -> None:
        self.id = response_id
        self.model = model
        self.created = int(time.time())
        self.include_usage = include_usage
        self.usage: Usage | None = None
        self.finished = False
        self.failed = False

    def _chunk(self, delta: dict[str, Any], finish: str | None = None) -> bytes:
        chunk = {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}],
        }
        return b"data: " + dumps(chunk) + b"\n\n"

    def start(self) -> bytes:
        return self._chunk({"role": "assistant", "content": ""})

    def feed(self, event: StreamEvent) -> bytes:
        match event:
            case TextDelta(text=text) if text:
                return self._chunk({"content": text})
            case ReasoningDelta(text=text) if text:
                return self._chunk({"reasoning_content": text})
            case ToolCallStart():
                call_id = join_tool_call_id(event.id, gemini_signature(event.provider_metadata))
                return self._chunk(
                    {
                        "tool_calls": [
                            {
                                "index": event.index,
                                "id": call_id,
                                "type": "function",
                                "function": {"name": event.name, "arguments": ""},
                            }
                        ]
                    }
                )
            case ToolCallDelta(arguments=arguments) if arguments:
                return self._chunk({"tool_calls": [{"index": event.index, "function": {"arguments": arguments}}]})
            case UsageEvent():
                self.usage = event.usage
            case Finish():
                self.finished = True
                return self._chunk({}, FINISH_REASONS[event.reason])
            case ResponseMeta(model=model) if model:
                self.model = model
            case StreamError():
                return self.error_event(event.kind, event.message, event.status)
        return b""

    def close(self) -> bytes:
        if self.failed:
            return b"data: [DONE]\n\n"
        out = b"" if self.finished else self._chunk({}, "stop")
        if self.include_usage and self.usage is not None:
            chunk = {
                "id": self.id,
                "object": "chat.completion.chunk",
                "created": self.created,
                "model": self.model,
                "choices": [],
                "usage": render_usage(self.usage),
            }
            out += b"data: " + dumps(chunk) + b"\n\n"
        return out + b"data: [DONE]\n\n"

    def error(self, error: BridgeError) -> bytes:
        return self.error_event(error.kind, error.message, error.status)

    def error_event(self, kind: str, message: str, status: int) -> bytes:
        # The openai SDKs raise an APIError when a stream chunk carries an "error" object.
        self.failed = True
        body = {
            "error": {"message": message, "type": ERROR_TYPES.get(status, "server_error"), "param": None, "code": kind}
        }
        return b"data: " + dumps(body) + b"\n\n"


class OpenAIFormat(ClientFormat):
    name = "openai"
    title = "OpenAI"
    base_path = "/v1"
    headline = ("POST /v1/chat/completions", "GET /v1/models")
    endpoints = (
        Endpoint("POST", "/v1/chat/completions", "chat"),
        Endpoint("GET", "/v1/models", "models"),
        Endpoint("GET", "/v1/models/{model}", "model"),
    )
    id_prefix = "chatcmpl-"
    bracket_paths = True

    def parse_request(self, body: Any, model: str | None = None, stream: bool | None = None) -> ChatRequest:
        return parse_chat_request(body)

    def stream_renderer(
        self, request: ChatRequest, response_id: str, model: str, options: RenderOptions = DEFAULT_OPTIONS
    ) -> StreamRenderer:
        return OpenAIStreamRenderer(response_id, model, request.stream_usage)

    def render_result(self, result: ChatResult, request: ChatRequest) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant", "content": result.text() or None, "refusal": None}
        if result.reasoning_text():
            message["reasoning_content"] = result.reasoning_text()
        calls = result.tool_calls()
        if calls:
            message["tool_calls"] = [render_tool_call(c) for c in calls]
        body: dict[str, Any] = {
            "id": result.id,
            "object": "chat.completion",
            "created": int(time.time()),
            "model": result.model,
            "choices": [
                {
                    "index": 0,
                    "message": message,
                    "logprobs": None,
                    "finish_reason": FINISH_REASONS[result.finish_reason],
                }
            ],
        }
        if result.usage is not None:
            body["usage"] = render_usage(result.usage)
        return body

    def error_body(self, error: BridgeError) -> dict[str, Any]:
        return {
            "error": {
                "message": error.message,
                "type": ERROR_TYPES.get(error.status, "server_error"),
                "param": error.param,
                "code": error.code or error.kind,
            }
        }

    def render_models(self, models: list[ModelInfo]) -> dict[str, Any]:
        return {"object": "list", "data": [self.render_model(m) for m in models]}

    def render_model(self, model: ModelInfo) -> dict[str, Any]:
        return {"id": model.id, "object": "model", "created": 0, "owned_by": model.provider}

    def render_count_tokens(self, input_tokens: int) -> dict[str, Any]:
        return {"input_tokens": input_tokens}
