"""`provider = "qwen"`: Qwen's OpenAI-compatible chat completions (`https://<resource_url>/v1`,
normally portal.qwen.ai) with Qwen Code's OAuth credentials, sent as Qwen Code sends them (same
headers in the same order, same body extras, session and prompt ids that follow the conversation).

Qwen ended the Qwen OAuth free tier on 2026-04-15 (Qwen Code hides that login since); the README
says so, and the errors that answer means mark the account dead with that reason.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import urlsplit

import httpx

from llmbridge.canonical import ChatRequest, ModelInfo
from llmbridge.config import AccountConfig
from llmbridge.conversation import prompt_number, session_uuid
from llmbridge.credentials import write_json_atomic
from llmbridge.errors import AccountUnusable, BridgeError, UpstreamAuthError
from llmbridge.providers.base import (
    REPLAY_PACE,
    Provider,
    UpstreamCall,
    check_client_version,
    check_login_file,
    recorded_models,
)
from llmbridge.providers.openai_api.request import check_request
from llmbridge.providers.qwen import client
from llmbridge.providers.qwen.credentials import QwenCredentials
from llmbridge.providers.qwen.decoder import QwenChunkDecoder
from llmbridge.providers.qwen.errors import DISCONTINUED_ADVICE, SERVICE, classify
from llmbridge.providers.qwen.request import build_body

# Qwen Code's fallback when the credentials name no resource_url (DEFAULT_DASHSCOPE_BASE_URL)
DEFAULT_BASE_URL = "https://dashscope.aliyuncs.com/compatible-mode/v1"
# The models Qwen Code offers with the Qwen OAuth login (`QWEN_OAUTH_MODELS`): one server-side alias
# that Qwen re-points over time ("Qwen 3.7 Max" in 0.24). Older names (qwen3-coder-plus,
# qwen3-coder-flash, vision-model) can be listed in an account's `models`.
DEFAULT_MODELS = ("coder-model",)
PROMPT_ID_SEPARATOR = "########"  # <session id>########<prompt number>, as Qwen Code numbers prompts
# Offline mode's stand-in login: valid until 2100, so no refresh is ever attempted; no real secret.
REPLAY_CREDENTIALS = {
    "access_token": "replay-access-token",
    "token_type": "Bearer",
    "refresh_token": "replay-refresh-token",
    "expiry_date": 4102444800000,
}


class QwenProvider(Provider):
    name: ClassVar[str] = "qwen"
    service: ClassVar[str] = SERVICE
    default_credentials: ClassVar[str | None] = "~/.qwen/oauth_creds.json"
    base_url_path: ClassVar[str] = "/v1"

    def __init__(self, account: AccountConfig, http: httpx.AsyncClient) -> None:
        super().__init__(account, http)
        path = account.credentials_path() or Path(self.default_credentials or "").expanduser()
        self.credentials = QwenCredentials(path, account.token_url)
        self.client_version = account.client_version or client.CLIENT_VERSION
        # Conversation ids are keyed hashes (llmbridge.conversation): this account's own key.
        self._identity_secret = os.urandom(32)

    @classmethod
    def replay_account(cls, name: str, origin: str, recorded: list[dict[str, Any]], workdir: Path) -> AccountConfig:
        """Stand-in Qwen credentials that never need refreshing, pointed at the replay server."""
        credentials = workdir / f"{name}.json"
        write_json_atomic(credentials, {**REPLAY_CREDENTIALS, "resource_url": origin})
        return AccountConfig(
            name=name,
            provider=cls.name,
            credentials=str(credentials),
            base_url=origin + cls.base_url_path,
            token_url=origin + "/api/v1/oauth2/token",
            models=recorded_models(recorded),
            requests_per_minute=REPLAY_PACE,
            max_concurrent=REPLAY_PACE,
        )

    @classmethod
    def validate_account(cls, account: AccountConfig) -> None:
        check_login_file(
            account, cls.default_credentials or "", "Qwen OAuth token", "`llmbridge login qwen` or Qwen Code"
        )
        check_client_version(account, client.VERSION_PATTERN, client.CLIENT_VERSION, "Qwen Code")

    def models(self) -> list[ModelInfo]:
        names = self.account.models or list(DEFAULT_MODELS)
        return [ModelInfo(id=m, provider=self.name) for m in names]

    def check_request(self, request: ChatRequest) -> None:
        check_request(request)

    @property
    def base_url(self) -> str:
        """The account's `base_url`, else Qwen Code's rule: `https://<resource_url>/v1`."""
        if self.account.base_url:
            return self.account.base_url.rstrip("/")
        resource = self.credentials.resource_url or DEFAULT_BASE_URL
        url = resource if resource.lower().startswith(("http://", "https://")) else f"https://{resource}"
        url = url.rstrip("/")
        return url if url.endswith("/v1") else f"{url}/v1"

    async def refresh_credentials(self, force: bool = False) -> None:
        await self.credentials.refresh(self.http, force=force)

    async def refresh_ahead(self, seconds: float) -> None:
        await self.credentials.refresh_if_needed(self.http, ahead=seconds)

    async def probe(self) -> bool:
        """A token refresh: Qwen says whether the login still stands (a refused refresh token is
        AccountUnusable), and it costs no quota."""
        await self.credentials.refresh(self.http, force=True)
        return True

    def describe(self) -> str:
        return f"{self.account.name} (qwen, Qwen Code {self.client_version}, {self.credentials.path})"

    def identity(self, request: ChatRequest) -> tuple[str, str]:
        """(sessionId, promptId) of the client conversation this request continues: one session per
        conversation; the prompt number counts the user's prompts (a tool result going back continues
        the prompt)."""
        session = session_uuid(self._identity_secret, request.conversation, request.messages)
        return session, f"{session}{PROMPT_ID_SEPARATOR}{prompt_number(request.messages)}"

    async def open(self, request: ChatRequest, upstream_model: str) -> UpstreamCall:
        await self.refresh_credentials()
        session_id, prompt_id = self.identity(request)
        body = build_body(request, upstream_model, session_id, prompt_id)
        url = f"{self.base_url}/chat/completions"
        token = self.credentials.access_token
        headers = client.headers(token, https=url.startswith("https:"), version=self.client_version)
        try:
            response, attempt = await self.send("POST", url, headers, body, _classify)
        except UpstreamAuthError as e:
            raise self._rejected_token(token, e) from None
        return UpstreamCall(response=response, decoder=QwenChunkDecoder(), attempt=attempt)

    def _rejected_token(self, token: str, error: UpstreamAuthError) -> BridgeError:
        """A 401: the token is marked for the next refresh; but a token Qwen issued moments ago is not
        stale: Qwen no longer serves this login (what it answers since the free tier ended)."""
        if not self.credentials.fresh():
            self.credentials.reject(token)
            return error
        dead = AccountUnusable(
            f"Qwen rejected a token it had just issued: {DISCONTINUED_ADVICE} (Qwen said: {error.message})",
            code=error.code,
        )
        dead.attempt = error.attempt
        return dead

    def build_request(self, method: str, url: str, headers: dict[str, str], content: bytes | None) -> httpx.Request:
        """Exactly Qwen Code's headers in its order: none of the HTTP client's defaults merged in."""
        return httpx.Request(
            method,
            url,
            headers=client.wire_headers(headers, urlsplit(url).netloc, content),
            content=content,
            extensions={"timeout": self.http.timeout.as_dict()},
        )


def _classify(response: httpx.Response, raw: bytes) -> BridgeError:
    return classify(response.status_code, raw, response.headers.get("retry-after"))
