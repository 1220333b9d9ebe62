"""The Kiro token file and its refresh.

File (written by the Kiro IDE): `~/.aws/sso/cache/kiro-auth-token.json` with camelCase fields
`accessToken`, `refreshToken`, `expiresAt` (ISO-8601 string), `authMethod` (`social` | `IdC`; proxies
also write `builder-id`), `provider`, `profileArn` (social), `region`, and for IdC `clientIdHash`.

* social (Google/GitHub login): POST `https://prod.<region>.auth.desktop.kiro.dev/refreshToken`
  with JSON `{"refreshToken"}` -> `{accessToken, refreshToken, profileArn, expiresIn}`.
* IdC / Builder ID (AWS SSO-OIDC CreateToken): POST `https://oidc.<region>.amazonaws.com/token` with
  JSON camelCase `{clientId, clientSecret, grantType: "refresh_token", refreshToken}`. The client
  registration comes from the account config (`client_id`, `client_secret`) or from the
  registration file `<clientIdHash>.json` beside the token file, and from nowhere else.

The refresh token rotates: the new one is written to the file atomically (other fields kept) before
the new access token is used. The file is re-read before every refresh, because the Kiro IDE may
have refreshed (and rotated) it meanwhile.
"""

from __future__ import annotations

import hashlib
import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from llmbridge.config import AccountConfig
from llmbridge.credentials import SingleFlight, read_json, write_json_atomic
from llmbridge.errors import (
    AccountUnusable,
    BridgeError,
    ConfigError,
    RateLimited,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from llmbridge.providers.kiro.errors import parse_body, parse_retry_after

DEFAULT_TOKEN_FILE = "~/.aws/sso/cache/kiro-auth-token.json"
DEFAULT_REGION = "us-east-1"
REFRESH_SKEW_SECONDS = 600  # refresh when the token expires within 10 minutes

SOCIAL_METHODS = frozenset({"social"})
IDC_METHODS = frozenset({"idc", "builder-id", "builderid", "iam", "sso"})


def social_refresh_url(region: str) -> str:
    return f"https://prod.{region}.auth.desktop.kiro.dev/refreshToken"


def idc_token_url(region: str) -> str:
    return f"https://oidc.{region}.amazonaws.com/token"


def parse_expiry(value: Any) -> float | None:
    """`expiresAt` as epoch seconds: ISO-8601 string (the IDE's format) or epoch seconds/ms."""
    if value is None or value == "":
        return None
    if isinstance(value, (int, float)):
        return value / 1000 if value > 1e11 else float(value)
    text = str(value).strip()
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.timestamp()


def format_expiry(epoch: float) -> str:
    """ISO-8601 UTC with milliseconds and `Z`, as the Kiro IDE writes it."""
    when = datetime.fromtimestamp(epoch, UTC)
    return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"


def normalize_auth_method(value: Any) -> str:
    method = str(value or "social").strip().lower()
    if method in SOCIAL_METHODS:
        return "social"
    if method in IDC_METHODS:
        return "idc"
    return method


# Only a new login helps when the refresh token is gone; a login imported with `llmbridge login kiro`
# is a copy, imported again after the new login.
RELOGIN_HINT = "log in with the Kiro IDE again (then `llmbridge login kiro --force` for an imported login)"


class KiroCredentials:
    """One account's token file. All refreshes go through `refresh()`, which is single-flight."""

    def __init__(self, account: AccountConfig, http: httpx.AsyncClient | None = None) -> None:
        self.account = account
        self.http = http
        self.path = account.credentials_path() or Path(DEFAULT_TOKEN_FILE).expanduser()
        self.data: dict[str, Any] = {}
        self._flight = SingleFlight(str(self.path))
        self.refresh_count = 0
        self.load()

    # --- reading ---------------------------------------------------------------------------------

    def load(self) -> None:
        try:
            self.data = read_json(self.path)
        except FileNotFoundError:
            raise ConfigError(
                f"account {self.account.name!r}: Kiro token file {self.path} not found (log in with the Kiro IDE "
                "or kiro-cli first, then import it with `llmbridge login kiro`)"
            ) from None
        except (ValueError, OSError) as e:
            raise ConfigError(f"account {self.account.name!r}: cannot read Kiro token file {self.path}: {e}") from None

    def validate(self) -> None:
        if not self.data.get("refreshToken") and not self.data.get("accessToken"):
            raise ConfigError(f"account {self.account.name!r}: {self.path} has neither accessToken nor refreshToken")
        method = self.auth_method
        if method not in ("social", "idc"):
            raise ConfigError(
                f"account {self.account.name!r}: Kiro authMethod "
                f"{self.data.get('authMethod')!r} is not supported (social, IdC)"
            )
        if method == "idc" and self.data.get("refreshToken") and not self.account.token_url:
            self.client_registration()  # raises ConfigError when missing

    @property
    def auth_method(self) -> str:
        return normalize_auth_method(self.data.get("authMethod"))

    @property
    def region(self) -> str:
        return self.account.region or self.data.get("region") or DEFAULT_REGION

    @property
    def access_token(self) -> str:
        return str(self.data.get("accessToken") or "")

    @property
    def profile_arn(self) -> str | None:
        return self.account.profile_arn or self.data.get("profileArn") or None

    @property
    def expires_at(self) -> float | None:
        return parse_expiry(self.data.get("expiresAt"))

    def expiring(self, skew: float = REFRESH_SKEW_SECONDS) -> bool:
        if not self.access_token:
            return True
        expires = self.expires_at
        return expires is not None and expires - time.time() < skew

    def machine_id(self) -> str:
        """A stable, non-secret 64-hex id per account (what the IDE puts in its user agent)."""
        seed = "|".join(
            [
                self.account.name,
                str(self.path),
                str(self.data.get("profileArn") or ""),
                str(self.data.get("clientIdHash") or ""),
            ]
        )
        return hashlib.sha256(seed.encode()).hexdigest()

    def client_registration(self) -> tuple[str, str]:
        """(clientId, clientSecret) for IdC refresh: the account config, else `<clientIdHash>.json`
        beside the token file. No other file of the directory is read."""
        if self.account.client_id and self.account.client_secret:
            return self.account.client_id, self.account.client_secret
        if self.data.get("clientId") and self.data.get("clientSecret"):
            return str(self.data["clientId"]), str(self.data["clientSecret"])
        client_hash = self.data.get("clientIdHash")
        if client_hash and "/" not in str(client_hash) and "\\" not in str(client_hash):
            reg_path = self.path.parent / f"{client_hash}.json"
            try:
                reg = read_json(reg_path)
            except (OSError, ValueError):
                reg = {}
            if reg.get("clientId") and reg.get("clientSecret"):
                return str(reg["clientId"]), str(reg["clientSecret"])
        raise ConfigError(
            f"account {self.account.name!r}: IdC login needs a client registration to refresh: set "
            f"client_id and client_secret, or keep <clientIdHash>.json beside {self.path}"
        )

    def token_url(self) -> str:
        if self.account.token_url:
            return self.account.token_url
        if self.auth_method == "social":
            return social_refresh_url(self.region)
        return idc_token_url(self.region)

    # --- refreshing ------------------------------------------------------------------------------

    async def ensure_fresh(self, ahead: float = 0.0) -> None:
        """Refresh if the token expires within the margin (plus `ahead` seconds: the background refresh)."""
        if self.expiring(REFRESH_SKEW_SECONDS + ahead):
            await self.refresh(force=False, skew=REFRESH_SKEW_SECONDS + ahead)

    async def refresh(
        self, force: bool = False, rejected_tokens: set[str] | None = None, skew: float = REFRESH_SKEW_SECONDS
    ) -> None:
        """Refresh when expiring, or always with `force` - unless the access token the service
        rejected (one of `rejected_tokens`) has already been replaced (by us or by the IDE): then
        several requests failing on the same stale token cause one refresh, not one each."""

        async def run() -> None:
            self._reread()
            if rejected_tokens and self.access_token not in rejected_tokens and not self.expiring():
                return
            if not force and not self.expiring(skew):
                return
            await self._refresh_now()

        await self._flight.run(run)

    def _reread(self) -> bool:
        """Adopt the file's contents if the IDE changed it; True when it changed."""
        try:
            fresh = read_json(self.path)
        except (OSError, ValueError):
            return False
        if fresh != self.data:
            self.data = fresh
            return True
        return False

    async def _refresh_now(self) -> None:
        refresh_token = self.data.get("refreshToken")
        if not refresh_token:
            raise AccountUnusable(
                f"Kiro account {self.account.name!r}: the token file has no refreshToken; {RELOGIN_HINT}",
                code="NO_REFRESH_TOKEN",
            )
        if self.auth_method == "social":
            body: dict[str, Any] = {"refreshToken": refresh_token}
        else:
            client_id, client_secret = self.client_registration()
            body = {
                "clientId": client_id,
                "clientSecret": client_secret,
                "grantType": "refresh_token",
                "refreshToken": refresh_token,
            }
        url = self.token_url()
        http = self.http or httpx.AsyncClient(timeout=30)
        try:
            response = await http.post(
                url,
                json=body,
                headers={
                    "Content-Type": "application/json",
                    "Accept": "application/json",
                    "Accept-Encoding": "identity",
                },
            )
        except httpx.TimeoutException as e:
            raise UpstreamTimeout(f"Kiro token refresh timed out ({url})") from e
        except httpx.TransportError as e:
            raise UpstreamUnavailable(f"Kiro token refresh failed to connect ({url}): {e}") from e
        finally:
            if self.http is None:
                await http.aclose()
        if response.status_code >= 400:
            raise self._refresh_error(response)
        try:
            answer = response.json()
        except (json.JSONDecodeError, ValueError):
            answer = None
        if not isinstance(answer, dict) or not answer.get("accessToken"):
            raise UpstreamUnavailable(f"Kiro token refresh answered without accessToken ({url})")
        updated = dict(self.data)
        updated["accessToken"] = answer["accessToken"]
        if answer.get("refreshToken"):
            updated["refreshToken"] = answer["refreshToken"]
        if answer.get("profileArn"):
            updated["profileArn"] = answer["profileArn"]
        expires_in = answer.get("expiresIn")
        try:
            seconds = float(expires_in) if expires_in is not None else 3600.0
        except (TypeError, ValueError):
            seconds = 3600.0
        updated["expiresAt"] = format_expiry(time.time() + seconds)
        # Persist first: a rotated refresh token that only lived in memory is a lost account.
        write_json_atomic(self.path, updated)
        self.data = updated
        self.refresh_count += 1

    def _refresh_error(self, response: httpx.Response) -> BridgeError:
        message, reason, type_name = parse_body(response.content)
        status = response.status_code
        text = f"Kiro token refresh failed (HTTP {status}): {message[:300]}"
        code = reason or type_name
        if status == 429:
            return RateLimited(text, retry_after=parse_retry_after(response.headers), code=code)
        if status >= 500:
            return UpstreamUnavailable(text, code=code)
        lowered = message.lower()
        if "suspended" in lowered or "locked" in lowered:
            from llmbridge.providers.kiro.errors import SUSPENDED_HINT

            return AccountUnusable(SUSPENDED_HINT + message, code=code or "ACCOUNT_SUSPENDED")
        # 400/401/403: the refresh token is invalid, expired or revoked: only a new login helps.
        return AccountUnusable(f"{text} - {RELOGIN_HINT}", code=code or "REFRESH_REJECTED")


def expiry_in(seconds: float) -> str:
    """An `expiresAt` value `seconds` from now (for tests and fakes)."""
    return format_expiry((datetime.now(UTC) + timedelta(seconds=seconds)).timestamp())
