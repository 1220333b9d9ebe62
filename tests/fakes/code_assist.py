"""A fake Google Code Assist API (`v1internal`) plus Google OAuth token endpoint on 127.0.0.1.

As strict as the real service (rules in `code_assist_rules.py`): unknown fields anywhere, wrong or
non-alternating roles, empty contents, a functionResponse without its functionCall, a Gemini 3 model
turn whose first functionCall has no thoughtSignature, a thoughtSignature it issued coming back on
another kind of part (a function call's must come back on that call), a stale access token (401) and a
wrong project (403) are all rejected with google.rpc.Status bodies. With `known_signatures_only`, a
signature it never issued (another provider's) is refused too, as the real service refuses it.

    with FakeCodeAssist() as fake:
        creds = fake.write_credentials(tmp_path / "oauth_creds.json")
        fake.enqueue(text_reply("Hello", "world"), error_reply(429, ...))
        ... account base_url=fake.base_url, token_url=fake.token_url ...
        fake.requests, fake.generate_requests, fake.refresh_count

With no reply queued, a generate call answers "Hello from the fake Code Assist.". For end-to-end runs
of the real bridge, either set the account's `project` to `fake.project`, or leave it out and keep
`onboard_polls=0` (the provider polls onboarding every 5 s, as the CLI does).

Replies go out as the real stream does: SSE `data: <envelope>` events with CRLF delimiters, the
envelope being `{"response": {...}, "traceId": ...}`.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable

from tests.fakes.code_assist_rules import (
    Ledger,
    Rejected,
    check_count_tokens,
    check_generate,
    check_signatures,
    issue_signatures,
)

CLIENT_ID = "681255809395-oo8ft2oprdrnp9e3aqf6av3hmdib135j.apps.googleusercontent.com"
CLIENT_SECRET = "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"
KNOWN_MODELS = {
    "gemini-2.5-pro",
    "gemini-2.5-flash",
    "gemini-2.5-flash-lite",
    "gemini-3-pro-preview",
    "gemini-3.1-pro-preview",
    "gemini-3.1-pro-preview-customtools",
    "gemini-3-flash-preview",
    "gemini-3-flash",
    "gemini-3.1-flash-lite",
    "gemma-4-31b-it",
    "gemma-4-26b-a4b-it",
}
STATUS_NAMES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    429: "RESOURCE_EXHAUSTED",
    499: "CANCELLED",
    503: "UNAVAILABLE",
}
UNAUTHENTICATED = (
    "Request had invalid authentication credentials. Expected OAuth 2 access token, login "
    "cookie or other valid authentication credential."
)


# --- scripted replies ------------------------------------------------------------------------------


@dataclass
class Reply:
    """One scripted answer to a generate call: response chunks (inner `response` objects, or
    `{"error": ...}` for a mid-stream error), or an HTTP error with its body."""

    chunks: list[dict[str, Any]] = field(default_factory=list)
    status: int = 200
    body: Any = None  # the error body for status != 200
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0  # seconds before each chunk
    abort: bool = False  # drop the connection after the chunks (no terminating HTTP chunk)


def _parts_chunk(parts: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "candidates": [{"content": {"role": "model", "parts": parts}}],
        "usageMetadata": {"trafficType": "ON_DEMAND"},
    }


def _final(chunk: dict[str, Any], finish: str, usage: dict[str, Any] | None) -> dict[str, Any]:
    chunk["candidates"][0]["finishReason"] = finish
    chunk["usageMetadata"] = usage or {
        "promptTokenCount": 12,
        "candidatesTokenCount": 5,
        "totalTokenCount": 17,
        "trafficType": "ON_DEMAND",
    }
    return chunk


def text_reply(
    *deltas: str,
    thoughts: tuple[str, ...] = (),
    signature: str | None = None,
    finish: str = "STOP",
    usage: dict[str, Any] | None = None,
    **kw: Any,
) -> Reply:
    """Thought chunks (the last one signed), then one chunk per text delta, the last with finishReason."""
    chunks = [_parts_chunk([{"text": t, "thought": True}]) for t in thoughts]
    if chunks and signature:
        chunks[-1]["candidates"][0]["content"]["parts"][0]["thoughtSignature"] = signature
    chunks += [_parts_chunk([{"text": d}]) for d in deltas or ("",)]
    _final(chunks[-1], finish, usage)
    return Reply(chunks=chunks, **kw)


def tool_call_reply(
    name: str,
    args: dict[str, Any],
    *,
    signature: str | None = None,
    call_id: str | None = None,
    text: str | None = None,
    **kw: Any,
) -> Reply:
    """Optional text, then one whole functionCall part (as Gemini sends them), then STOP."""
    call: dict[str, Any] = {"name": name, "args": args}
    if call_id:
        call["id"] = call_id
    part: dict[str, Any] = {"functionCall": call}
    if signature:
        part["thoughtSignature"] = signature
    chunks = [_parts_chunk([{"text": text}])] if text else []
    chunks.append(_parts_chunk([part]))
    _final(chunks[-1], "STOP", None)
    return Reply(chunks=chunks, **kw)


def rpc_error(code: int, message: str, status: str, details: list[dict[str, Any]] | None = None) -> dict:
    error: dict[str, Any] = {"code": code, "message": message, "status": status}
    if details:
        error["details"] = details
    return {"error": error}


def error_reply(status: int, body: dict[str, Any] | str, **kw: Any) -> Reply:
    """An HTTP error: a google.rpc.Status body, or a message wrapped into one."""
    if isinstance(body, str):
        body = rpc_error(status, body, STATUS_NAMES.get(status, "INTERNAL"))
    return Reply(status=status, body=body, **kw)


def cut_reply(*deltas: str, abort: bool = False, **kw: Any) -> Reply:
    """Text chunks and then the end of the body with no finishReason (or a dropped connection)."""
    return Reply(chunks=[_parts_chunk([{"text": d}]) for d in deltas], abort=abort, **kw)


def midstream_error_reply(
    *deltas: str, code: int = 500, message: str = "Internal error encountered.", status: str = "INTERNAL"
) -> Reply:
    chunks = [_parts_chunk([{"text": d}]) for d in deltas]
    return Reply(chunks=chunks + [rpc_error(code, message, status)])


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: Any  # parsed JSON, the form fields of /token, or None


# --- the server ------------------------------------------------------------------------------------


class FakeCodeAssist:
    def __init__(
        self,
        project: str = "fake-project-0001",
        tier: str = "free-tier",
        onboarded: bool = True,
        onboard_polls: int = 2,
        expires_in: int = 3600,
    ) -> None:
        self.project = project
        self.tier = tier
        self.onboarded = onboarded
        self.onboard_polls = onboard_polls  # GET polls before the onboarding operation is done
        self.ineligible_tiers: list[dict[str, Any]] = []
        self.expires_in = expires_in
        self.replies: list[Reply] = []
        self.default: Reply | None = None
        # When set, chooses the reply to a generate call from its body before the queue (None: the queue).
        self.responder: Callable[[Any], Reply | None] | None = None
        self.requests: list[Recorded] = []
        self.rejections: list[str] = []  # messages of the generate calls it refused
        self.refresh_count = 0
        self.token_error: tuple[int, dict[str, Any]] | None = None  # next /token answer, when set
        self.token_delay = 0.0
        self.access_tokens: set[str] = set()
        self.signatures: Ledger = {}  # thoughtSignatures handed out in replies
        self.known_signatures_only = False
        self.refresh_tokens: set[str] = set()
        self._polls: dict[str, int] = {}
        self._serial = 0
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)

    # --- what tests use --------------------------------------------------------------------------

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    @property
    def base_url(self) -> str:
        return self.origin

    @property
    def token_url(self) -> str:
        return self.origin + "/token"

    def __enter__(self) -> FakeCodeAssist:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()

    def enqueue(self, *replies: Reply) -> None:
        with self.lock:
            self.replies.extend(replies)

    def write_credentials(self, path: Path, expired: bool = False, **extra: Any) -> dict[str, Any]:
        """An oauth_creds.json as the Gemini CLI writes it, holding tokens this server accepts."""
        access, refresh = self.new_access_token(), f"1//fake-refresh-{self._next()}"
        with self.lock:
            self.refresh_tokens.add(refresh)
        expiry = time.time() * 1000 + (-60_000 if expired else self.expires_in * 1000)
        data = {
            "access_token": access,
            "refresh_token": refresh,
            "scope": "https://www.googleapis.com/auth/cloud-platform openid",
            "token_type": "Bearer",
            "id_token": "eyJfake.id.token",
            "expiry_date": int(expiry),
            **extra,
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(data, indent=2))
        path.chmod(0o600)
        return data

    def new_access_token(self) -> str:
        token = f"ya29.fake-access-{self._next()}"
        with self.lock:
            self.access_tokens.add(token)
        return token

    def revoke_access_tokens(self) -> None:
        """Every access token issued so far becomes stale (the next call gets 401)."""
        with self.lock:
            self.access_tokens.clear()

    @property
    def generate_requests(self) -> list[dict[str, Any]]:
        return [r.body for r in self.requests if "generatecontent" in r.path.lower()]

    def calls(self, fragment: str) -> list[Recorded]:
        return [r for r in self.requests if fragment in r.path]

    # --- internals --------------------------------------------------------------------------------

    def _next(self) -> int:
        with self.lock:
            self._serial += 1
            return self._serial

    def next_reply(self, body: Any = None) -> Reply:
        if self.responder is not None and (chosen := self.responder(body)) is not None:
            return chosen
        with self.lock:
            if self.replies:
                return self.replies.pop(0)
        return self.default or text_reply("Hello from the fake Code Assist.")

    def token(self, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        time.sleep(self.token_delay)
        with self.lock:
            self.refresh_count += 1
            if self.token_error:
                error, self.token_error = self.token_error, None
                return error
        if (
            form.get("grant_type") != "refresh_token"
            or form.get("client_id") != CLIENT_ID
            or form.get("client_secret") != CLIENT_SECRET
        ):
            return 401, {"error": "invalid_client", "error_description": "Unauthorized"}
        if form.get("refresh_token") not in self.refresh_tokens:
            return 400, {"error": "invalid_grant", "error_description": "Token has been expired or revoked."}
        return 200, {
            "access_token": self.new_access_token(),
            "expires_in": self.expires_in,
            "scope": "https://www.googleapis.com/auth/cloud-platform openid",
            "token_type": "Bearer",
            "id_token": "eyJfake.id.token.refreshed",
        }

    def authorized(self, headers: dict[str, str]) -> bool:
        token = headers.get("authorization", "").removeprefix("Bearer ")
        with self.lock:
            return token in self.access_tokens

    def load_code_assist(self, body: Any) -> tuple[int, dict[str, Any]]:
        if self.ineligible_tiers:
            return 200, {"ineligibleTiers": self.ineligible_tiers}
        tier = {"id": self.tier, "name": self.tier, "isDefault": True}
        if self.onboarded:
            return 200, {"currentTier": tier, "allowedTiers": [tier], "cloudaicompanionProject": self.project}
        return 200, {"allowedTiers": [tier]}

    def retrieve_user_quota(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        reset = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 86400))
        buckets = [
            {
                "remainingAmount": "1000",
                "remainingFraction": 1,
                "resetTime": reset,
                "tokenType": "REQUESTS",
                "modelId": m,
            }
            for m in sorted(KNOWN_MODELS)
            if m.startswith("gemini-")
        ]
        return 200, {"buckets": buckets}

    def list_experiments(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        return 200, {"experimentIds": [], "flags": []}

    def onboard(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        if body.get("tierId") == "free-tier" and body.get("cloudaicompanionProject"):
            return 400, rpc_error(400, "Precondition Failed", "FAILED_PRECONDITION")
        name = f"operations/onboard-{self._next()}"
        with self.lock:
            self._polls[name] = 0
        return 200, self.operation(name, count=False)

    def operation(self, name: str, count: bool = True) -> dict[str, Any]:
        with self.lock:
            if name not in self._polls:
                return {}
            self._polls[name] += int(count)
            done = self._polls[name] >= self.onboard_polls
            if done:
                self.onboarded = True
        if not done:
            return {"name": name, "done": False}
        return {
            "name": name,
            "done": True,
            "response": {"cloudaicompanionProject": {"id": self.project, "name": self.project}},
        }

    def check_generate(self, body: Any) -> tuple[int, dict[str, Any]] | None:
        try:
            model = body.get("model") if isinstance(body, dict) else None
            check_generate(body, gemini3=str(model).startswith("gemini-3"))
            with self.lock:
                check_signatures(body["request"].get("contents"), self.signatures, self.known_signatures_only)
        except Rejected as e:
            return e.status, rpc_error(e.status, e.message, e.google_status)
        if model not in KNOWN_MODELS:
            return 404, rpc_error(404, "Requested entity was not found.", "NOT_FOUND")
        if body.get("project") != self.project or not self.onboarded:
            return 403, rpc_error(
                403, f"Permission denied on resource project {body.get('project')}.", "PERMISSION_DENIED"
            )
        return None

    def issue(self, reply: Reply) -> None:
        with self.lock:
            for chunk in reply.chunks:
                for candidate in chunk.get("candidates", [])[:1]:
                    issue_signatures(self.signatures, candidate.get("content", {}).get("parts", []))

    def count_tokens(self, body: Any) -> tuple[int, dict[str, Any]]:
        try:
            check_count_tokens(body)
        except Rejected as e:
            return e.status, rpc_error(e.status, e.message, e.google_status)
        text = json.dumps(body["request"]["contents"])
        return 200, {"totalTokens": max(1, len(text) // 4)}


def envelope(chunk: dict[str, Any], model: str, trace: str) -> bytes:
    if "error" in chunk:
        return json.dumps(chunk).encode()
    response = {**chunk, "modelVersion": chunk.get("modelVersion", model)}
    return json.dumps({"response": response, "traceId": trace}, ensure_ascii=False).encode()


def merged(reply: Reply, model: str, trace: str) -> dict[str, Any]:
    """A non-stream answer: the chunks' parts joined, the last chunk's finish and usage."""
    parts = [
        p
        for c in reply.chunks
        for cand in c.get("candidates", [])[:1]
        for p in cand.get("content", {}).get("parts", [])
    ]
    last = reply.chunks[-1] if reply.chunks else {"candidates": [{}]}
    rest = {k: v for k, v in last["candidates"][0].items() if k != "content"}
    candidate = {"content": {"role": "model", "parts": parts}, **rest}
    return {
        "response": {"candidates": [candidate], "usageMetadata": last.get("usageMetadata", {}), "modelVersion": model},
        "traceId": trace,
    }


def _handler(fake: FakeCodeAssist) -> type[BaseHTTPRequestHandler]:
    from tests.fakes.code_assist_handler import make_handler

    return make_handler(fake)
