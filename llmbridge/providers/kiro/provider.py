"""The `kiro` provider: Claude models through Kiro's `generateAssistantResponse` (AWS event stream).

Warning: Kiro suspends accounts it sees used through third-party proxies (kirodotdev/Kiro#8276).
"""

from __future__ import annotations

import asyncio
import logging
import platform
import re
import time
import uuid
from pathlib import Path
from typing import Any, ClassVar

import httpx

from llmbridge.canonical import ChatRequest, ModelInfo
from llmbridge.config import AccountConfig
from llmbridge.credentials import write_json_atomic
from llmbridge.errors import BridgeError, ConfigError, InvalidRequest, UpstreamAuthError
from llmbridge.providers.base import REPLAY_PACE, Provider, UpstreamCall, recorded_models
from llmbridge.providers.kiro import models
from llmbridge.providers.kiro.credentials import DEFAULT_TOKEN_FILE, KiroCredentials
from llmbridge.providers.kiro.decoder import KiroDecoder
from llmbridge.providers.kiro.errors import classify
from llmbridge.providers.kiro.models import KiroModel
from llmbridge.providers.kiro.request import build_request, image_entry

log = logging.getLogger(__name__)
# Offline mode's stand-in login: valid until 2100, so no refresh is ever attempted; no real secret.
REPLAY_TOKEN = {
    "accessToken": "replay-access-token",
    "refreshToken": "replay-refresh-token",
    "expiresAt": "2100-01-01T00:00:00.000Z",
    "authMethod": "social",
    "provider": "Google",
    "region": "us-east-1",
}

KIRO_VERSION = "0.11.63"  # the Kiro IDE release imitated; an account's `client_version` overrides it
VERSION_PATTERN = re.compile(r"^\d+\.\d+\.\d+$")
LISTING_INTERVAL = 3600.0  # seconds between ListAvailableModels calls (after a failure: RETRY)
LISTING_RETRY = 300.0
LISTING_PAGES = 5  # at most this many pages of 50 models
SDK_VERSION = "1.0.34"
NODE_VERSION = "22.21.1"


def _os_token() -> str:
    system = platform.system().lower()
    release = platform.release().split("-")[0] or "0"
    if system == "darwin":
        return f"macos#{platform.mac_ver()[0] or release}"
    if system == "windows":
        return f"win32#{platform.version() or release}"
    return f"{system or 'linux'}#{release}"


class KiroProvider(Provider):
    name: ClassVar[str] = "kiro"
    service: ClassVar[str] = "Kiro"
    default_credentials: ClassVar[str | None] = DEFAULT_TOKEN_FILE

    def __init__(self, account: AccountConfig, http: httpx.AsyncClient) -> None:
        super().__init__(account, http)
        self.credentials = KiroCredentials(account, http)
        self._rejected_tokens: list[str] = []  # access tokens the service refused (last few)
        self._arn_refresh_tried = False
        self._catalog: tuple[KiroModel, ...] = models.MODELS  # until the account's own list arrives
        self._listing: asyncio.Task[None] | None = None
        self._listing_due = 0.0  # monotonic time of the next ListAvailableModels call

    @classmethod
    def replay_account(cls, name: str, origin: str, recorded: list[dict[str, Any]], workdir: Path) -> AccountConfig:
        """A stand-in social login that never needs refreshing, with the recorded profile ARN (it is in
        every request body, so an exact replay needs the same one)."""
        bodies = [f.get("request", {}).get("body") for f in recorded]
        arn = next((b["profileArn"] for b in bodies if isinstance(b, dict) and b.get("profileArn")), None)
        token_file = workdir / f"{name}.json"
        write_json_atomic(token_file, {**REPLAY_TOKEN, **({"profileArn": arn} if arn else {})})
        return AccountConfig(
            name=name,
            provider=cls.name,
            credentials=str(token_file),
            base_url=origin,
            token_url=origin + "/refreshToken",
            models=recorded_models(recorded),
            requests_per_minute=REPLAY_PACE,
            max_concurrent=REPLAY_PACE,
        )

    @classmethod
    def validate_account(cls, account: AccountConfig) -> None:
        KiroCredentials(account).validate()
        if account.client_version is not None and not VERSION_PATTERN.match(account.client_version):
            raise ConfigError(
                f"account {account.name!r}: client_version {account.client_version!r} is not a Kiro IDE "
                f"release number such as {KIRO_VERSION!r}"
            )

    # --- models ------------------------------------------------------------------------------------

    def models(self) -> list[ModelInfo]:
        return models.model_infos(self.account.models, self._catalog)

    def upstream_model(self, model: str) -> str | None:
        kiro_id = models.kiro_model_id(model, self._catalog)
        if kiro_id is None:
            return None
        allowed = self.account.models
        if allowed is not None and kiro_id not in {models.kiro_model_id(m, self._catalog) for m in allowed}:
            return None
        return kiro_id

    async def refresh_models(self) -> None:
        """The account's models from `ListAvailableModels`, as the Kiro IDE lists them: once an hour
        at most (five minutes after a failure); one call at a time; the known list stays on failure."""
        if self._listing is None or self._listing.done():
            if time.monotonic() < self._listing_due:
                return
            self._listing = asyncio.ensure_future(self._list_models())
        await asyncio.shield(self._listing)

    async def _list_models(self) -> None:
        self._listing_due = time.monotonic() + LISTING_RETRY
        try:
            catalog = await self._fetch_listing()
        except Exception as error:  # any failure: keep serving the known list, say why once
            log.warning("kiro %s: listing the models failed (%s); using the built-in list", self.account.name, error)
            return
        if catalog:
            self._catalog = catalog
        self._listing_due = time.monotonic() + LISTING_INTERVAL

    async def _fetch_listing(self) -> tuple[KiroModel, ...]:
        await self.refresh_credentials()
        params: dict[str, str] = {"origin": "AI_EDITOR", "maxResults": "50"}
        if self.credentials.profile_arn:
            params["profileArn"] = self.credentials.profile_arn
        entries: list[Any] = []
        for _ in range(LISTING_PAGES):
            headers = self.headers(self.credentials.access_token)
            del headers["Content-Type"]  # a GET without a body
            response = await self.http.get(
                f"{self.models_base_url()}/ListAvailableModels", params=params, headers=headers
            )
            if response.status_code != 200:
                raise RuntimeError(f"HTTP {response.status_code}")
            page = response.json()
            entries += page.get("models") or [] if isinstance(page, dict) else []
            token = page.get("nextToken") if isinstance(page, dict) else None
            if not isinstance(token, str) or not token:
                break
            params["nextToken"] = token
        return models.from_listing({"models": entries})

    # --- parameters --------------------------------------------------------------------------------

    def check_request(self, request: ChatRequest) -> None:
        """Refuse what Kiro cannot honour; see the README for what is ignored instead."""
        if request.stop:
            raise InvalidRequest("kiro does not support stop sequences", param="stop")
        if request.presence_penalty:
            raise InvalidRequest("kiro does not support presence_penalty", param="presence_penalty")
        if request.frequency_penalty:
            raise InvalidRequest("kiro does not support frequency_penalty", param="frequency_penalty")
        choice = request.tool_choice
        if choice is not None and choice.mode in ("required", "tool") and request.tools:
            raise InvalidRequest("kiro cannot force a tool call (tool_choice required/named)", param="tool_choice")
        for message in request.messages:
            for part in message.parts:
                if part.type == "image":
                    image_entry(part)  # raises InvalidRequest for URLs / unsupported formats
        # temperature, top_p, top_k, seed, parallel_tool_calls, max_tokens: accepted and ignored
        # (Kiro has no such fields; documented in the README).

    # --- credentials -------------------------------------------------------------------------------

    async def refresh_credentials(self, force: bool = False) -> None:
        if force:
            await self.credentials.refresh(force=True, rejected_tokens=set(self._rejected_tokens))
        else:
            await self.credentials.ensure_fresh()

    async def refresh_ahead(self, seconds: float) -> None:
        await self.credentials.ensure_fresh(ahead=seconds)

    async def probe(self) -> bool:
        """A token refresh: the Kiro auth service says whether the login still stands, at no cost."""
        await self.credentials.refresh(force=True)
        return True

    def base_url(self) -> str:
        base = self.account.base_url or f"https://runtime.{self.credentials.region}.kiro.dev"
        return base.rstrip("/")

    def models_base_url(self) -> str:
        """Where ListAvailableModels answers (the Q endpoint's REST path), or the account's base_url."""
        base = self.account.base_url or f"https://q.{self.credentials.region}.amazonaws.com"
        return base.rstrip("/")

    def headers(self, token: str) -> dict[str, str]:
        machine = self.credentials.machine_id()
        agent = f"KiroIDE-{self.account.client_version or KIRO_VERSION}-{machine}"
        return {
            "Content-Type": "application/json",
            "Accept": "application/json",
            "Accept-Encoding": "identity",
            "Authorization": f"Bearer {token}",
            "amz-sdk-invocation-id": str(uuid.uuid4()),
            "amz-sdk-request": "attempt=1; max=3",
            "x-amzn-codewhisperer-optout": "true",
            "x-amzn-kiro-agent-mode": "vibe",
            "x-amz-user-agent": f"aws-sdk-js/{SDK_VERSION} {agent}",
            "user-agent": (
                f"aws-sdk-js/{SDK_VERSION} ua/2.1 os/{_os_token()} lang/js "
                f"md/nodejs#{NODE_VERSION} api/codewhispererstreaming#{SDK_VERSION} m/E {agent}"
            ),
        }

    # --- the call ----------------------------------------------------------------------------------

    def describe(self) -> str:
        return f"{self.account.name} (kiro, {self.credentials.auth_method}, region {self.credentials.region})"

    async def open(self, request: ChatRequest, upstream_model: str) -> UpstreamCall:
        await self.refresh_credentials()
        profile_arn = self.credentials.profile_arn
        if profile_arn is None and self.credentials.auth_method == "social" and not self._arn_refresh_tried:
            self._arn_refresh_tried = True
            await self.credentials.refresh(force=True)  # the social refresh answer carries profileArn
            profile_arn = self.credentials.profile_arn
        built = build_request(request, upstream_model, profile_arn=profile_arn)
        token = self.credentials.access_token
        url = f"{self.base_url()}/generateAssistantResponse"
        try:
            response, attempt = await self.send("POST", url, self.headers(token), built.body, _classify)
        except UpstreamAuthError:
            self._rejected_tokens = [*self._rejected_tokens[-7:], token]
            raise
        decoder = KiroDecoder(
            tool_names=built.tool_names,
            thinking=built.thinking,
            context_window=models.context_window(upstream_model, self._catalog),
            input_chars=built.input_chars,
        )
        return UpstreamCall(response=response, decoder=decoder, attempt=attempt)


def _classify(response: httpx.Response, raw: bytes) -> BridgeError:
    return classify(response.status_code, raw, response.headers)
