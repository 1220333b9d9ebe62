"""The Gemini API dialect: `POST /v1beta/models/{model}:generateContent`,
`:streamGenerateContent` (`?alt=sse` for SSE, else a streamed JSON array), `:countTokens`,
`GET /v1beta/models` and `GET /v1beta/models/{model}`.

The model and the stream flag come from the URL. Parsing lives in `gemini_parse`, rendering in
`gemini_render`; this module ties them to the `ClientFormat` contract.
"""

from __future__ import annotations

from typing import Any

from llmbridge.canonical import ChatRequest, ChatResult, ModelInfo
from llmbridge.errors import BridgeError, InvalidRequest
from llmbridge.formats.base import ClientFormat
from llmbridge.formats.gemini_parse import camel_keys, model_name, parse_generate_request
from llmbridge.formats.gemini_render import GeminiStreamRenderer, error_payload, render_response

GENERATION_METHODS = ["generateContent", "streamGenerateContent", "countTokens"]


class GeminiFormat(ClientFormat):
    name = "gemini"

    def parse_request(self, body: Any, model: str | None = None, stream: bool | None = None) -> ChatRequest:
        return parse_generate_request(body, model=model, stream=bool(stream))

    def parse_count_tokens(self, body: Any, model: str) -> ChatRequest:
        """A `:countTokens` body: `{contents}` or `{generateContentRequest: {...}}`."""
        if isinstance(body, dict):
            inner = camel_keys(body).get("generateContentRequest")
            if inner is not None:
                if not isinstance(inner, dict):
                    raise InvalidRequest("generateContentRequest: expected an object",
                                         param="generateContentRequest")
                return parse_generate_request(inner, model=model, stream=False)
        return parse_generate_request(body, model=model, stream=False)

    def render_count_tokens(self, total_tokens: int) -> dict[str, Any]:
        return {"totalTokens": total_tokens}

    def stream_renderer(self, request: ChatRequest, response_id: str, model: str,
                        json_array: bool = False) -> GeminiStreamRenderer:
        """`json_array`: for `:streamGenerateContent` without `alt=sse`."""
        return GeminiStreamRenderer(request, response_id, model, json_array=json_array)

    def render_result(self, result: ChatResult, request: ChatRequest) -> dict[str, Any]:
        return render_response(result, request)

    def error_body(self, error: BridgeError) -> dict[str, Any]:
        return error_payload(error.status, error.message)

    def render_models(self, models: list[ModelInfo]) -> dict[str, Any]:
        return {"models": [self.render_model(m) for m in models]}

    def render_model(self, model: ModelInfo) -> dict[str, Any]:
        """One model, as listed and as `GET /v1beta/models/{model}` answers."""
        rendered: dict[str, Any] = {"name": f"models/{model_name(model.id)}",
                                    "displayName": model.display_name or model.id,
                                    "supportedGenerationMethods": list(GENERATION_METHODS)}
        if model.context_window:
            rendered["inputTokenLimit"] = model.context_window
        if model.max_output_tokens:
            rendered["outputTokenLimit"] = model.max_output_tokens
        return rendered
