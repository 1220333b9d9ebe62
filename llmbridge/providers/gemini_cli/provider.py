"""The gemini-cli provider: talks to Code Assist (`cloudcode-pa.googleapis.com/v1internal`) with the
Gemini CLI's own OAuth credentials, as the CLI does (same envelope, headers and onboarding).

Google's terms forbid using Gemini CLI OAuth from third-party software (gemini-cli
`docs/resources/tos-privacy.md`); the README repeats that warning for users.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import platform
import sys
import uuid
from pathlib import Path
from typing import Any, ClassVar

import httpx

from llmbridge.canonical import ChatRequest, ModelInfo
from llmbridge.config import AccountConfig
from llmbridge.errors import BridgeError, ConfigError, UpstreamAuthError
from llmbridge.exchange import AttemptRecord
from llmbridge.providers.base import Provider, UpstreamCall, read_json
from llmbridge.providers.gemini_cli import models
from llmbridge.providers.gemini_cli.credentials import GoogleCredentials
from llmbridge.providers.gemini_cli.errors import SERVICE, classify
from llmbridge.providers.gemini_cli.request import build_count_request, build_request
from llmbridge.providers.gemini_cli.setup import ProjectInfo, discover_project
from llmbridge.providers.google.decoder import GeminiDecoder
from llmbridge.providers.google.request import check_request
from llmbridge.tokens import estimate_system_and_tools

DEFAULT_BASE_URL = "https://cloudcode-pa.googleapis.com"
API_VERSION = "v1internal"
CLI_VERSION = "0.56.0"  # the Gemini CLI release whose requests we reproduce
_ARCH = {"x86_64": "x64", "amd64": "x64", "aarch64": "arm64", "arm64": "arm64", "i386": "ia32", "i686": "ia32"}


def user_agent(model: str) -> str:
    """`GeminiCLI/<ver>/<model> (<platform>; <arch>; terminal)` with Node's platform/arch names."""
    arch = _ARCH.get(platform.machine().lower(), platform.machine().lower())
    return f"GeminiCLI/{CLI_VERSION}/{model} ({sys.platform}; {arch}; terminal)"


class GeminiCodeAssistProvider(Provider):
    name: ClassVar[str] = "gemini-cli"
    default_credentials: ClassVar[str | None] = "~/.gemini/oauth_creds.json"
    service: ClassVar[str] = SERVICE
    # The CLI polls onboarding every 5 s; tests set a small value on the instance.
    onboard_poll_interval: float = 5.0
    onboard_max_polls: int = 60

    def __init__(self, account: AccountConfig, http: httpx.AsyncClient) -> None:
        super().__init__(account, http)
        path = account.credentials_path() or Path(self.default_credentials or "").expanduser()
        self.credentials = GoogleCredentials(path, account.token_url)
        base = (account.base_url or DEFAULT_BASE_URL).rstrip("/").removesuffix("/" + API_VERSION)
        self.api_base = f"{base}/{API_VERSION}"
        self.session_id = str(uuid.uuid4())
        self._prompt_counter = itertools.count(1)
        self._project: ProjectInfo | None = ProjectInfo(account.project) if account.project else None
        self._project_lock = asyncio.Lock()

    @classmethod
    def validate_account(cls, account: AccountConfig) -> None:
        path = account.credentials_path() or Path(cls.default_credentials or "").expanduser()
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise ConfigError(
                f"account {account.name!r}: credentials file {path} not found; log in with the Gemini CLI first"
            ) from None
        except (OSError, ValueError) as e:
            raise ConfigError(f"account {account.name!r}: cannot read {path}: {e}") from None
        if not isinstance(data, dict) or not (data.get("refresh_token") or data.get("access_token")):
            raise ConfigError(
                f"account {account.name!r}: {path} holds no Google OAuth token (access_token/refresh_token)"
            )

    def models(self) -> list[ModelInfo]:
        return models.model_list(self.account.models)

    def upstream_model(self, model: str) -> str | None:
        bare = model.removeprefix("models/")
        return models.upstream_name(bare) if any(m.id == bare for m in self.models()) else None

    def check_request(self, request: ChatRequest) -> None:
        # The client may pin the provider ("gemini-cli/gemini-3-pro-preview"): judge the bare model.
        check_request(request, models.upstream_name(request.model.rsplit("/", 1)[-1]), self.service)

    async def refresh_credentials(self, force: bool = False) -> None:
        await self.credentials.refresh(self.http, force=force)

    def describe(self) -> str:
        where = f"project {self.account.project}" if self.account.project else "project discovered"
        return f"{self.account.name} (gemini-cli, {self.credentials.path}, {where})"

    # --- requests --------------------------------------------------------------------------------

    async def open(self, request: ChatRequest, upstream_model: str) -> UpstreamCall:
        await self.refresh_credentials()
        project = await self.project()
        prompt_id = f"{self.session_id}########{next(self._prompt_counter)}"
        body = build_request(request, upstream_model, project.project, prompt_id, self.session_id)
        url = f"{self.api_base}:streamGenerateContent?alt=sse"
        response, attempt = await self._send("POST", url, body, upstream_model)
        return UpstreamCall(response=response, decoder=GeminiDecoder(classify), attempt=attempt)

    async def count_tokens(self, request: ChatRequest, upstream_model: str) -> int | None:
        """Code Assist's countTokens takes only `contents`: it counts the messages, and the system
        instruction and tool declarations are added as a local estimate (llmbridge.tokens)."""
        await self.refresh_credentials()
        body = build_count_request(request, upstream_model)
        answer = await self._call_json("POST", f"{self.api_base}:countTokens", body, upstream_model)
        total = answer.get("totalTokens")
        if not isinstance(total, (int, float)):
            return None
        return int(total) + estimate_system_and_tools(request)

    async def project(self) -> ProjectInfo:
        """The account's project: configured, or discovered once and kept in memory."""
        if self._project is None:
            async with self._project_lock:
                if self._project is None:
                    self._project = await discover_project(
                        self._setup_call, self.account.project, self.onboard_poll_interval, self.onboard_max_polls
                    )
        return self._project

    async def _setup_call(self, method: str, path: str, body: dict[str, Any] | None) -> dict[str, Any]:
        return await self._call_json(method, self.api_base + path, body, models.KNOWN_MODELS[0].id)

    async def _call_json(self, method: str, url: str, body: dict[str, Any] | None, model: str) -> dict[str, Any]:
        response, attempt = await self._send(method, url, body, model)
        return await read_json(response, attempt, self.service)

    def _headers(self, model: str) -> dict[str, str]:
        # Built from scratch: nothing of the client's request reaches Google.
        return {
            "Content-Type": "application/json",
            "Authorization": f"Bearer {self.credentials.access_token}",
            "User-Agent": user_agent(model),
            "Accept-Encoding": "identity",
        }

    async def _send(
        self, method: str, url: str, body: dict[str, Any] | None, model: str
    ) -> tuple[httpx.Response, AttemptRecord]:
        """Send with the current token; a rejected token is marked so the next refresh replaces it."""
        headers = self._headers(model)
        token = headers["Authorization"].removeprefix("Bearer ")
        try:
            return await self.send(method, url, headers, body, _classify)
        except UpstreamAuthError:
            self.credentials.reject(token)
            raise


def _classify(response: httpx.Response, raw: bytes) -> BridgeError:
    return classify(response.status_code, raw, response.headers.get("retry-after"))
