"""`provider = "gemini"`: the public Gemini API (generativelanguage.googleapis.com) with an API key.

`POST <base_url>/v1beta/models/{model}:streamGenerateContent?alt=sse` (`:generateContent` when the
client's request is not a stream) with the key in the `x-goog-api-key` header (never `?key=`: URLs
end up in logs and recordings); token counts from `models/{model}:countTokens`. Request building,
decoding and most error classification are Google's, shared with the gemini-cli provider
(`llmbridge.providers.google`): the same Gemini request and response objects, without the Code
Assist envelope.
"""

from __future__ import annotations

from typing import ClassVar
from urllib.parse import quote

import httpx

from llmbridge.canonical import ChatRequest, ModelInfo
from llmbridge.config import AccountConfig
from llmbridge.errors import BridgeError, ConfigError
from llmbridge.providers.base import Provider, StreamDecoder, UpstreamCall, read_json
from llmbridge.providers.gemini_api.errors import SERVICE, classify
from llmbridge.providers.gemini_api.request import build_body, build_count_body
from llmbridge.providers.google.decoder import GeminiDecoder
from llmbridge.providers.google.models import CONTEXT_WINDOW, MAX_OUTPUT_TOKENS
from llmbridge.providers.google.request import check_request
from llmbridge.providers.google.whole_body import whole_body_decoder

DEFAULT_BASE_URL = "https://generativelanguage.googleapis.com"
API_VERSION = "v1beta"
DEFAULT_MODELS = (
    "gemini-2.5-pro",
    "gemini-2.5-flash",
    "gemini-2.5-flash-lite",
    "gemini-3-pro-preview",
    "gemini-3-flash-preview",
    "gemini-3.1-pro-preview",
    "gemini-3.1-flash-lite",
    "gemini-3.5-flash",
    "gemini-3.8-flash",  # Gemini CLI's flash model in API-key mode
    "gemini-3.5-flash-lite",  # Gemini CLI's auto-routing classifier in API-key mode
)


class GeminiAPIProvider(Provider):
    name: ClassVar[str] = "gemini"
    service: ClassVar[str] = SERVICE
    whole_answers: ClassVar[bool] = True

    @classmethod
    def validate_account(cls, account: AccountConfig) -> None:
        if not account.api_key:
            raise ConfigError(f"account {account.name!r}: provider 'gemini' needs 'api_key'")

    def models(self) -> list[ModelInfo]:
        if self.account.models is not None:
            return [ModelInfo(id=m, provider=self.name) for m in self.account.models]
        return [
            ModelInfo(id=m, provider=self.name, context_window=CONTEXT_WINDOW, max_output_tokens=MAX_OUTPUT_TOKENS)
            for m in DEFAULT_MODELS
        ]

    def upstream_model(self, model: str) -> str | None:
        bare = model.removeprefix("models/")
        return bare if any(m.id == bare for m in self.models()) else None

    @property
    def api_base(self) -> str:
        base = (self.account.base_url or DEFAULT_BASE_URL).rstrip("/").removesuffix("/" + API_VERSION)
        return f"{base}/{API_VERSION}"

    def check_request(self, request: ChatRequest) -> None:
        check_request(request, request.model.rsplit("/", 1)[-1], self.service)

    def headers(self) -> dict[str, str]:
        return {
            "x-goog-api-key": self.account.api_key or "",
            "content-type": "application/json",
            "accept-encoding": "identity",
        }

    def url(self, model: str, method: str) -> str:
        return f"{self.api_base}/models/{quote(model, safe='-._')}:{method}"

    async def probe(self) -> bool:
        """`GET models`: free, and it checks the key."""
        headers = {"x-goog-api-key": self.account.api_key or "", "accept-encoding": "identity"}
        return await self.probe_get(f"{self.api_base}/models?pageSize=1", headers, _classify)

    async def open(self, request: ChatRequest, upstream_model: str) -> UpstreamCall:
        body = build_body(request, upstream_model)
        stream = self.streams_upstream(request)
        if stream:
            url = self.url(upstream_model, "streamGenerateContent") + "?alt=sse"
        else:
            url = self.url(upstream_model, "generateContent")
        response, attempt = await self.send("POST", url, self.headers(), body, _classify)
        return UpstreamCall(response=response, decoder=self.answer_decoder(stream), attempt=attempt)

    @classmethod
    def answer_decoder(cls, stream: bool) -> StreamDecoder:
        return GeminiDecoder(classify) if stream else whole_body_decoder(classify)

    async def count_tokens(self, request: ChatRequest, upstream_model: str) -> int | None:
        url = self.url(upstream_model, "countTokens")
        response, attempt = await self.send(
            "POST", url, self.headers(), build_count_body(request, upstream_model), _classify
        )
        total = (await read_json(response, attempt, self.service)).get("totalTokens")
        return int(total) if isinstance(total, (int, float)) else None

    def describe(self) -> str:
        return f"{self.account.name} (gemini, {self.api_base})"


def _classify(response: httpx.Response, raw: bytes) -> BridgeError:
    return classify(response.status_code, raw, response.headers.get("retry-after"))
