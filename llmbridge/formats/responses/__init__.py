"""The OpenAI Responses dialect: `POST /v1/responses`, streaming and not (`GET /v1/models` is the
chat completions door's, which shares the `/v1` prefix).

Parsing lives in `parse.py`, rendering (the Response object and its event stream) in `render.py`,
thought signatures in reasoning items' `encrypted_content` in `carrier.py`, the conversations behind
`previous_response_id` in `store.py`; this module ties them to the `ClientFormat` contract. Errors,
model lists and token counts are rendered as at the chat completions door (OpenAI's shapes).
"""

from __future__ import annotations

from typing import Any

from llmbridge.canonical import ChatRequest, ChatResult, Message, ModelInfo
from llmbridge.errors import BridgeError
from llmbridge.formats.base import DEFAULT_OPTIONS, ClientFormat, Endpoint, RenderOptions
from llmbridge.formats.openai import OpenAIFormat
from llmbridge.formats.responses.parse import Conversation, parse_responses_request
from llmbridge.formats.responses.render import ResponsesRenderer, render_response
from llmbridge.formats.responses.store import ResponseStore


class ResponsesFormat(ClientFormat):
    name = "responses"
    title = "Responses"
    base_path = "/v1"
    headline = ("POST /v1/responses",)
    endpoints = (Endpoint("POST", "/v1/responses", "chat"),)
    prefixes = ("/v1/responses",)
    id_prefix = "resp_"
    own_ids = True  # previous_response_id names the id the client got
    bracket_paths = True
    field_names = {
        "messages": "input",
        "response_format": "text.format",
        "reasoning_effort": "reasoning.effort",
        "max_tokens": "max_output_tokens",
    }

    def __init__(self) -> None:
        self.store = ResponseStore()
        self.chat = OpenAIFormat()  # errors, model lists and token counts are in its shapes

    def parse_request(self, body: Any, model: str | None = None, stream: bool | None = None) -> ChatRequest:
        return parse_responses_request(body, self.store.get)

    def stream_renderer(
        self, request: ChatRequest, response_id: str, model: str, options: RenderOptions = DEFAULT_OPTIONS
    ) -> ResponsesRenderer:
        return ResponsesRenderer(request, response_id, model)

    def render_result(self, result: ChatResult, request: ChatRequest) -> dict[str, Any]:
        return render_response(result, request)

    def answered(self, request: ChatRequest, result: ChatResult, response_id: str) -> None:
        """With `store` true, keep the conversation for a later `previous_response_id`."""
        if not request.client_options.get("store"):
            return
        instructions = int(request.client_options.get("instruction_parts") or 0)
        messages = list(request.messages)
        if result.parts:
            messages.append(Message(role="assistant", parts=list(result.parts)))
        self.store.put(response_id, Conversation(system=request.system[instructions:], messages=messages))

    def error_body(self, error: BridgeError) -> dict[str, Any]:
        return self.chat.error_body(error)

    def render_models(self, models: list[ModelInfo]) -> dict[str, Any]:
        return self.chat.render_models(models)

    def render_model(self, model: ModelInfo) -> dict[str, Any]:
        return self.chat.render_model(model)

    def render_count_tokens(self, input_tokens: int) -> dict[str, Any]:
        return self.chat.render_count_tokens(input_tokens)
