"""A strict fake of Qwen's OAuth API on 127.0.0.1: chat completions (`/v1/chat/completions`) and the
token endpoint (`/api/v1/oauth2/token`), scripted per test:

    with FakeQwen() as qwen:
        qwen.write_credentials(tmp_path / "oauth_creds.json")   # tokens this server accepts
        qwen.enqueue(Reply(deltas=[{"reasoning_content": "hm"}, {"content": "Hi"}]))
        qwen.enqueue(quota_exceeded())                            # 429 "Free allocated quota exceeded."
        account = {"provider": "qwen", "credentials": ..., "base_url": qwen.base_url,
                   "token_url": qwen.token_url}

Strict as the real service is known to be (wire-formats.md section 2, Qwen Code 0.24.4): a request
whose headers are not Qwen Code's (names, values, order), whose body has a field Qwen Code does not
send, whose `metadata` is not `{sessionId, promptId}`, whose cache markers are misplaced, or whose
tool messages answer no tool call is refused with 400 and the rule that fired is kept in
`rejections`. An unknown or stale bearer token gets 401 "invalid access token or token expired".

Refresh tokens rotate on every refresh and the old access token stops working. `dead_refresh` makes
the token endpoint answer 400 invalid_grant; `discontinued` makes every chat request 401 whatever the
token, as Qwen answers since its free tier ended. The streaming (and `Reply`) come from the fake
OpenAI upstream: cumulative content, `<think>` leaks, reasoning_content and tool-call fragments are
scripted as deltas.
"""

from __future__ import annotations

import json
import re
import time
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from tests.fakes.openai_upstream import KNOWN_FIELDS as OPENAI_FIELDS
from tests.fakes.openai_upstream import FakeOpenAI, Reply

CLIENT_ID = "f0304373b74a44d2b584a3fb70ca9e56"
BAD_TOKEN = "invalid access token or token expired"
QWEN_EXTRAS = {"metadata", "preserve_thinking", "enable_thinking", "vl_high_resolution_images", "reasoning_effort"}
KNOWN_FIELDS = (OPENAI_FIELDS - {"max_completion_tokens"}) | QWEN_EXTRAS
MESSAGE_FIELDS = {
    "system": {"role", "content"},
    "user": {"role", "content"},
    "assistant": {"role", "content", "tool_calls", "reasoning_content"},
    "tool": {"role", "content", "tool_call_id"},
}
PART_FIELDS = {"text": {"type", "text", "cache_control"}, "image_url": {"type", "image_url", "cache_control"}}
HEADER_ORDER = [  # captured from Qwen Code 0.24.4 (llmbridge/providers/qwen/client.py)
    "host",
    "connection",
    "accept",
    "authorization",
    "content-type",
    "user-agent",
    "x-dashscope-authtype",
    "x-dashscope-cachecontrol",
    "x-dashscope-useragent",
    "x-stainless-arch",
    "x-stainless-lang",
    "x-stainless-os",
    "x-stainless-package-version",
    "x-stainless-retry-count",
    "x-stainless-runtime",
    "x-stainless-runtime-version",
    "accept-language",
    "sec-fetch-mode",
    "accept-encoding",
    "content-length",
]
FIXED_HEADERS = {
    "accept": "application/json",
    "x-stainless-retry-count": "0",
    "x-stainless-lang": "js",
    "x-stainless-runtime": "node",
    "x-dashscope-cachecontrol": "enable",
    "content-type": "application/json",
    "accept-language": "*",
    "sec-fetch-mode": "cors",
    "accept-encoding": "gzip, deflate",  # Node's fetch over plain http
}
USER_AGENT = re.compile(r"^QwenCode/\d+\.\d+\.\d+\S* \([a-z0-9]+; [a-z0-9]+\)$")
EPHEMERAL = {"type": "ephemeral"}


def error_reply(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> Reply:
    """An error in the shape Qwen answers (OpenAI's)."""
    body = {"error": {"code": code, "message": message, "type": code}, "request_id": "fake-req-1"}
    return Reply(status=status, error_body=body, headers=headers or {})


def quota_exceeded() -> Reply:
    return error_reply(429, "insufficient_quota", "Free allocated quota exceeded.")


def insufficient_quota() -> Reply:
    return error_reply(403, "insufficient_quota", "You have exceeded your current quota.")


def rate_limited(seconds: int | None = None) -> Reply:
    headers = {"retry-after": str(seconds)} if seconds is not None else {}
    return error_reply(429, "rate_limit_exceeded", "Requests rate limit exceeded, please try again later.", headers)


def cumulative_reply(*texts: str, reasoning: str | None = None) -> Reply:
    """Content sent DashScope's cumulative way: each delta holds the whole text so far."""
    deltas: list[dict[str, Any]] = [{"reasoning_content": reasoning}] if reasoning else []
    so_far = ""
    for text in texts:
        so_far += text
        deltas.append({"content": so_far})
    return Reply(deltas=deltas, usage=usage())


def usage(prompt: int = 11, completion: int = 7, cached: int = 0) -> dict[str, Any]:
    raw: dict[str, Any] = {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }
    if cached:
        raw["prompt_tokens_details"] = {"cached_tokens": cached}
    return raw


class FakeQwen(FakeOpenAI):
    def __init__(self, expires_in: int = 3600) -> None:
        self.expires_in = expires_in
        self.access_tokens: set[str] = set()
        self.refresh_tokens: set[str] = set()
        self.refresh_requests: list[dict[str, Any]] = []
        self.header_orders: list[list[str]] = []
        self.dead_refresh = False
        self.discontinued = False
        # X-DashScope-AuthType values taken; the drift test adds "openai" (Qwen Code's API-key mode)
        self.auth_types = {"qwen-oauth"}
        self._counter = 0
        super().__init__(api_key=None)

    @property
    def token_url(self) -> str:
        return self.origin + "/api/v1/oauth2/token"

    @property
    def resource_url(self) -> str:
        """What Qwen puts in `resource_url`: the API host, without a scheme."""
        return self.origin.removeprefix("http://")

    def _next(self) -> int:
        with self.lock:
            self._counter += 1
            return self._counter

    def write_credentials(self, path: Path, expired: bool = False, **extra: Any) -> dict[str, Any]:
        """An oauth_creds.json as Qwen Code writes it, holding tokens this server accepts."""
        access, refresh = self.new_access_token(), f"fake-qwen-refresh-{self._next()}"
        with self.lock:
            self.refresh_tokens.add(refresh)
        expiry = time.time() * 1000 + (-60_000 if expired else self.expires_in * 1000)
        data = {
            "access_token": access,
            "token_type": "Bearer",
            "refresh_token": refresh,
            "resource_url": "portal.qwen.ai",
            "expiry_date": int(expiry),
            **extra,
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(data, indent=2))
        path.chmod(0o600)
        return data

    def new_access_token(self) -> str:
        token = f"fake-qwen-access-{self._next()}"
        with self.lock:
            self.access_tokens.add(token)
        return token

    def expire_access_tokens(self) -> None:
        """Every access token issued so far stops working (refresh tokens still do)."""
        with self.lock:
            self.access_tokens.clear()

    def validate(self, headers: dict[str, str], body: dict[str, Any]) -> tuple[int, str] | None:
        token = headers.get("authorization", "").removeprefix("Bearer ")
        if self.discontinued or token not in self.access_tokens:
            return 401, BAD_TOKEN
        problem = check_headers(headers, self.auth_types) or check_body(body)
        return (400, problem) if problem else None

    def check_order(self, names: list[str]) -> str | None:
        lowered = [n.lower() for n in names]
        return None if lowered == HEADER_ORDER else f"headers not in Qwen Code's order: {lowered}"

    def refresh(self, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        """The token endpoint: a form POST with Qwen Code's client id and a known refresh token."""
        with self.lock:
            self.refresh_requests.append(form)
        if form.get("grant_type") != "refresh_token" or form.get("client_id") != CLIENT_ID:
            return 400, {"error": "invalid_request", "error_description": "unknown client or grant"}
        if self.dead_refresh or form.get("refresh_token") not in self.refresh_tokens:
            return 400, {"error": "invalid_grant", "error_description": "Invalid refresh token"}
        refresh = f"fake-qwen-refresh-{self._next()}"
        with self.lock:
            self.refresh_tokens.discard(form["refresh_token"])
            self.refresh_tokens.add(refresh)
            self.access_tokens.clear()  # the old access token stops working
        return 200, {
            "access_token": self.new_access_token(),
            "token_type": "Bearer",
            "expires_in": self.expires_in,
            "refresh_token": refresh,
            "resource_url": "portal.qwen.ai",
        }

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self
        base: Any = super()._handler()

        class Handler(base):  # type: ignore[misc, valid-type]
            def do_POST(self) -> None:
                if self.path == "/api/v1/oauth2/token":
                    return self._token()
                if self.path != "/v1/chat/completions":
                    return self._json(404, {"error": {"message": f"no route {self.path}", "code": "not_found"}})
                order = fake.check_order(list(self.headers.keys()))
                with fake.lock:
                    fake.header_orders.append(list(self.headers.keys()))
                if order:
                    self.rfile.read(int(self.headers.get("content-length", 0)))
                    with fake.lock:
                        fake.requests.append({})
                        fake.headers.append({k.lower(): v for k, v in self.headers.items()})
                        fake.rejections.append(order)
                    return self._json(400, {"error": {"message": order, "code": "invalid_request"}})
                return super().do_POST()

            def _token(self) -> None:
                raw = self.rfile.read(int(self.headers.get("content-length", 0))).decode()
                if self.headers.get("content-type") != "application/x-www-form-urlencoded":
                    return self._json(400, {"error": "invalid_request", "error_description": "form expected"})
                form = {k: v[0] for k, v in parse_qs(raw).items()}
                status, answer = fake.refresh(form)
                self._json(status, answer)

        return Handler


def check_headers(headers: dict[str, str], auth_types: set[str]) -> str | None:
    for name, value in FIXED_HEADERS.items():
        if headers.get(name) != value:
            return f"header {name} is {headers.get(name)!r}, Qwen Code sends {value!r}"
    if headers.get("x-dashscope-authtype") not in auth_types:
        return f"x-dashscope-authtype {headers.get('x-dashscope-authtype')!r} is not one of {sorted(auth_types)}"
    agent = headers.get("user-agent", "")
    if not USER_AGENT.match(agent) or headers.get("x-dashscope-useragent") != agent:
        return f"user-agent {agent!r} is not Qwen Code's, or X-DashScope-UserAgent differs"
    return None


def check_body(body: dict[str, Any]) -> str | None:
    unknown = set(body) - KNOWN_FIELDS
    if unknown:
        return f"Unrecognized request argument supplied: {sorted(unknown)[0]}"
    if body.get("stream") is not True or body.get("stream_options") != {"include_usage": True}:
        return "Qwen Code always streams with stream_options.include_usage"
    if body.get("preserve_thinking") is not True:
        return "preserve_thinking missing"
    if body.get("model") in ("coder-model",) or str(body.get("model", "")).startswith("qwen"):
        metadata = body.get("metadata")
        if not isinstance(metadata, dict) or set(metadata) != {"sessionId", "promptId"}:
            return f"metadata must be {{sessionId, promptId}}, got {metadata!r}"
        # <session>########<n> for a user's prompt; <session>#<subagent>#<n> for Qwen Code's side agents
        if not str(metadata["promptId"]).startswith(f"{metadata['sessionId']}#"):
            return "promptId does not start with <sessionId>#"
    if "enable_thinking" in body and "reasoning_effort" in body:
        return "enable_thinking and reasoning_effort together"
    return check_messages(body.get("messages") or []) or check_tools(body.get("tools") or [])


def check_messages(messages: list[dict[str, Any]]) -> str | None:
    if not messages:
        return "messages must not be empty"
    open_calls: set[str] = set()
    for i, message in enumerate(messages):
        role = message.get("role")
        if role not in MESSAGE_FIELDS:
            return f"messages[{i}]: unknown role {role!r}"
        extra = set(message) - MESSAGE_FIELDS[role]
        if extra:
            return f"messages[{i}]: unknown field {sorted(extra)[0]}"
        if role == "assistant":
            open_calls |= {c["id"] for c in message.get("tool_calls") or []}
        if role == "tool" and message.get("tool_call_id") not in open_calls:
            return "messages with role 'tool' must be a response to a preceding tool_calls"
        marked = role == "system" or i == len(messages) - 1
        problem = check_content(i, message.get("content"), marked)
        if problem:
            return problem
    return None


def check_content(i: int, content: Any, marked: bool) -> str | None:
    """The system message and the last one come as parts, the last part marked; no other is marked."""
    if content is None or isinstance(content, str):
        return f"messages[{i}]: content must carry a cache_control marker" if marked and content is not None else None
    for part in content:
        fields = PART_FIELDS.get(part.get("type"))
        if fields is None or set(part) - fields:
            return f"messages[{i}]: malformed content part {sorted(part)}"
    markers = [j for j, part in enumerate(content) if "cache_control" in part]
    expected = [len(content) - 1] if marked else []
    if markers != expected or any(content[j]["cache_control"] != EPHEMERAL for j in markers):
        return f"messages[{i}]: cache_control markers at {markers}, Qwen Code puts them at {expected}"
    return None


def check_tools(tools: list[dict[str, Any]]) -> str | None:
    for i, tool in enumerate(tools):
        allowed = {"type", "function"} | ({"cache_control"} if i == len(tools) - 1 else set())
        if set(tool) - allowed or tool.get("type") != "function":
            return f"tools[{i}]: unexpected fields {sorted(set(tool) - allowed)}"
    if tools and tools[-1].get("cache_control") != EPHEMERAL:
        return "the last tool must carry cache_control"
    return None
