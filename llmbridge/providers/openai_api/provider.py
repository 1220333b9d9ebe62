"""`provider = "openai"`: any OpenAI-compatible chat completions API with an API key.

Useful on its own (OpenAI, or a local server such as vLLM or llama.cpp) and as the simplest provider
to read: a request builder, an SSE decoder (and a whole-body one for non-stream requests), an error
classifier.
"""

from __future__ import annotations

import json
from urllib.parse import urlsplit

from llmbridge.canonical import ChatRequest, ModelInfo
from llmbridge.config import AccountConfig
from llmbridge.errors import (
    AccountUnusable,
    BridgeError,
    CapacityExhausted,
    ConfigError,
    ModelNotFound,
    PermissionDenied,
    QuotaExhausted,
    RateLimited,
    UpstreamBadRequest,
    UpstreamUnavailable,
)
from llmbridge.providers.base import Provider, StreamDecoder, UpstreamCall
from llmbridge.providers.openai_api.decoder import ChatCompletionChunkDecoder
from llmbridge.providers.openai_api.request import build_body, check_request
from llmbridge.providers.openai_api.whole_body import whole_body_decoder

DEFAULT_BASE_URL = "https://api.openai.com/v1"
DEFAULT_MODELS = ("gpt-4.1", "gpt-4.1-mini", "gpt-4o", "gpt-4o-mini", "o4-mini")


class OpenAIProvider(Provider):
    name = "openai"
    base_url_path = "/v1"
    whole_answers = True

    @classmethod
    def validate_account(cls, account: AccountConfig) -> None:
        # A local server (vLLM, llama.cpp) may take no key; OpenAI itself always needs one.
        if not account.api_key and not account.base_url:
            raise ConfigError(
                f"account {account.name!r}: provider 'openai' needs 'api_key' for "
                f"{DEFAULT_BASE_URL} (set base_url for a server that takes no key)"
            )

    def models(self) -> list[ModelInfo]:
        names = self.account.models or list(DEFAULT_MODELS)
        return [ModelInfo(id=m, provider=self.name) for m in names]

    @property
    def base_url(self) -> str:
        return (self.account.base_url or DEFAULT_BASE_URL).rstrip("/")

    @property
    def is_openai(self) -> bool:
        """True for api.openai.com itself; other servers get `max_tokens` instead of
        `max_completion_tokens`."""
        return urlsplit(self.base_url).hostname == "api.openai.com"

    def check_request(self, request: ChatRequest) -> None:
        check_request(request)

    async def open(self, request: ChatRequest, upstream_model: str) -> UpstreamCall:
        stream = self.streams_upstream(request)
        accept = "text/event-stream" if stream else "application/json"
        headers = {"content-type": "application/json", "accept": accept, "accept-encoding": "identity"}
        if self.account.api_key:
            headers = {"authorization": f"Bearer {self.account.api_key}", **headers}
        body = build_body(request, upstream_model, legacy_max_tokens=not self.is_openai, stream=stream)
        response, attempt = await self.send(
            "POST",
            f"{self.base_url}/chat/completions",
            headers,
            body,
            lambda response, raw: classify(response.status_code, raw, response.headers.get("retry-after")),
        )
        return UpstreamCall(response=response, decoder=self.answer_decoder(stream), attempt=attempt)

    @classmethod
    def answer_decoder(cls, stream: bool) -> StreamDecoder:
        return ChatCompletionChunkDecoder() if stream else whole_body_decoder()

    async def probe(self) -> bool:
        """`GET /models`: free, and it checks the key and that the server is up."""
        headers = {"accept": "application/json", "accept-encoding": "identity"}
        if self.account.api_key:
            headers["authorization"] = f"Bearer {self.account.api_key}"
        return await self.probe_get(
            f"{self.base_url}/models",
            headers,
            lambda response, raw: classify(response.status_code, raw, response.headers.get("retry-after")),
        )


def classify(status: int, body: bytes, retry_after: str | None) -> BridgeError:
    try:
        error = json.loads(body).get("error") or {}
    except (json.JSONDecodeError, AttributeError):
        error = {}
    message = str(error.get("message") or body[:300].decode(errors="replace") or f"HTTP {status}")
    code = str(error.get("code") or error.get("type") or "")
    delay = float(retry_after) if retry_after and retry_after.replace(".", "", 1).isdigit() else None
    if status == 401:  # a static key does not get better by refreshing or retrying
        return AccountUnusable(
            f"the upstream rejected this API key; check the account's api_key ({message})", code=code
        )
    if status == 403:
        return _forbidden(message, code)
    if status == 404:
        return ModelNotFound(f"the upstream does not know the model: {message}", code=code)
    if status == 429 and "quota" in code:
        return QuotaExhausted(f"the account's quota is used up: {message}", code=code, retry_after=delay)
    if status == 429:
        return RateLimited(f"rate limited by the upstream: {message}", code=code, retry_after=delay)
    if status in (400, 422):
        return UpstreamBadRequest(f"the upstream rejected the request: {message}", code=code)
    if status in (503, 529):
        return CapacityExhausted(f"the upstream is overloaded: {message}", code=code, retry_after=delay)
    return UpstreamUnavailable(f"the upstream failed with HTTP {status}: {message}", code=code)


# 403 words that say the key or account itself is unusable (anything else: this request or model).
DEAD_MARKERS = (
    "revoked",
    "deactivated",
    "suspended",
    "unsupported_country",
    "country, region, or territory not supported",
)


def _forbidden(message: str, code: str) -> BridgeError:
    """AccountUnusable when the body says the key/account is revoked or deactivated; else a 403 that
    lets another account try (e.g. a project without access to this model)."""
    text = f"{code} {message}".lower()
    if any(marker in text for marker in DEAD_MARKERS):
        return AccountUnusable(f"the upstream refused this account: {message}", code=code)
    return PermissionDenied(f"the upstream refused this request for this account: {message}", code=code)
