"""Strict fake OAuth servers for `llmbridge login`, on 127.0.0.1.

* `FakeGoogleOAuth`: Google's consent page (`GET /auth`, which redirects to the loopback with code and
  state, as Google does once the person agrees) and token endpoint (`POST /token`: the authorization
  code exchange, checking the client, the redirect URI and the PKCE verifier; refresh grants go to the
  `FakeCodeAssist` it serves, so the tokens it issues are the ones Code Assist accepts).
* `FakeQwenOAuth`: Qwen's device endpoint and token endpoint, with a script of poll answers
  (`pending`, `slow_down`, `expired`, `denied`, then approval).

Both refuse a parameter they do not know, as the real servers reject malformed requests.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from llmbridge.providers.gemini_cli.credentials import CLIENT_ID as GOOGLE_CLIENT_ID
from llmbridge.providers.gemini_cli.credentials import CLIENT_SECRET as GOOGLE_CLIENT_SECRET
from llmbridge.providers.qwen.login import CLIENT_ID as QWEN_CLIENT_ID
from llmbridge.providers.qwen.login import DEVICE_GRANT
from llmbridge.providers.qwen.login import SCOPE as QWEN_SCOPE
from tests.fakes.code_assist import FakeCodeAssist
from tests.fakes.loopback import LoopbackFake

GOOGLE_SCOPES = {
    "https://www.googleapis.com/auth/cloud-platform",
    "https://www.googleapis.com/auth/userinfo.email",
    "https://www.googleapis.com/auth/userinfo.profile",
}
AUTH_PARAMS = {
    "redirect_uri",
    "access_type",
    "scope",
    "code_challenge_method",
    "code_challenge",
    "state",
    "response_type",
    "client_id",
}


def s256(verifier: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()


def form_of(handler: BaseHTTPRequestHandler) -> dict[str, str]:
    length = int(handler.headers.get("content-length") or 0)
    raw = handler.rfile.read(length).decode() if length else ""
    return {k: v[0] for k, v in parse_qs(raw, keep_blank_values=True).items()}


def reply_json(handler: BaseHTTPRequestHandler, status: int, body: dict[str, Any]) -> None:
    data = json.dumps(body).encode()
    handler.send_response(status)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(data)))
    handler.end_headers()
    handler.wfile.write(data)


def id_token(email: str) -> str:
    """An unsigned JWT carrying the email claim (the login reads the address, never trusts it)."""

    def part(value: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'none'})}.{part({'email': email, 'sub': '1234'})}.sig"


# --- Google ---------------------------------------------------------------------------------------


@dataclass
class Grant:
    redirect_uri: str
    challenge: str
    used: bool = False


class FakeGoogleOAuth(LoopbackFake[str]):
    """Replies queued with `enqueue` change what the next consent does: "deny" (error=access_denied),
    "wrong-state" (the redirect carries another state). Without one, the person agrees."""

    def __init__(self, code_assist: FakeCodeAssist, email: str = "someone@example.com") -> None:
        super().__init__()
        self.code_assist = code_assist
        self.email = email
        self.grants: dict[str, Grant] = {}
        self.auth_requests: list[dict[str, str]] = []
        self.token_forms: list[dict[str, str]] = []

    @property
    def auth_url(self) -> str:
        return self.origin + "/auth"

    @property
    def token_url(self) -> str:
        return self.origin + "/token"

    def consent(self, url: str) -> tuple[int, str]:
        """The consent page for `url`: (status, redirect location or error text)."""
        params = {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}
        self.auth_requests.append(params)
        problem = self._invalid_auth(params)
        if problem:
            return 400, problem
        back = {"state": params["state"]}
        outcome = self.pop_reply()
        if outcome == "deny":
            back = {"error": "access_denied", "state": params["state"]}
        else:
            code = f"4/fake-code-{secrets.token_hex(6)}"
            with self.lock:
                self.grants[code] = Grant(params["redirect_uri"], params["code_challenge"])
            back["code"] = code
            if outcome == "wrong-state":
                back["state"] = "not-the-state-that-was-sent"
        return 302, params["redirect_uri"] + "?" + urlencode(back)

    def code_for(self, url: str) -> str:
        """What the person copies from Google's authcode page in the no-browser flow."""
        status, location = self.consent(url)
        assert status == 302, location
        return parse_qs(urlsplit(location).query)["code"][0]

    def _invalid_auth(self, params: dict[str, str]) -> str | None:
        unknown = set(params) - AUTH_PARAMS
        if unknown:
            return f"unknown parameters {sorted(unknown)}"
        if params.get("client_id") != GOOGLE_CLIENT_ID:
            return "invalid_client"
        if params.get("response_type") != "code" or params.get("access_type") != "offline":
            return "response_type=code and access_type=offline required"
        if set(params.get("scope", "").split()) != GOOGLE_SCOPES:
            return f"wrong scopes {params.get('scope')}"
        if params.get("code_challenge_method") != "S256" or not params.get("code_challenge") or not params.get("state"):
            return "PKCE S256 and state required"
        return None

    def token(self, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        self.token_forms.append(form)
        if form.get("grant_type") == "refresh_token":
            return self.code_assist.token(form)
        expected = {"client_id", "code_verifier", "code", "grant_type", "redirect_uri", "client_secret"}
        if set(form) != expected or form["grant_type"] != "authorization_code":
            return 400, {"error": "invalid_request", "error_description": f"fields {sorted(form)}"}
        if form["client_id"] != GOOGLE_CLIENT_ID or form["client_secret"] != GOOGLE_CLIENT_SECRET:
            return 401, {"error": "invalid_client", "error_description": "Unauthorized"}
        with self.lock:
            grant = self.grants.get(form["code"])
            if grant is None or grant.used:
                return 400, {"error": "invalid_grant", "error_description": "Malformed auth code."}
            grant.used = True
        if grant.redirect_uri != form["redirect_uri"]:
            return 400, {"error": "redirect_uri_mismatch", "error_description": "Bad Request"}
        if s256(form["code_verifier"]) != grant.challenge:
            return 400, {"error": "invalid_grant", "error_description": "Invalid code verifier."}
        return 200, self._tokens()

    def _tokens(self) -> dict[str, Any]:
        refresh = f"1//fake-login-refresh-{secrets.token_hex(6)}"
        with self.code_assist.lock:
            self.code_assist.refresh_tokens.add(refresh)
        return {
            "access_token": self.code_assist.new_access_token(),
            "expires_in": 3599,
            "refresh_token": refresh,
            "scope": " ".join(sorted(GOOGLE_SCOPES)),
            "token_type": "Bearer",
            "id_token": id_token(self.email),
        }

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802
                if urlsplit(self.path).path != "/auth":
                    return reply_json(self, 404, {"error": "not_found"})
                status, text = fake.consent(self.path)
                if status != 302:
                    return reply_json(self, status, {"error": text})
                self.send_response(302)
                self.send_header("Location", text)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def do_POST(self) -> None:  # noqa: N802
                if self.path != "/token":
                    return reply_json(self, 404, {"error": "not_found"})
                reply_json(self, *fake.token(form_of(self)))

        return Handler


# --- Qwen -----------------------------------------------------------------------------------------


@dataclass
class DeviceGrant:
    challenge: str
    user_code: str
    polls: list[float] = field(default_factory=list)


class FakeQwenOAuth(LoopbackFake[str]):
    """Poll answers are queued with `enqueue("pending", "slow_down", ...)`; once the queue is empty
    the person has approved. "expired" answers expired_token, "denied" access_denied."""

    def __init__(self, resource_url: str = "portal.qwen.ai", expires_in: int = 600) -> None:
        super().__init__()
        self.resource_url = resource_url
        self.expires_in = expires_in
        self.device_forms: list[dict[str, str]] = []
        self.token_forms: list[dict[str, str]] = []
        self.grants: dict[str, DeviceGrant] = {}
        self.issued: dict[str, Any] | None = None
        self.refuse_device: tuple[int, dict[str, Any]] | None = None

    @property
    def device_url(self) -> str:
        return self.origin + "/api/v1/oauth2/device/code"

    @property
    def token_url(self) -> str:
        return self.origin + "/api/v1/oauth2/token"

    def device(self, form: dict[str, str], headers: dict[str, str]) -> tuple[int, dict[str, Any]]:
        self.device_forms.append(form)
        if self.refuse_device:
            return self.refuse_device
        if set(form) != {"client_id", "scope", "code_challenge", "code_challenge_method"}:
            return 400, {"error": "invalid_request", "error_description": f"fields {sorted(form)}"}
        if (
            form["client_id"] != QWEN_CLIENT_ID
            or form["scope"] != QWEN_SCOPE
            or form["code_challenge_method"] != "S256"
        ):
            return 400, {"error": "invalid_client"}
        if "x-request-id" not in headers:
            return 400, {"error": "invalid_request", "error_description": "x-request-id missing"}
        code = f"device-{secrets.token_hex(6)}"
        user_code = "ABCD-1234"
        with self.lock:
            self.grants[code] = DeviceGrant(form["code_challenge"], user_code)
        return 200, {
            "device_code": code,
            "user_code": user_code,
            "verification_uri": self.origin + "/authorize",
            "verification_uri_complete": f"{self.origin}/authorize?user_code={user_code}&client=qwen-code",
            "expires_in": self.expires_in,
        }

    def token(self, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        self.token_forms.append(form)
        if set(form) != {"grant_type", "client_id", "device_code", "code_verifier"}:
            return 400, {"error": "invalid_request", "error_description": f"fields {sorted(form)}"}
        if form["grant_type"] != DEVICE_GRANT or form["client_id"] != QWEN_CLIENT_ID:
            return 400, {"error": "unsupported_grant_type"}
        with self.lock:
            grant = self.grants.get(form["device_code"])
        if grant is None:
            return 400, {"error": "invalid_grant", "error_description": "unknown device code"}
        if s256(form["code_verifier"]) != grant.challenge:
            return 400, {"error": "invalid_grant", "error_description": "code_verifier does not match"}
        grant.polls.append(time.monotonic())
        return self._poll_answer()

    def _poll_answer(self) -> tuple[int, dict[str, Any]]:
        step = self.pop_reply()
        if step == "pending":
            return 400, {"error": "authorization_pending", "error_description": "The user has not approved yet"}
        if step == "slow_down":
            return 429, {"error": "slow_down", "error_description": "Polling too fast"}
        if step == "expired":
            return 400, {"error": "expired_token", "error_description": "The device code has expired"}
        if step == "denied":
            return 400, {"error": "access_denied", "error_description": "The user denied the request"}
        self.issued = {
            "access_token": f"qwen-access-{secrets.token_hex(6)}",
            "refresh_token": f"qwen-refresh-{secrets.token_hex(6)}",
            "token_type": "Bearer",
            "expires_in": 21600,
            "scope": QWEN_SCOPE,
            "resource_url": self.resource_url,
        }
        return 200, self.issued

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self
        lock = threading.Lock()

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802
                form = form_of(self)
                with lock:
                    if self.path == "/api/v1/oauth2/device/code":
                        headers = {k.lower(): v for k, v in self.headers.items()}
                        return reply_json(self, *fake.device(form, headers))
                    if self.path == "/api/v1/oauth2/token":
                        return reply_json(self, *fake.token(form))
                reply_json(self, 404, {"error": "not_found"})

        return Handler
