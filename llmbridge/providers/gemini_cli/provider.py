"""The gemini-cli provider: talks to Code Assist (`cloudcode-pa.googleapis.com/v1internal`) with the
Gemini CLI's own OAuth credentials, as the CLI does (same envelope, headers and onboarding).

Google's terms forbid using Gemini CLI OAuth from third-party software (gemini-cli
`docs/resources/tos-privacy.md`); the README repeats that warning for users.
"""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import urlsplit

import httpx

from llmbridge.canonical import ChatRequest, ModelInfo
from llmbridge.config import AccountConfig
from llmbridge.conversation import prompt_number, session_uuid
from llmbridge.credentials import write_json_atomic
from llmbridge.errors import BridgeError, UpstreamAuthError
from llmbridge.exchange import AttemptRecord
from llmbridge.providers.base import (
    REPLAY_PACE,
    Provider,
    UpstreamCall,
    check_client_version,
    check_login_file,
    read_json,
    recorded_models,
)
from llmbridge.providers.gemini_cli import client, models
from llmbridge.providers.gemini_cli.credentials import GoogleCredentials
from llmbridge.providers.gemini_cli.errors import SERVICE, classify
from llmbridge.providers.gemini_cli.request import build_count_request, build_request
from llmbridge.providers.gemini_cli.setup import ProjectInfo, discover_project
from llmbridge.providers.google.decoder import GeminiDecoder
from llmbridge.providers.google.request import check_request
from llmbridge.tokens import estimate_system_and_tools

DEFAULT_BASE_URL = "https://cloudcode-pa.googleapis.com"
API_VERSION = "v1internal"
PROMPT_ID_SEPARATOR = "########"  # <session_id>########<prompt number> (GC useGeminiStream.ts)
log = logging.getLogger(__name__)
# Offline mode's stand-in login: valid until 2100, so no refresh is ever attempted; no real secret.
REPLAY_CREDENTIALS = {
    "access_token": "replay-access-token",
    "refresh_token": "replay-refresh-token",
    "token_type": "Bearer",
    "expiry_date": 4102444800000,
}


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
        self.client_version = account.client_version or client.CLIENT_VERSION
        # Conversation ids are keyed hashes (llmbridge.conversation): this account's own key.
        self._identity_secret = os.urandom(32)
        self._project: ProjectInfo | None = ProjectInfo(account.project) if account.project else None
        self._project_lock = asyncio.Lock()
        self._started = False  # the CLI's start-up calls (retrieveUserQuota, listExperiments) made

    @classmethod
    def replay_account(cls, name: str, origin: str, recorded: list[dict[str, Any]], workdir: Path) -> AccountConfig:
        """Stand-in Google credentials that never need refreshing, and the recorded project (it is in
        every request body, so an exact replay needs the same one)."""
        credentials = workdir / f"{name}.json"
        write_json_atomic(credentials, REPLAY_CREDENTIALS)
        bodies = [f.get("request", {}).get("body") for f in recorded]
        project = next((b["project"] for b in bodies if isinstance(b, dict) and b.get("project")), "replay-project")
        return AccountConfig(
            name=name,
            provider=cls.name,
            credentials=str(credentials),
            base_url=origin,
            token_url=origin + "/token",
            project=str(project),
            models=recorded_models(recorded),
            requests_per_minute=REPLAY_PACE,
            max_concurrent=REPLAY_PACE,
        )

    @classmethod
    def validate_account(cls, account: AccountConfig) -> None:
        check_login_file(
            account,
            cls.default_credentials or "",
            "Google OAuth token",
            "`llmbridge login gemini-cli` or the Gemini CLI",
        )
        check_client_version(account, client.VERSION_PATTERN, client.CLIENT_VERSION, "Gemini CLI")

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

    async def refresh_ahead(self, seconds: float) -> None:
        await self.credentials.refresh_if_needed(self.http, ahead=seconds)

    async def probe(self) -> bool:
        """A token refresh: Google says whether the login still stands (a refused refresh token is
        AccountUnusable), and the call costs no quota."""
        await self.credentials.refresh(self.http, force=True)
        return True

    def describe(self) -> str:
        where = f"project {self.account.project}" if self.account.project else "project discovered"
        return f"{self.account.name} (gemini-cli {self.client_version}, {self.credentials.path}, {where})"

    def identity(self, request: ChatRequest) -> tuple[str, str]:
        """(session_id, user_prompt_id) of the client conversation this request continues: the
        session is one per conversation, the prompt number counts the user's prompts (a tool result
        going back continues the prompt), as in an interactive Gemini CLI session."""
        session = session_uuid(self._identity_secret, request.conversation, request.messages)
        return session, f"{session}{PROMPT_ID_SEPARATOR}{prompt_number(request.messages)}"

    # --- requests --------------------------------------------------------------------------------

    async def open(self, request: ChatRequest, upstream_model: str) -> UpstreamCall:
        await self.refresh_credentials()
        project = await self.project()
        await self.start_up(project, upstream_model)
        session_id, prompt_id = self.identity(request)
        body = build_request(request, upstream_model, project.project, prompt_id, session_id)
        url = f"{self.api_base}:streamGenerateContent?alt=sse"
        response, attempt = await self._send("POST", url, body, upstream_model, stream=True)
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

    async def start_up(self, project: ProjectInfo, model: str) -> None:
        """What the CLI calls once after finding its project and before its first generation:
        `retrieveUserQuota` and `listExperiments`, concurrently. Once per account (single-flight, under the
        project lock); their answers are not needed, so a failure is logged and not retried."""
        if self._started:
            return
        async with self._project_lock:
            if self._started:
                return
            self._started = True
            metadata = client.client_metadata(project.project, self.client_version)
            calls: list[tuple[str, dict[str, Any]]] = [
                (":retrieveUserQuota", {"project": project.project}),
                (":listExperiments", {"project": project.project, "metadata": metadata}),
            ]
            # concurrently, as the CLI issues them
            await asyncio.gather(*(self._start_up_call(model, method, body) for method, body in calls))

    async def _start_up_call(self, model: str, method: str, body: dict[str, Any]) -> None:
        try:
            await self._call_json("POST", self.api_base + method, body, model)
        except BridgeError as e:
            log.info("%s: %s failed (%s); carrying on", self.account.name, method, e.message)

    async def _setup_call(self, method: str, path: str, body: dict[str, Any] | None) -> dict[str, Any]:
        return await self._call_json(method, self.api_base + path, body, models.KNOWN_MODELS[0].id)

    async def _call_json(self, method: str, url: str, body: dict[str, Any] | None, model: str) -> dict[str, Any]:
        response, attempt = await self._send(method, url, body, model)
        return await read_json(response, attempt, self.service)

    def _headers(self, model: str, stream: bool = False) -> dict[str, str]:
        # Built from scratch as the CLI builds them: nothing of the client's request reaches Google.
        token = self.credentials.access_token or ""
        return client.headers(token, model, stream=stream, version=self.client_version)

    def build_request(self, method: str, url: str, headers: dict[str, str], content: bytes | None) -> httpx.Request:
        """Exactly the CLI's headers in its order: none of the HTTP client's defaults merged in."""
        return httpx.Request(
            method,
            url,
            headers=client.wire_headers(headers, urlsplit(url).netloc, content),
            content=content,
            extensions={"timeout": self.http.timeout.as_dict()},
        )

    async def _send(
        self, method: str, url: str, body: dict[str, Any] | None, model: str, stream: bool = False
    ) -> tuple[httpx.Response, AttemptRecord]:
        """Send with the current token; a rejected token is marked so the next refresh replaces it."""
        headers = self._headers(model, stream)
        token = headers["authorization"].removeprefix("Bearer ")
        try:
            return await self.send(method, url, headers, body, _classify)
        except UpstreamAuthError:
            self.credentials.reject(token)
            raise


def _classify(response: httpx.Response, raw: bytes) -> BridgeError:
    return classify(response.status_code, raw, response.headers.get("retry-after"))
