"""`provider = "anthropic"`: the Anthropic Messages API with an API key.

`POST <base_url>/v1/messages` (streaming, or not when the client's request is not) with `x-api-key`,
`anthropic-version` (the client's, else 2023-06-01) and the client's `anthropic-beta`, passed on when
it sent one; token counts from `POST /v1/messages/count_tokens`.
"""

from __future__ import annotations

from typing import ClassVar

import httpx

from llmbridge.canonical import ChatRequest, ModelInfo
from llmbridge.config import AccountConfig
from llmbridge.errors import BridgeError, ConfigError
from llmbridge.providers.anthropic_api.decoder import AnthropicDecoder
from llmbridge.providers.anthropic_api.errors import classify
from llmbridge.providers.anthropic_api.request import build_body, build_count_body, check_request, needs_stream
from llmbridge.providers.anthropic_api.whole_body import whole_body_decoder
from llmbridge.providers.base import Provider, StreamDecoder, UpstreamCall, read_json

DEFAULT_BASE_URL = "https://api.anthropic.com"
API_VERSION = "2023-06-01"
# Current Claude models (ids as the Anthropic SDK lists them); `models` in the account overrides.
DEFAULT_MODELS: tuple[tuple[str, int], ...] = (
    ("claude-opus-4-6", 128_000),
    ("claude-sonnet-4-6", 64_000),
    ("claude-opus-4-5", 64_000),
    ("claude-sonnet-4-5", 64_000),
    ("claude-haiku-4-5", 64_000),
)
CONTEXT_WINDOW = 200_000


class AnthropicProvider(Provider):
    name: ClassVar[str] = "anthropic"
    service: ClassVar[str] = "Anthropic"
    whole_answers: ClassVar[bool] = True

    @classmethod
    def validate_account(cls, account: AccountConfig) -> None:
        if not account.api_key:
            raise ConfigError(f"account {account.name!r}: provider 'anthropic' needs 'api_key'")

    def models(self) -> list[ModelInfo]:
        if self.account.models is not None:
            return [ModelInfo(id=m, provider=self.name) for m in self.account.models]
        return [
            ModelInfo(id=m, provider=self.name, context_window=CONTEXT_WINDOW, max_output_tokens=out)
            for m, out in DEFAULT_MODELS
        ]

    @property
    def base_url(self) -> str:
        return (self.account.base_url or DEFAULT_BASE_URL).rstrip("/").removesuffix("/v1")

    def check_request(self, request: ChatRequest) -> None:
        check_request(request)

    def streams_upstream(self, request: ChatRequest) -> bool:
        """As the client asked, except a non-stream request whose output may be too long for one body
        (`needs_stream`): that one is streamed and accumulated, as the SDK has its users do."""
        return super().streams_upstream(request) or needs_stream(request)

    def headers(self, request: ChatRequest) -> dict[str, str]:
        """Built from scratch: only the key, the API version and the client's beta flags go upstream."""
        passed = {k.lower(): v for k, v in request.passthrough_headers.items()}
        headers = {
            "x-api-key": self.account.api_key or "",
            "anthropic-version": passed.get("anthropic-version") or API_VERSION,
            "content-type": "application/json",
            "accept-encoding": "identity",
        }
        if passed.get("anthropic-beta"):
            headers["anthropic-beta"] = passed["anthropic-beta"]
        return headers

    async def open(self, request: ChatRequest, upstream_model: str) -> UpstreamCall:
        stream = self.streams_upstream(request)
        body = build_body(request, upstream_model, stream=stream)
        response, attempt = await self.send(
            "POST", f"{self.base_url}/v1/messages", self.headers(request), body, _classify
        )
        return UpstreamCall(response=response, decoder=self.answer_decoder(stream), attempt=attempt)

    @classmethod
    def answer_decoder(cls, stream: bool) -> StreamDecoder:
        return AnthropicDecoder() if stream else whole_body_decoder()

    async def probe(self) -> bool:
        """`GET /v1/models`: free, and it checks the key."""
        headers = {"x-api-key": self.account.api_key or "", "anthropic-version": API_VERSION}
        return await self.probe_get(f"{self.base_url}/v1/models?limit=1", headers, _classify)

    async def count_tokens(self, request: ChatRequest, upstream_model: str) -> int | None:
        body = build_count_body(request, upstream_model)
        url = f"{self.base_url}/v1/messages/count_tokens"
        response, attempt = await self.send("POST", url, self.headers(request), body, _classify)
        count = (await read_json(response, attempt, self.service)).get("input_tokens")
        return int(count) if isinstance(count, (int, float)) else None

    def describe(self) -> str:
        return f"{self.account.name} (anthropic, {self.base_url})"


def _classify(response: httpx.Response, raw: bytes) -> BridgeError:
    return classify(response.status_code, raw, response.headers.get("retry-after"))
