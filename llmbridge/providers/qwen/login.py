"""`llmbridge login qwen`: Qwen's OAuth device flow with PKCE, as Qwen Code 0.24.4 signs in
(`packages/core/src/qwen/qwenOAuth2.ts` in its bundle), writing `~/.qwen/oauth_creds.json` as it does.

    POST <device_url>  client_id, scope, code_challenge, code_challenge_method=S256
         -> device_code, user_code, verification_uri, verification_uri_complete, expires_in
    POST <token_url>   grant_type=urn:ietf:params:oauth:grant-type:device_code, client_id, device_code,
                       code_verifier, every 2 s until the person approves:
         400 authorization_pending -> keep polling (back to 2 s)
         429 slow_down             -> the interval grows 1.5x, up to 10 s
         expired_token / 401       -> the code expired: start again
         access_denied             -> the person (or Qwen) refused
         200                       -> access_token, refresh_token, token_type, expires_in, resource_url

The file holds exactly the CLI's fields in its order - access_token, refresh_token, token_type,
resource_url, expiry_date (ms) - those Qwen did not send left out, as JSON.stringify leaves them out.
Qwen discontinued its free OAuth tier on 2026-04-15: a refusal says so.
"""

from __future__ import annotations

import time
import uuid
import webbrowser
from dataclasses import dataclass
from typing import Any, Callable

import httpx

from llmbridge.login import LoginError, Progress, pkce_pair

OAUTH_BASE = "https://chat.qwen.ai"
DEVICE_URL = f"{OAUTH_BASE}/api/v1/oauth2/device/code"
TOKEN_URL = f"{OAUTH_BASE}/api/v1/oauth2/token"
CLIENT_ID = "f0304373b74a44d2b584a3fb70ca9e56"  # Qwen Code's public client (no secret)
SCOPE = "openid profile email model.completion"
DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
DEFAULT_OUT = "~/.qwen/oauth_creds.json"
POLL_SECONDS = 2.0
MAX_POLL_SECONDS = 10.0
FIELDS = ("access_token", "refresh_token", "token_type", "resource_url", "expiry_date")
TERMS = (
    "Note: Qwen discontinued its free OAuth tier on 2026-04-15; only accounts Qwen still serves this way can "
    "sign in (README, 'Read this first')."
)
DISCONTINUED = (
    "note: Qwen discontinued its free OAuth tier on 2026-04-15; an account without a paid plan cannot sign in "
    'this way (use a Coding Plan or an API key with provider = "openai")'
)


@dataclass
class QwenLogin:
    device_url: str = DEVICE_URL
    token_url: str = TOKEN_URL
    no_browser: bool = False
    poll_seconds: float = POLL_SECONDS


@dataclass
class DeviceCode:
    device_code: str
    user_code: str
    verification_uri: str
    verification_uri_complete: str
    expires_in: float


def sign_in(
    login: QwenLogin,
    say: Callable[[str], None],
    progress: Progress,
    open_browser: Callable[[str], bool] | None = None,
    sleep: Callable[[float], None] | None = None,
) -> dict[str, Any]:
    """The device flow up to the credentials to write (nothing is written here)."""
    verifier, challenge = pkce_pair(32)
    with httpx.Client(timeout=30) as http:
        device = request_device_code(http, login, challenge)
        say(
            f"To sign in to Qwen, open {device.verification_uri_complete}\n"
            f"(or {device.verification_uri} and enter the code {device.user_code}).\n"
        )
        if not login.no_browser and not (open_browser or webbrowser.open)(device.verification_uri_complete):
            say("(no browser could be started: open the URL above yourself)")
        tokens = poll_for_token(http, login, device, verifier, progress, sleep or time.sleep)
    return credentials_from(tokens)


def request_device_code(http: httpx.Client, login: QwenLogin, challenge: str) -> DeviceCode:
    form = {"client_id": CLIENT_ID, "scope": SCOPE, "code_challenge": challenge, "code_challenge_method": "S256"}
    headers = {"Accept": "application/json", "x-request-id": str(uuid.uuid4())}
    try:
        response = http.post(login.device_url, data=form, headers=headers)
    except httpx.HTTPError as e:
        raise LoginError(f"cannot reach Qwen's device endpoint {login.device_url}: {e}") from None
    body = _json_object(response)
    if response.status_code != 200 or not body.get("device_code"):
        raise LoginError(f"Qwen refused to start the sign-in ({_describe(response, body)}); {DISCONTINUED}")
    try:
        return DeviceCode(
            device_code=str(body["device_code"]),
            user_code=str(body["user_code"]),
            verification_uri=str(body["verification_uri"]),
            verification_uri_complete=str(body.get("verification_uri_complete") or body["verification_uri"]),
            expires_in=float(body["expires_in"]),
        )
    except (KeyError, TypeError, ValueError):
        raise LoginError(f"Qwen's device answer lacks a field the flow needs: {sorted(body)}") from None


def poll_for_token(
    http: httpx.Client,
    login: QwenLogin,
    device: DeviceCode,
    verifier: str,
    progress: Progress,
    sleep: Callable[[float], None],
) -> dict[str, Any]:
    """Polls until approved; LoginError when refused or expired. The deadline is the code's lifetime."""
    form = {
        "grant_type": DEVICE_GRANT,
        "client_id": CLIENT_ID,
        "device_code": device.device_code,
        "code_verifier": verifier,
    }
    interval, started = login.poll_seconds, time.monotonic()
    while time.monotonic() - started < device.expires_in:
        response = _post_token(http, login, form)
        body = _json_object(response)
        error = body.get("error")
        if response.status_code == 200 and body.get("access_token"):
            progress.end("Approved.")
            return body
        if response.status_code == 400 and error == "authorization_pending":
            interval = login.poll_seconds
        elif response.status_code == 429 and error == "slow_down":
            interval = min(interval * 1.5, max(MAX_POLL_SECONDS, login.poll_seconds))
        else:
            progress.end("Stopped.")
            raise _poll_failure(response, body)
        progress.tick(time.monotonic() - started, "slowing down" if error == "slow_down" else "")
        sleep(interval)
    progress.end("Expired.")
    raise LoginError("the sign-in code expired before it was approved; run the command again")


def _post_token(http: httpx.Client, login: QwenLogin, form: dict[str, str]) -> httpx.Response:
    try:
        return http.post(login.token_url, data=form, headers={"Accept": "application/json"})
    except httpx.HTTPError as e:
        raise LoginError(f"cannot reach Qwen's token endpoint {login.token_url}: {e}") from None


def _poll_failure(response: httpx.Response, body: dict[str, Any]) -> LoginError:
    error = body.get("error")
    if error == "expired_token" or response.status_code == 401:
        return LoginError("the sign-in code expired before it was approved; run the command again")
    if error == "access_denied":
        return LoginError(f"the sign-in was declined ({_describe(response, body)}); {DISCONTINUED}")
    return LoginError(f"Qwen refused the sign-in ({_describe(response, body)}); {DISCONTINUED}")


def credentials_from(tokens: dict[str, Any]) -> dict[str, Any]:
    """Qwen Code's `oauth_creds.json` from a token answer; refused without a refresh token, which
    Qwen Code itself would treat as an invalid file."""
    if not tokens.get("refresh_token"):
        raise LoginError("Qwen's answer has no refresh token, so the login could not last; run the command again")
    expires_in = tokens.get("expires_in")
    values = {
        "access_token": tokens.get("access_token"),
        "refresh_token": tokens.get("refresh_token"),
        "token_type": tokens.get("token_type"),
        "resource_url": tokens.get("resource_url"),
        "expiry_date": int(time.time() * 1000 + float(expires_in) * 1000) if expires_in else None,
    }
    return {key: values[key] for key in FIELDS if values[key] is not None}


def account_entry(name: str, path: str, login: QwenLogin) -> dict[str, object]:
    return {
        "name": name,
        "provider": "qwen",
        "credentials": path,
        "token_url": None if login.token_url == TOKEN_URL else login.token_url,
    }


def _describe(response: httpx.Response, body: dict[str, Any]) -> str:
    error = body.get("error") or f"HTTP {response.status_code}"
    description = body.get("error_description") or body.get("message") or ""
    return f"{error}: {description}" if description else str(error)


def _json_object(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}
