"""`llmbridge login gemini-cli`: Google's OAuth for installed apps, as Gemini CLI 0.61.0 signs in
(`packages/core/src/code_assist/oauth2.ts` in its bundle), then project discovery and onboarding
exactly as the provider does (`setup.discover_project`), then `oauth_creds.json` as the CLI writes it.

* Browser: a loopback redirect `http://127.0.0.1:<port>/oauth2callback`, a random 32-byte hex `state`,
  `access_type=offline` and the CLI's three scopes. The CLI adds PKCE only to its no-browser flow; we
  add it here too (Google accepts S256 from installed apps), so an intercepted code is useless alone.
* `--no-browser`: the CLI's user-code flow: redirect `https://codeassist.google.com/authcode`, PKCE
  S256, and the code (or the whole redirect URL) pasted back.
* The code is exchanged as google-auth-library does: form `client_id, code_verifier, code, grant_type,
  redirect_uri, client_secret`; the answer is stored with `expires_in` turned into `expiry_date` (ms).

Nothing is written until Google's token answer is in hand and Code Assist accepted the account: an
ineligible account (Google names the tier and why) leaves no file.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import secrets
import time
import webbrowser
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable
from urllib.parse import urlencode, urlsplit

import httpx

from llmbridge.errors import BridgeError
from llmbridge.login import LoginError, LoopbackRedirect, code_from_paste, code_from_redirect, pkce_pair
from llmbridge.providers.gemini_cli import client
from llmbridge.providers.gemini_cli.credentials import CLIENT_ID, CLIENT_SECRET, TOKEN_URL
from llmbridge.providers.gemini_cli.errors import classify
from llmbridge.providers.gemini_cli.models import KNOWN_MODELS
from llmbridge.providers.gemini_cli.provider import API_VERSION, DEFAULT_BASE_URL
from llmbridge.providers.gemini_cli.setup import ProjectInfo, discover_project

AUTH_URL = "https://accounts.google.com/o/oauth2/v2/auth"
USER_CODE_REDIRECT = "https://codeassist.google.com/authcode"
SCOPES = (
    "https://www.googleapis.com/auth/cloud-platform",
    "https://www.googleapis.com/auth/userinfo.email",
    "https://www.googleapis.com/auth/userinfo.profile",
)
DEFAULT_OUT = "~/.gemini/oauth_creds.json"
SIGN_IN_TIMEOUT = 300.0  # the CLI gives up after 5 minutes too
VENDOR = "Google"
TERMS = (
    "Note: Google's terms forbid reaching Code Assist with the Gemini CLI's login from other software, and Google "
    "may suspend the account; consumer accounts are no longer served (README, 'Read this first')."
)


@dataclass
class GeminiLogin:
    """One sign-in's settings; `auth_url`, `token_url` and `base_url` are the real endpoints unless
    overridden (tests point them at fakes)."""

    auth_url: str = AUTH_URL
    token_url: str = TOKEN_URL
    base_url: str = DEFAULT_BASE_URL
    project: str | None = None
    no_browser: bool = False
    timeout: float = SIGN_IN_TIMEOUT
    onboard_poll_interval: float = 5.0


@dataclass
class GeminiLoginResult:
    credentials: dict[str, Any]
    project: ProjectInfo
    email: str | None


def authorization_url(login: GeminiLogin, redirect_uri: str, state: str, challenge: str) -> str:
    """The consent page URL, parameters in google-auth-library's order."""
    query = {
        "redirect_uri": redirect_uri,
        "access_type": "offline",
        "scope": " ".join(SCOPES),
        "code_challenge_method": "S256",
        "code_challenge": challenge,
        "state": state,
        "response_type": "code",
        "client_id": CLIENT_ID,
    }
    return f"{login.auth_url}?{urlencode(query)}"


def sign_in(
    login: GeminiLogin,
    say: Callable[[str], None],
    ask: Callable[[str], str],
    open_browser: Callable[[str], bool] | None = None,
) -> GeminiLoginResult:
    """The whole login, up to (not including) writing the file: sign-in, token exchange, project."""
    verifier, challenge = pkce_pair(96)  # google-auth-library's verifier is 96 random bytes
    state = secrets.token_hex(32)
    if login.no_browser:
        redirect_uri = USER_CODE_REDIRECT
        say(
            "Open this URL in a browser, sign in, and paste the code it shows:\n\n"
            + authorization_url(login, redirect_uri, state, challenge)
            + "\n"
        )
        code = code_from_paste(ask("Authorization code"), state, VENDOR)
    else:
        with LoopbackRedirect() as loopback:
            redirect_uri = loopback.redirect_uri
            url = authorization_url(login, redirect_uri, state, challenge)
            say(f"Opening the Google sign-in page in your browser. If it does not open, visit:\n\n{url}\n")
            if not (open_browser or webbrowser.open)(url):
                say("(no browser could be started: open the URL above yourself, or use --no-browser)")
            say("Waiting for the sign-in (Ctrl-C cancels)...")
            code = code_from_redirect(loopback.wait(login.timeout), state, VENDOR)
    credentials = exchange_code(login, code, verifier, redirect_uri)
    say("Finding the account's Code Assist project (a new account is onboarded first: up to a few minutes)...")
    project = asyncio.run(find_project(login, str(credentials["access_token"])))
    return GeminiLoginResult(credentials, project, email_of(credentials))


def exchange_code(login: GeminiLogin, code: str, verifier: str, redirect_uri: str) -> dict[str, Any]:
    """The token answer as the CLI stores it: `expires_in` replaced by `expiry_date` in ms."""
    form = {
        "client_id": CLIENT_ID,
        "code_verifier": verifier,
        "code": code,
        "grant_type": "authorization_code",
        "redirect_uri": redirect_uri,
        "client_secret": CLIENT_SECRET,
    }
    try:
        response = httpx.post(login.token_url, data=form, headers={"Accept": "application/json"}, timeout=30)
    except httpx.HTTPError as e:
        raise LoginError(f"cannot reach Google's token endpoint {login.token_url}: {e}") from None
    body = _json_object(response)
    if response.status_code != 200 or not body.get("access_token"):
        error = body.get("error") or f"HTTP {response.status_code}"
        raise LoginError(
            f"Google refused the authorization code ({error}: {body.get('error_description') or 'no details'}); "
            "nothing was saved: run the command again"
        )
    if not body.get("refresh_token"):
        raise LoginError("Google's answer has no refresh token, so the login could not last; run the command again")
    tokens = dict(body)
    expires_in = tokens.pop("expires_in", None)
    if isinstance(expires_in, (int, float)):
        tokens["expiry_date"] = int(time.time() * 1000 + expires_in * 1000)
    return tokens


async def find_project(login: GeminiLogin, access_token: str) -> ProjectInfo:
    """The provider's discovery and onboarding (`setup.discover_project`), with the CLI's headers."""
    api_base = login.base_url.rstrip("/").removesuffix("/" + API_VERSION) + "/" + API_VERSION
    model = KNOWN_MODELS[0].id
    async with httpx.AsyncClient(timeout=60) as http:

        async def call(method: str, path: str, body: dict[str, Any] | None) -> dict[str, Any]:
            url = api_base + path
            content = None if body is None else json.dumps(body, separators=(",", ":")).encode()
            headers = client.wire_headers(
                client.headers(access_token, model, stream=False), urlsplit(url).netloc, content
            )
            try:
                response = await http.send(httpx.Request(method, url, headers=headers, content=content))
            except httpx.HTTPError as e:
                raise LoginError(f"cannot reach Code Assist at {api_base}: {e}") from None
            if response.status_code >= 400:
                raise classify(response.status_code, response.content, response.headers.get("retry-after"))
            return _json_object(response)

        try:
            return await discover_project(call, login.project, poll_interval=login.onboard_poll_interval)
        except BridgeError as e:
            raise LoginError(f"{e.message}; nothing was saved") from None


def email_of(credentials: dict[str, Any]) -> str | None:
    """The account's address from the id_token's claims (shown to the user, never trusted for more)."""
    token = credentials.get("id_token")
    if not isinstance(token, str) or token.count(".") != 2:
        return None
    payload = token.split(".")[1]
    try:
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (ValueError, binascii.Error):
        return None
    email = claims.get("email") if isinstance(claims, dict) else None
    return email if isinstance(email, str) else None


def account_entry(name: str, path: Path, result: GeminiLoginResult, login: GeminiLogin) -> dict[str, object]:
    """The `[[accounts]]` values; endpoints only when not the real ones."""
    return {
        "name": name,
        "provider": "gemini-cli",
        "credentials": str(path),
        "project": result.project.project,
        "base_url": None if login.base_url == DEFAULT_BASE_URL else login.base_url,
        "token_url": None if login.token_url == TOKEN_URL else login.token_url,
    }


def _json_object(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}
