"""Qwen OAuth credentials as Qwen Code keeps them (`~/.qwen/oauth_creds.json`).

The file holds access_token, refresh_token, token_type, resource_url (the API host, normally
`portal.qwen.ai`) and expiry_date (milliseconds). We refresh the way Qwen Code's token manager does:
30 seconds before expiry, and when Qwen answered 401 to the token we sent; the refresh is a form POST
to chat.qwen.ai's token endpoint with Qwen Code's public client id. The answer may rotate the refresh
token and move the account to another `resource_url`: the updated file is written atomically (0600),
keeping every other field, before the new token is used. A refresh Qwen refuses with 400/401 means
the refresh token is dead (Qwen Code then deletes the file; we leave it and mark the account dead).

Qwen rotates the refresh token, so two processes refreshing at once would leave one of them with a
dead token. Qwen Code serialises refreshes across processes with a lock file beside the credentials
(`oauth_creds.lock`, created exclusively, holding a random id; one older than 35 s is stale and
removed); the bridge takes the same lock, re-reads the file once it holds it, and refreshes only if
the token there still needs it.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from pathlib import Path
from typing import Any, Callable

import httpx

from llmbridge.credentials import SingleFlight, read_json, write_json_atomic
from llmbridge.errors import AccountUnusable, UpstreamTimeout, UpstreamUnavailable

TOKEN_URL = "https://chat.qwen.ai/api/v1/oauth2/token"
# Qwen Code's OAuth client: public by design (a device-flow client with no secret, published in its
# source); the refresh token was issued to it, so only it can refresh the token.
CLIENT_ID = "f0304373b74a44d2b584a3fb70ca9e56"
REFRESH_BUFFER_MS = 30 * 1000  # Qwen Code's TOKEN_REFRESH_BUFFER_MS
RECENT_REJECTION_S = 60.0
LOCK_STALE_S = 35.0  # Qwen Code's LOCK_TIMEOUT_MS
LOCK_ATTEMPTS, LOCK_FIRST_WAIT_S, LOCK_MAX_WAIT_S = 20, 0.1, 2.0  # Qwen Code's DEFAULT_LOCK_CONFIG
RELOGIN_HINT = "log in again with Qwen Code (run `qwen` and choose Qwen OAuth) or with `llmbridge login qwen`"


class QwenCredentials:
    """One credential file: the current token, its API host, its expiry, and a single-flight refresh."""

    def __init__(self, path: Path, token_url: str | None = None, clock: Callable[[], float] = time.time) -> None:
        self.path = path
        self.token_url = token_url or TOKEN_URL
        self.clock = clock
        self._data: dict[str, Any] | None = None
        self._mtime: int | None = None
        self._rejected: dict[str, float] = {}  # token -> when Qwen answered 401 to it
        self._flight = SingleFlight()
        self.refreshed_at: float | None = None  # when this process last got a new token
        self.refresh_count = 0

    @property
    def data(self) -> dict[str, Any]:
        self._reload_if_changed()
        assert self._data is not None
        return self._data

    @property
    def access_token(self) -> str:
        return str(self.data.get("access_token") or "")

    @property
    def resource_url(self) -> str | None:
        value = self.data.get("resource_url")
        return str(value) if value else None

    def needs_refresh(self, ahead: float = 0.0) -> bool:
        """No token, a token Qwen rejected, or one that expires within 30 seconds (plus `ahead`, for
        the background refresh that replaces it before any request would)."""
        token = self.access_token
        if not token or token in self._rejected:
            return True
        expiry = self.data.get("expiry_date")
        margin = REFRESH_BUFFER_MS + ahead * 1000
        return isinstance(expiry, (int, float)) and expiry - self.clock() * 1000 < margin

    def reject(self, token: str) -> None:
        """Qwen answered 401 to `token`: the next refresh replaces it, exactly once."""
        self._rejected[token] = self.clock()

    def fresh(self, within: float = RECENT_REJECTION_S) -> bool:
        """Whether this process got the current token from Qwen within the last `within` seconds."""
        return self.refreshed_at is not None and self.clock() - self.refreshed_at < within

    async def refresh(self, http: httpx.AsyncClient, force: bool = False) -> None:
        """Refresh if expiring; with `force`, also replace the current token, unless a 401 was just
        recorded against some token (then that record decides: several requests failing with one token
        cause one refresh)."""
        if force and not any(self.clock() - at < RECENT_REJECTION_S for at in self._rejected.values()):
            self.reject(self.access_token)
        if self.needs_refresh():
            await self._flight.run(lambda: self._refresh_once(http))

    async def refresh_if_needed(self, http: httpx.AsyncClient, ahead: float) -> None:
        """The background refresh (`llmbridge.probes`): a token that expires within the margin plus
        `ahead` seconds is replaced now, through the same single flight and lock."""
        if self.needs_refresh(ahead):
            await self._flight.run(lambda: self._refresh_once(http, ahead))

    async def _refresh_once(self, http: httpx.AsyncClient, ahead: float = 0.0) -> None:
        if not self.needs_refresh(ahead):
            return  # another flight, or Qwen Code itself, already refreshed the file
        lock = await acquire_lock(self.lock_path)
        try:
            self._mtime = None  # re-read: Qwen Code may have refreshed while we waited for the lock
            if self.needs_refresh(ahead):
                await self._refresh_locked(http)
        finally:
            release_lock(self.lock_path, lock)

    @property
    def lock_path(self) -> Path:
        """`oauth_creds.lock` beside `oauth_creds.json`, as Qwen Code names it."""
        return self.path.with_name(self.path.stem + ".lock")

    async def _refresh_locked(self, http: httpx.AsyncClient) -> None:
        refresh_token = self.data.get("refresh_token")
        if not refresh_token:
            raise AccountUnusable(f"{self.path} has no refresh_token; {RELOGIN_HINT}")
        answer = await self._post(http, str(refresh_token))
        updated = self._merge(answer)
        write_json_atomic(self.path, updated)  # on disk before use: a rotated refresh token is never lost
        self._data = updated
        self._mtime = self._stat()
        self.refreshed_at = self.clock()
        self.refresh_count += 1

    async def _post(self, http: httpx.AsyncClient, refresh_token: str) -> dict[str, Any]:
        form = {"grant_type": "refresh_token", "refresh_token": refresh_token, "client_id": CLIENT_ID}
        headers = {"Content-Type": "application/x-www-form-urlencoded", "Accept": "application/json"}
        try:
            response = await http.post(self.token_url, data=form, headers=headers)
        except httpx.TimeoutException as e:
            raise UpstreamTimeout(f"the Qwen token refresh timed out ({type(e).__name__})") from e
        except httpx.TransportError as e:
            raise UpstreamUnavailable(f"cannot reach the Qwen token endpoint {self.token_url}: {e}") from e
        return token_answer(response, self.path)

    def _merge(self, answer: dict[str, Any]) -> dict[str, Any]:
        """The file's fields with the new token; the old refresh token and resource_url stay when the
        answer carries none (Qwen rotates the refresh token only sometimes)."""
        updated = dict(self.data)
        updated["access_token"] = answer["access_token"]
        updated["expiry_date"] = int(self.clock() * 1000 + float(answer.get("expires_in") or 3600) * 1000)
        for key in ("refresh_token", "token_type", "resource_url"):
            if answer.get(key):
                updated[key] = answer[key]
        return updated

    def _reload_if_changed(self) -> None:
        """Re-read the file when it changed on disk (Qwen Code may have refreshed it itself); a file that
        vanished or is half-written keeps the copy in memory (it was valid a moment ago)."""
        mtime = self._stat()
        if self._data is not None and mtime == self._mtime:
            return
        try:
            self._data = read_json(self.path)
        except (OSError, ValueError) as e:
            if self._data is None:
                message = f"cannot read the Qwen Code credentials {self.path}: {e}; {RELOGIN_HINT}"
                raise AccountUnusable(message) from None
        self._mtime = mtime

    def _stat(self) -> int | None:
        try:
            return self.path.stat().st_mtime_ns
        except FileNotFoundError:
            return None


async def acquire_lock(path: Path) -> str:
    """Create the lock file exclusively (Qwen Code's protocol); wait with back-off while another
    process holds it, and remove it when it is stale. Returns the id written into it."""
    lock_id, wait = str(uuid.uuid4()), LOCK_FIRST_WAIT_S
    path.parent.mkdir(parents=True, exist_ok=True)
    for _ in range(LOCK_ATTEMPTS):
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            if _remove_if_stale(path):
                continue
            await asyncio.sleep(wait)
            wait = min(wait * 1.5, LOCK_MAX_WAIT_S)
            continue
        with os.fdopen(fd, "w") as f:
            f.write(lock_id)
        return lock_id
    raise UpstreamUnavailable(
        f"another process (Qwen Code?) has been refreshing the token in {path.parent} for too long: "
        f"{path} is still held; retry, or remove it if no Qwen Code is running"
    )


def _remove_if_stale(path: Path) -> bool:
    try:
        if time.time() - path.stat().st_mtime <= LOCK_STALE_S:
            return False
        aside = path.with_name(f"{path.name}.stale.{uuid.uuid4()}")
        os.rename(path, aside)  # as Qwen Code does: only one of two processes removes it
        aside.unlink()
    except OSError:
        pass  # gone meanwhile, or another process removed it: try to create it again
    return True


def release_lock(path: Path, lock_id: str) -> None:
    """Remove the lock file if it is still ours (a stale-lock removal may have given it to another)."""
    try:
        if path.read_text() == lock_id:
            path.unlink()
    except OSError:
        pass


def token_answer(response: httpx.Response, path: Path) -> dict[str, Any]:
    """The token endpoint's answer, or the error it means: 400/401 is a dead refresh token."""
    try:
        body = response.json()
    except ValueError:
        body = {}
    if not isinstance(body, dict):
        body = {}
    if response.status_code in (400, 401):
        error = str(body.get("error") or "rejected")
        description = body.get("error_description") or ""
        raise AccountUnusable(
            f"Qwen refused to refresh the token in {path} ({error}: {description}); the refresh token is "
            f"no longer valid: {RELOGIN_HINT}",
            code=error,
        )
    if response.status_code >= 400 or body.get("error") or not body.get("access_token"):
        detail = body.get("error_description") or body.get("error") or ""
        raise UpstreamUnavailable(f"the Qwen token refresh failed with HTTP {response.status_code} {detail}".rstrip())
    return body
