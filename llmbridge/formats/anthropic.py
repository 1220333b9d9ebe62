"""The Anthropic Messages dialect: `POST /v1/messages`, `POST /v1/messages/count_tokens`
(`GET /v1/models` is the OpenAI door's).

Parsing lives in `anthropic_parse`, rendering (results and the SSE event sequence) in
`anthropic_render`; this module ties them to the `ClientFormat` contract.
"""

from __future__ import annotations

from typing import Any, Mapping

from llmbridge.canonical import ChatRequest, ChatResult, ModelInfo
from llmbridge.errors import BridgeError
from llmbridge.formats.anthropic_parse import parse_messages_request
from llmbridge.formats.anthropic_render import (
    AnthropicStreamRenderer,
    error_payload,
    render_message,
)
from llmbridge.formats.base import DEFAULT_OPTIONS, ClientFormat, Endpoint, RenderOptions
from llmbridge.tokens import estimate_input_tokens

# Anthropic's models list has a creation date; ours is unknown, so every model gets this one.
MODEL_CREATED_AT = "2025-01-01T00:00:00Z"


def wants_thinking(request: ChatRequest) -> bool:
    return bool(request.reasoning and request.reasoning.include_thoughts)


class AnthropicFormat(ClientFormat):
    name = "anthropic"
    title = "Anthropic"
    headline = ("POST /v1/messages",)
    endpoints = (
        Endpoint("POST", "/v1/messages", "chat"),
        Endpoint("POST", "/v1/messages/count_tokens", "count_tokens"),
    )
    prefixes = ("/v1/messages",)
    id_prefix = "msg_"
    field_names = {
        "response_format": "output_config.format",
        "reasoning_effort": "thinking",
        "stop": "stop_sequences",
        "parallel_tool_calls": "tool_choice.disable_parallel_tool_use",
    }

    def parse_request(
        self, body: Any, model: str | None = None, stream: bool | None = None, headers: Mapping[str, str] | None = None
    ) -> ChatRequest:
        """`headers`: the client's request headers; anthropic-version and anthropic-beta are kept in
        `passthrough_headers`."""
        return parse_messages_request(body, model=model, stream=stream, headers=headers)

    def parse_count_tokens(
        self, body: Any, model: str | None = None, headers: Mapping[str, str] | None = None
    ) -> ChatRequest:
        """A `/v1/messages/count_tokens` body: a Messages request without max_tokens."""
        return parse_messages_request(body, model=model, stream=False, headers=headers, require_max_tokens=False)

    def render_count_tokens(self, input_tokens: int) -> dict[str, Any]:
        return {"input_tokens": input_tokens}

    def stream_renderer(
        self, request: ChatRequest, response_id: str, model: str, options: RenderOptions = DEFAULT_OPTIONS
    ) -> AnthropicStreamRenderer:
        """`message_start` carries `input_tokens`: the local estimate, as the provider's count only
        arrives at the end (clients such as Claude Code read it at once)."""
        return AnthropicStreamRenderer(
            response_id, model, estimate_input_tokens(request), show_thinking=wants_thinking(request)
        )

    def render_result(self, result: ChatResult, request: ChatRequest) -> dict[str, Any]:
        return render_message(result, show_thinking=wants_thinking(request))

    def error_body(self, error: BridgeError) -> dict[str, Any]:
        return error_payload(error.status, error.message, error)

    def render_models(self, models: list[ModelInfo]) -> dict[str, Any]:
        data = [self.render_model(m) for m in models]
        return {
            "data": data,
            "has_more": False,
            "first_id": data[0]["id"] if data else None,
            "last_id": data[-1]["id"] if data else None,
        }

    def render_model(self, model: ModelInfo) -> dict[str, Any]:
        rendered: dict[str, Any] = {
            "type": "model",
            "id": model.id,
            "display_name": model.display_name or model.id,
            "created_at": MODEL_CREATED_AT,
            "lifecycle": "active",
        }
        if model.context_window:
            rendered["max_input_tokens"] = model.context_window
        if model.max_output_tokens:
            rendered["max_tokens"] = model.max_output_tokens
        return rendered
