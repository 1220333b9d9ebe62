"""The Gemini API dialect: `POST /v1beta/models/{model}:generateContent`,
`:streamGenerateContent` (`?alt=sse` for SSE, else a streamed JSON array), `:countTokens`,
`GET /v1beta/models` and `GET /v1beta/models/{model}`; the same under `/v1` for google-genai with a
custom base_url (its model list when the request carries Gemini's auth).

The model and the stream flag come from the URL. Parsing lives in `gemini_parse`, rendering in
`gemini_render`; this module ties them to the `ClientFormat` contract.
"""

from __future__ import annotations

from typing import Any, Mapping

from llmbridge.canonical import ChatRequest, ChatResult, ModelInfo
from llmbridge.errors import BridgeError, InvalidRequest
from llmbridge.formats.base import DEFAULT_OPTIONS, ClientFormat, Endpoint, Query, RenderOptions
from llmbridge.formats.gemini_parse import camel_keys, model_name, parse_generate_request
from llmbridge.formats.gemini_render import GeminiStreamRenderer, error_payload, render_response

GENERATION_METHODS = ["generateContent", "streamGenerateContent", "countTokens"]
JSON_ARRAY = RenderOptions(json_array=True)


def speaks_gemini(headers: Mapping[str, str], query: Query) -> bool:
    """Gemini clients authenticate with x-goog-api-key or ?key= and identify with x-goog-api-client."""
    return "x-goog-api-key" in headers or "x-goog-api-client" in headers or "key" in query


def wants_sse(headers: Mapping[str, str], query: Query) -> bool:
    return query.get("alt") == ["sse"]


def methods(version: str) -> tuple[Endpoint, ...]:
    """The generation methods under `/{version}/models/{model}:…`. Without `alt=sse`, Gemini streams
    one JSON array written out piece by piece."""
    model = f"/{version}/models/{{model}}"
    return (
        Endpoint("POST", f"{model}:generateContent", "chat", stream=False),
        Endpoint("POST", f"{model}:streamGenerateContent", "chat", stream=True, options=JSON_ARRAY),
        Endpoint("POST", f"{model}:streamGenerateContent", "chat", stream=True, when=wants_sse),
        Endpoint("POST", f"{model}:countTokens", "count_tokens"),
    )


class GeminiFormat(ClientFormat):
    name = "gemini"
    title = "Gemini"
    headline = ("POST /v1beta/models/{model}:generateContent",)
    field_names = {
        "messages": "contents",
        "response_format": "generationConfig.responseJsonSchema",
        "reasoning_effort": "generationConfig.thinkingConfig",
        "stop": "generationConfig.stopSequences",
        "temperature": "generationConfig.temperature",
        "top_k": "generationConfig.topK",
        "presence_penalty": "generationConfig.presencePenalty",
        "frequency_penalty": "generationConfig.frequencyPenalty",
        "tool_choice": "toolConfig.functionCallingConfig",
    }
    endpoints = (
        *methods("v1beta"),
        Endpoint("GET", "/v1beta/models", "models"),
        Endpoint("GET", "/v1beta/models/{model}", "model"),
        # google-genai with a custom base_url uses /v1: its methods are Gemini's whoever sends them; its
        # model list is told from the OpenAI door's by Gemini's auth
        *methods("v1"),
        Endpoint("GET", "/v1/models", "models", when=speaks_gemini),
        Endpoint("GET", "/v1/models/{model}", "model", when=speaks_gemini),
    )
    prefixes = ("/v1beta/",)
    models_path = "/v1beta/models"

    def model_from_path(self, raw: str) -> str:
        """`models/` in front of the id, as Gemini clients may send it, is dropped."""
        return model_name(super().model_from_path(raw))

    def parse_request(self, body: Any, model: str | None = None, stream: bool | None = None) -> ChatRequest:
        return parse_generate_request(body, model=model, stream=bool(stream))

    def parse_count_tokens(self, body: Any, model: str | None = None) -> ChatRequest:
        """A `:countTokens` body: `{contents}` or `{generateContentRequest: {...}}`."""
        if isinstance(body, dict):
            inner = camel_keys(body).get("generateContentRequest")
            if inner is not None:
                if not isinstance(inner, dict):
                    raise InvalidRequest("generateContentRequest: expected an object", param="generateContentRequest")
                return parse_generate_request(inner, model=model, stream=False)
        return parse_generate_request(body, model=model, stream=False)

    def render_count_tokens(self, total_tokens: int) -> dict[str, Any]:
        return {"totalTokens": total_tokens}

    def stream_renderer(
        self, request: ChatRequest, response_id: str, model: str, options: RenderOptions = DEFAULT_OPTIONS
    ) -> GeminiStreamRenderer:
        """`options.json_array`: for `:streamGenerateContent` without `alt=sse`."""
        return GeminiStreamRenderer(request, response_id, model, json_array=options.json_array)

    def render_result(self, result: ChatResult, request: ChatRequest) -> dict[str, Any]:
        return render_response(result, request)

    def error_body(self, error: BridgeError) -> dict[str, Any]:
        return error_payload(error.status, error.message)

    def render_models(self, models: list[ModelInfo]) -> dict[str, Any]:
        return {"models": [self.render_model(m) for m in models]}

    def render_model(self, model: ModelInfo) -> dict[str, Any]:
        """One model, as listed and as `GET /v1beta/models/{model}` answers."""
        rendered: dict[str, Any] = {
            "name": f"models/{model_name(model.id)}",
            "displayName": model.display_name or model.id,
            "supportedGenerationMethods": list(GENERATION_METHODS),
        }
        if model.context_window:
            rendered["inputTokenLimit"] = model.context_window
        if model.max_output_tokens:
            rendered["outputTokenLimit"] = model.max_output_tokens
        return rendered
