"""Google OAuth credentials as the Gemini CLI keeps them (`~/.gemini/oauth_creds.json`).

The file is google-auth-library's `Credentials` object: access_token, refresh_token, scope,
token_type, id_token, expiry_date (milliseconds). We refresh the way that library does: 5 minutes
before expiry, and when Google answered 401 to the token we sent. The refreshed file is written
atomically, keeping every other field, before the new token is used.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable

import httpx

from llmbridge.credentials import SingleFlight, read_json, write_json_atomic
from llmbridge.errors import AccountUnusable, UpstreamTimeout, UpstreamUnavailable
from llmbridge.providers.gemini_cli.errors import RELOGIN_HINT

TOKEN_URL = "https://oauth2.googleapis.com/token"
# The Gemini CLI's installed-app OAuth client: public by design (published in its source), it is
# what the refresh token was issued to, so only these values can refresh it.
CLIENT_ID = "681255809395-oo8ft2oprdrnp9e3aqf6av3hmdib135j.apps.googleusercontent.com"
CLIENT_SECRET = "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"
EAGER_REFRESH_MS = 5 * 60 * 1000
RECENT_REJECTION_S = 60.0


class GoogleCredentials:
    """One credential file: the current token, its expiry, and a single-flight refresh."""

    def __init__(self, path: Path, token_url: str | None = None, clock: Callable[[], float] = time.time) -> None:
        self.path = path
        self.token_url = token_url or TOKEN_URL
        self.clock = clock
        self._data: dict[str, Any] | None = None
        self._mtime: int | None = None
        self._rejected: dict[str, float] = {}  # token -> when Google answered 401 to it
        self._flight = SingleFlight(str(self.path))
        self.refresh_count = 0

    @property
    def data(self) -> dict[str, Any]:
        self._reload_if_changed()
        assert self._data is not None
        return self._data

    @property
    def access_token(self) -> str:
        return str(self.data.get("access_token") or "")

    def needs_refresh(self, ahead: float = 0.0) -> bool:
        """No token, a token Google rejected, or one that expires within 5 minutes (plus `ahead` seconds)."""
        token = self.access_token
        if not token or token in self._rejected:
            return True
        expiry = self.data.get("expiry_date")
        return isinstance(expiry, (int, float)) and expiry - self.clock() * 1000 < EAGER_REFRESH_MS + ahead * 1000

    def reject(self, token: str) -> None:
        """Google answered 401 to `token`: the next refresh_if_needed replaces it, exactly once."""
        self._rejected[token] = self.clock()

    async def refresh(self, http: httpx.AsyncClient, force: bool = False) -> None:
        """Refresh if expiring; with `force`, also replace the current token. A forced refresh right
        after a recorded 401 relies on that record instead, so five requests that all failed with the
        same token cause one refresh, not five (the later ones find the token already replaced)."""
        if force and not any(self.clock() - at < RECENT_REJECTION_S for at in self._rejected.values()):
            self.reject(self.access_token)
        await self.refresh_if_needed(http)

    async def refresh_if_needed(self, http: httpx.AsyncClient, ahead: float = 0.0) -> None:
        """Refresh when needed (`ahead`: that many seconds before the usual margin, for the background
        refresh); concurrent callers share one refresh (re-checked inside the flight, so callers
        arriving after it finished do not refresh a second time)."""
        if self.needs_refresh(ahead):
            await self._flight.run(lambda: self._refresh_once(http, ahead))

    async def _refresh_once(self, http: httpx.AsyncClient, ahead: float = 0.0) -> None:
        if not self.needs_refresh(ahead):
            return  # another process (the Gemini CLI itself) or flight already refreshed the file
        refresh_token = self.data.get("refresh_token")
        if not refresh_token:
            raise AccountUnusable(f"{self.path} has no refresh_token; {RELOGIN_HINT}")
        answer = await self._post(http, str(refresh_token))
        updated = self._merge(answer)
        write_json_atomic(self.path, updated)  # on disk before use: never lose the account
        self._data = updated
        self._mtime = self._stat()
        self.refresh_count += 1

    async def _post(self, http: httpx.AsyncClient, refresh_token: str) -> dict[str, Any]:
        form = {
            "refresh_token": refresh_token,
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
            "grant_type": "refresh_token",
        }
        try:
            response = await http.post(self.token_url, data=form, headers={"Accept-Encoding": "identity"})
        except httpx.TimeoutException as e:
            raise UpstreamTimeout(f"Google token refresh timed out ({type(e).__name__})") from e
        except httpx.TransportError as e:
            raise UpstreamUnavailable(f"cannot reach the Google token endpoint: {e}") from e
        return _token_answer(response, self.path)

    def _merge(self, answer: dict[str, Any]) -> dict[str, Any]:
        updated = dict(self.data)
        updated["access_token"] = answer["access_token"]
        updated["expiry_date"] = int(self.clock() * 1000 + float(answer.get("expires_in", 3600)) * 1000)
        for key in ("refresh_token", "scope", "token_type", "id_token"):
            if answer.get(key):
                updated[key] = answer[key]  # Google rarely rotates refresh_token: keep the old one if absent
        return updated

    def _reload_if_changed(self) -> None:
        """Re-read the file when it changed on disk: the Gemini CLI may have refreshed it itself. A file
        that vanished or is half-written keeps the copy in memory (it was valid a moment ago)."""
        mtime = self._stat()
        if self._data is not None and mtime == self._mtime:
            return
        try:
            self._data = read_json(self.path)
        except (OSError, ValueError) as e:
            if self._data is None:
                raise AccountUnusable(
                    f"cannot read the Gemini CLI credentials {self.path}: {e}; {RELOGIN_HINT}"
                ) from None
        self._mtime = mtime

    def _stat(self) -> int | None:
        try:
            return self.path.stat().st_mtime_ns
        except FileNotFoundError:
            return None


def _token_answer(response: httpx.Response, path: Path) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        body = {}
    if response.status_code in (400, 401) and isinstance(body, dict):
        error = body.get("error") or "rejected"
        description = body.get("error_description") or ""
        raise AccountUnusable(
            f"Google refused to refresh the token in {path} ({error}: {description}); {RELOGIN_HINT}", code=str(error)
        )
    if response.status_code >= 400 or not isinstance(body, dict) or not body.get("access_token"):
        raise UpstreamUnavailable(f"Google token refresh failed with HTTP {response.status_code}")
    return body
