"""A strict fake of Kiro's runtime (`/generateAssistantResponse`) and both token refresh endpoints.

Runs on 127.0.0.1 (stdlib ThreadingHTTPServer in a background thread, port 0); use as a context
manager. It validates request bodies the way the real service is known to (anything off gets the
real 400 "Improperly formed request." body; the rule that fired is kept in `requests[i].rejection`),
checks the bearer token (a stale one gets 403 "The bearer token included in the request is
invalid."), and answers with real-looking AWS event streams (frames with correct CRCs, written by our
own encoder below) scripted per test:

    with FakeKiro() as kiro:
        kiro.enqueue(Text("Hel"), Text("lo"), ToolUse("Write", "t1", ['{"pa', 'th": "a"}']),
                     ContextUsage(2.5), Metering(0.02))
        kiro.enqueue(HttpError(429, {"message": "slow down", "reason": "USER_REQUEST_RATE_EXCEEDED"},
                               headers={"Retry-After": "3"}))
        kiro.write_token_file(tmp_path / "kiro-auth-token.json")   # matching credentials
        account = AccountConfig(name="k", provider="kiro", credentials=..., base_url=kiro.base_url,
                                token_url=kiro.social_refresh_url)

With an empty queue it answers a short text. Refresh tokens rotate on every refresh; the old access
token then becomes stale. `refresh_count`, `requests`, `refresh_requests` record what happened.
"""

from __future__ import annotations

import base64
import binascii
import json
import struct
import threading
import time
import zlib
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable
from urllib.parse import parse_qs

DEFAULT_PROFILE_ARN = "arn:aws:codewhisperer:us-east-1:699475941385:profile/EHGA3GRVQMUK"
KIRO_MODEL_IDS = frozenset(
    {
        "claude-sonnet-4.5",
        "claude-haiku-4.5",
        "claude-opus-4.5",
        "claude-sonnet-4",
        "claude-sonnet-4.6",
        "claude-opus-4.6",
        "auto",
    }
)
IMPROPER = {
    "__type": "com.amazon.kiro.runtimeservice#ValidationException",
    "message": "Improperly formed request.",
    "reason": "REQUEST_BODY_INVALID",
}
BAD_TOKEN = "The bearer token included in the request is invalid."


# --- the AWS event-stream encoder (our own; the provider decodes with botocore) -------------------


def encode_headers(headers: dict[str, str]) -> bytes:
    out = bytearray()
    for name, value in headers.items():
        raw_name, raw_value = name.encode(), value.encode()
        out += struct.pack(">B", len(raw_name)) + raw_name + b"\x07" + struct.pack(">H", len(raw_value))
        out += raw_value
    return bytes(out)


def encode_frame(headers: dict[str, str], payload: bytes) -> bytes:
    """One message: total length, headers length, prelude CRC, headers, payload, message CRC."""
    raw_headers = encode_headers(headers)
    total = 12 + len(raw_headers) + len(payload) + 4
    prelude = struct.pack(">II", total, len(raw_headers))
    prelude += struct.pack(">I", zlib.crc32(prelude) & 0xFFFFFFFF)
    body = prelude + raw_headers + payload
    return body + struct.pack(">I", zlib.crc32(body) & 0xFFFFFFFF)


def event_frame(event_type: str, payload: dict[str, Any]) -> bytes:
    return encode_frame(
        {":event-type": event_type, ":content-type": "application/json", ":message-type": "event"},
        json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode(),
    )


def exception_frame(exception_type: str, message: str) -> bytes:
    return encode_frame(
        {
            ":exception-type": exception_type,
            ":content-type": "application/json",
            ":message-type": "exception",
        },
        json.dumps({"message": message}).encode(),
    )


# --- script steps --------------------------------------------------------------------------------


@dataclass
class Text:
    content: str


@dataclass
class ToolUse:
    name: str
    tool_use_id: str
    fragments: list[str] = field(default_factory=list)  # raw pieces of the arguments JSON
    stop: bool = True


@dataclass
class Reasoning:
    text: str = ""
    signature: str | None = None
    redacted: str | None = None


@dataclass
class ContextUsage:
    percentage: float


@dataclass
class Metering:
    usage: float


@dataclass
class Metadata:
    token_usage: dict[str, int] | None = None
    stop_reason: str | None = None


@dataclass
class StreamException:
    exception_type: str = "ThrottlingException"
    message: str = "I am experiencing high traffic, please try again shortly."


@dataclass
class Event:
    """Any other event frame."""

    event_type: str
    payload: dict[str, Any]


@dataclass
class Delay:
    seconds: float


@dataclass
class RawBytes:
    """Bytes sent as they are (a corrupt or cut frame)."""

    data: bytes


@dataclass
class HttpError:
    status: int
    body: dict[str, Any] | str
    headers: dict[str, str] = field(default_factory=dict)


Step = Text | ToolUse | Reasoning | ContextUsage | Metering | Metadata | StreamException | Event | Delay | RawBytes


def render_step(step: Step) -> list[bytes | float]:
    """Frames (bytes) and pauses (float seconds) for one step."""
    match step:
        case Text():
            return [event_frame("assistantResponseEvent", {"content": step.content})]
        case ToolUse():
            frames: list[bytes | float] = [
                event_frame("toolUseEvent", {"name": step.name, "toolUseId": step.tool_use_id})
            ]
            for fragment in step.fragments:
                frames.append(
                    event_frame("toolUseEvent", {"name": step.name, "toolUseId": step.tool_use_id, "input": fragment})
                )
            if step.stop:
                frames.append(
                    event_frame("toolUseEvent", {"name": step.name, "toolUseId": step.tool_use_id, "stop": True})
                )
            return frames
        case Reasoning():
            payload: dict[str, Any] = {"text": step.text}
            if step.signature:
                payload["signature"] = step.signature
            if step.redacted:
                payload["redactedContent"] = step.redacted
            return [event_frame("reasoningContentEvent", payload)]
        case ContextUsage():
            return [event_frame("contextUsageEvent", {"contextUsagePercentage": step.percentage})]
        case Metering():
            return [event_frame("meteringEvent", {"unit": "credit", "unitPlural": "credits", "usage": step.usage})]
        case Metadata():
            meta: dict[str, Any] = {}
            if step.token_usage:
                meta["tokenUsage"] = step.token_usage
            if step.stop_reason:
                meta["stopReason"] = step.stop_reason
            return [event_frame("metadataEvent", meta)]
        case StreamException():
            return [exception_frame(step.exception_type, step.message)]
        case Event():
            return [event_frame(step.event_type, step.payload)]
        case Delay():
            return [step.seconds]
        case RawBytes():
            return [step.data]
    raise TypeError(f"unknown step {step!r}")


DEFAULT_REPLY: tuple[Step, ...] = (
    Text("Hello from the fake "),
    Text("Kiro."),
    ContextUsage(1.5),
    Metering(0.01),
)


# --- structural validation ----------------------------------------------------------------------

STATE_FIELDS = {
    "chatTriggerType",
    "conversationId",
    "agentTaskType",
    "agentContinuationId",
    "currentMessage",
    "history",
    "customizationArn",
    "workspaceId",
}
USER_FIELDS = {"content", "modelId", "origin", "images", "userInputMessageContext", "userIntent"}
CONTEXT_FIELDS = {
    "tools",
    "toolResults",
    "envState",
    "editorState",
    "gitState",
    "shellState",
    "additionalContext",
    "userSettings",
}
ASSISTANT_FIELDS = {"content", "toolUses", "messageId", "followupPrompt", "references", "reasoningContent"}
IMAGE_FORMATS = {"png", "jpeg", "gif", "webp"}


class Invalid(Exception):
    pass


def _no_nulls(value: Any, where: str) -> None:
    """No null and no empty array/object anywhere, except inside JSON documents (schemas, inputs)."""
    if value is None:
        raise Invalid(f"null at {where}")
    if isinstance(value, dict):
        if not value:
            raise Invalid(f"empty object at {where}")
        for key, item in value.items():
            if key in ("json", "input") and isinstance(item, dict):
                continue
            _no_nulls(item, f"{where}.{key}")
    elif isinstance(value, list):
        if not value:
            raise Invalid(f"empty array at {where}")
        for i, item in enumerate(value):
            _no_nulls(item, f"{where}[{i}]")


def _only(value: Any, allowed: set[str], where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise Invalid(f"{where} is not an object")
    extra = set(value) - allowed
    if extra:
        raise Invalid(f"unknown field(s) {sorted(extra)} in {where}")
    return value


def _user(message: Any, where: str, previous_uses: set[str], seen_results: set[str], current: bool) -> None:
    wrapper = _only(message, {"userInputMessage"}, where)
    if "userInputMessage" not in wrapper:
        raise Invalid(f"{where} is not a userInputMessage")
    msg = _only(wrapper["userInputMessage"], USER_FIELDS, where)
    if not isinstance(msg.get("content"), str) or not msg["content"].strip():
        raise Invalid(f"empty content in {where}")
    for i, image in enumerate(msg.get("images", [])):
        _only(image, {"format", "source"}, f"{where}.images[{i}]")
        if image.get("format") not in IMAGE_FORMATS:
            raise Invalid(f"bad image format in {where}")
        source = _only(image.get("source"), {"bytes"}, f"{where}.images[{i}].source")
        try:
            base64.b64decode(source.get("bytes", ""), validate=True)
        except (binascii.Error, ValueError):
            raise Invalid(f"image bytes not base64 in {where}") from None
    context = (
        _only(msg["userInputMessageContext"], CONTEXT_FIELDS, f"{where}.userInputMessageContext")
        if "userInputMessageContext" in msg
        else {}
    )
    tools = context.get("tools", [])
    if tools and not current:
        raise Invalid(f"tools in a history message ({where})")
    names = set()
    for i, tool in enumerate(tools):
        spec = _only(
            _only(tool, {"toolSpecification"}, f"{where}.tools[{i}]").get("toolSpecification"),
            {"name", "description", "inputSchema"},
            f"{where}.tools[{i}].toolSpecification",
        )
        name = spec.get("name")
        if not isinstance(name, str) or not name or len(name) > 64:
            raise Invalid(f"tool name {name!r} empty or over 64 characters")
        if name in names:
            raise Invalid(f"duplicate tool {name!r}")
        names.add(name)
        description = spec.get("description")
        if not isinstance(description, str) or not description.strip():
            raise Invalid(f"empty description for tool {name!r}")
        if len(description) > 10_240:
            raise Invalid(f"description of tool {name!r} too long")
        schema = _only(spec.get("inputSchema"), {"json"}, f"tool {name} inputSchema")
        if not isinstance(schema.get("json"), dict):
            raise Invalid(f"tool {name!r} inputSchema.json is not an object")
    answered = set()
    for i, result in enumerate(context.get("toolResults", [])):
        _only(result, {"toolUseId", "status", "content"}, f"{where}.toolResults[{i}]")
        tool_use_id = result.get("toolUseId")
        if tool_use_id in seen_results:
            raise Invalid(f"duplicate toolUseId {tool_use_id!r} in toolResults")
        seen_results.add(tool_use_id)
        if tool_use_id not in previous_uses:
            raise Invalid(f"toolResult {tool_use_id!r} has no matching toolUse in the turn before")
        answered.add(tool_use_id)
        if result.get("status") not in ("success", "error"):
            raise Invalid(f"bad toolResult status in {where}")
        content = result.get("content")
        if not isinstance(content, list) or not content:
            raise Invalid(f"empty toolResult content in {where}")
        for block in content:
            _only(block, {"text", "json"}, f"{where}.toolResults content")
    if previous_uses - answered:
        raise Invalid(f"toolUse(s) {sorted(previous_uses - answered)} not answered in {where}")


def _assistant(message: Any, where: str, all_uses: set[str]) -> set[str]:
    wrapper = _only(message, {"assistantResponseMessage"}, where)
    if "assistantResponseMessage" not in wrapper:
        raise Invalid(f"{where} is not an assistantResponseMessage (history must alternate)")
    msg = _only(wrapper["assistantResponseMessage"], ASSISTANT_FIELDS, where)
    if not isinstance(msg.get("content"), str) or not msg["content"].strip():
        raise Invalid(f"empty content in {where}")
    ids = set()
    for use in msg.get("toolUses", []):
        _only(use, {"toolUseId", "name", "input"}, f"{where}.toolUses")
        if not isinstance(use.get("name"), str) or not use["name"] or len(use["name"]) > 64:
            raise Invalid(f"toolUse name {use.get('name')!r} empty or over 64 characters")
        if use.get("toolUseId") in all_uses:
            raise Invalid(f"duplicate toolUseId {use.get('toolUseId')!r}")
        if not isinstance(use.get("input"), dict) or "" in use["input"]:
            raise Invalid(f"toolUse input not an object or has an empty key in {where}")
        all_uses.add(use["toolUseId"])
        ids.add(use["toolUseId"])
    return ids


def _current_tools(message: dict[str, Any]) -> list[Any]:
    context = message["userInputMessage"].get("userInputMessageContext", {})
    tools = context.get("tools", [])
    return tools if isinstance(tools, list) else []


def validate_body(body: Any, needs_profile_arn: bool) -> str | None:
    """The reason the real service would answer "Improperly formed request.", or None."""
    try:
        top = _only(body, {"conversationState", "profileArn"}, "body")
        if needs_profile_arn and not top.get("profileArn"):
            raise Invalid("profileArn missing (social login)")
        state = top.get("conversationState")
        if isinstance(state, dict) and "system" in state:
            raise Invalid("conversationState has a system field")
        state = _only(state, STATE_FIELDS, "conversationState")
        _no_nulls(top, "body")
        if state.get("chatTriggerType") not in ("MANUAL", "DIAGNOSTIC", "INLINE_CHAT"):
            raise Invalid("bad chatTriggerType")
        if not isinstance(state.get("conversationId"), str):
            raise Invalid("conversationId missing")
        history = state.get("history", [])
        if not isinstance(history, list):
            raise Invalid("history is not an array")
        if history and len(history) % 2:
            raise Invalid("history does not end with an assistant turn")
        all_uses: set[str] = set()
        seen_results: set[str] = set()
        previous: set[str] = set()
        for i, message in enumerate(history):
            if i % 2 == 0:
                _user(message, f"history[{i}]", previous, seen_results, current=False)
            else:
                previous = _assistant(message, f"history[{i}]", all_uses)
        if "currentMessage" not in state:
            raise Invalid("currentMessage missing")
        _user(state["currentMessage"], "currentMessage", previous, seen_results, current=True)
        if (all_uses or seen_results) and not _current_tools(state["currentMessage"]):
            raise Invalid("toolUses/toolResults in the conversation but no tools defined")
    except Invalid as e:
        return str(e)
    return None


def model_of(body: dict[str, Any]) -> str | None:
    try:
        return body["conversationState"]["currentMessage"]["userInputMessage"].get("modelId")
    except (KeyError, TypeError, AttributeError):
        return None


# --- the server ----------------------------------------------------------------------------------


@dataclass
class RecordedRequest:
    path: str
    headers: dict[str, str]
    body: Any
    status: int = 0
    rejection: str | None = None


class FakeKiro:
    def __init__(
        self,
        *,
        auth_method: str = "social",
        access_token: str = "kiro-access-0",
        refresh_token: str = "kiro-refresh-0",
        client_id: str = "fake-client-id",
        client_secret: str = "fake-client-secret",
        profile_arn: str = DEFAULT_PROFILE_ARN,
        expires_in: int = 3600,
        refresh_delay: float = 0.0,
        models: frozenset[str] = KIRO_MODEL_IDS,
    ) -> None:
        self.auth_method = auth_method
        self.access_token = access_token
        self.refresh_token = refresh_token
        self.client_id = client_id
        self.client_secret = client_secret
        self.profile_arn = profile_arn
        self.expires_in = expires_in
        self.refresh_delay = refresh_delay
        self.models = models
        self.requests: list[RecordedRequest] = []
        self.refresh_requests: list[RecordedRequest] = []
        self.listing_requests: list[RecordedRequest] = []
        # ListAvailableModels answers these ids (the service's own spelling), in pages of `maxResults`
        self.listed = sorted(models) + ["auto"]
        self.listing_status = 200
        self.refresh_count = 0
        self._queue: list[list[Step] | HttpError] = []
        # When set, chooses the reply (steps, or an HttpError) from the request body before the queue
        # is looked at (None: the queue): for real clients, whose side requests arrive in no fixed order.
        self.responder: Callable[[Any], list[Step] | HttpError | None] | None = None
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # --- lifecycle ---

    def start(self) -> FakeKiro:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802
                fake._handle(self)

            def do_GET(self) -> None:  # noqa: N802
                fake._handle_get(self)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="fake-kiro", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> FakeKiro:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        assert self._server is not None, "FakeKiro not started"
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def social_refresh_url(self) -> str:
        return f"{self.base_url}/refreshToken"

    @property
    def idc_token_url(self) -> str:
        return f"{self.base_url}/token"

    # --- scripting ---

    def enqueue(self, *steps: Step | HttpError) -> None:
        """One response: event-stream steps, or a single HttpError."""
        if len(steps) == 1 and isinstance(steps[0], HttpError):
            item: list[Step] | HttpError = steps[0]
        else:
            if any(isinstance(s, HttpError) for s in steps):
                raise ValueError("an HttpError must be enqueued alone")
            item = list(steps)  # type: ignore[arg-type]
        with self._lock:
            self._queue.append(item)

    @property
    def pending(self) -> int:
        with self._lock:
            return len(self._queue)

    def expire_access_token(self) -> None:
        """Make the current access token stale (as if the service had expired it)."""
        with self._lock:
            self.access_token = self.access_token + "-expired-server-side"

    def generate_requests(self) -> list[RecordedRequest]:
        return [r for r in self.requests if r.path.endswith("/generateAssistantResponse")]

    def write_token_file(
        self,
        path: Path,
        *,
        expires_at: str | None = None,
        auth_method: str | None = None,
        registration: bool = True,
        **extra: Any,
    ) -> Path:
        """A Kiro token file for the fake's current tokens (and, for IdC, the registration file)."""
        method = auth_method or self.auth_method
        expires_at = expires_at or time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(time.time() + 3600))
        data: dict[str, Any] = {
            "accessToken": self.access_token,
            "refreshToken": self.refresh_token,
            "expiresAt": expires_at,
            "authMethod": method,
            "region": "us-east-1",
        }
        if method == "social":
            data["provider"] = "Google"
            data["profileArn"] = self.profile_arn
        else:
            data["provider"] = "BuilderId"
            data["clientIdHash"] = "0123abcd" * 5
            if registration:
                reg = {
                    "clientId": self.client_id,
                    "clientSecret": self.client_secret,
                    "expiresAt": "2099-01-01T00:00:00.000Z",
                }
                (path.parent / f"{data['clientIdHash']}.json").write_text(json.dumps(reg))
        data.update(extra)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(data, indent=2))
        path.chmod(0o600)
        return path

    # --- handling ---

    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        length = int(h.headers.get("content-length") or 0)
        raw = h.rfile.read(length) if length else b""
        path = h.path.split("?", 1)[0]
        try:
            body: Any = json.loads(raw) if raw else None
        except json.JSONDecodeError:
            body = raw.decode("utf-8", "replace")
        record = RecordedRequest(path=path, headers={k.lower(): v for k, v in h.headers.items()}, body=body)
        if path == "/generateAssistantResponse":
            with self._lock:
                self.requests.append(record)
            self._generate(h, record)
        elif path in ("/refreshToken", "/token"):
            with self._lock:
                self.refresh_requests.append(record)
            self._refresh(h, record, social=path == "/refreshToken")
        else:
            self._json(h, record, 404, {"message": f"no route {path}"})

    def _handle_get(self, h: BaseHTTPRequestHandler) -> None:
        """`GET /ListAvailableModels?origin=AI_EDITOR&maxResults=N[&profileArn=][&nextToken=]`, as the
        Kiro IDE lists an account's models; anything else is a 404."""
        path, _, query = h.path.partition("?")
        params = {k: v[0] for k, v in parse_qs(query).items()}
        record = RecordedRequest(path=path, headers={k.lower(): v for k, v in h.headers.items()}, body=params)
        with self._lock:
            self.listing_requests.append(record)
        if path != "/ListAvailableModels":
            return self._json(h, record, 404, {"message": f"no route GET {path}"})
        if record.headers.get("authorization") != f"Bearer {self.access_token}":
            record.rejection = "bad bearer token"
            return self._json(h, record, 403, {"message": BAD_TOKEN})
        if params.get("origin") != "AI_EDITOR" or set(params) - {"origin", "maxResults", "profileArn", "nextToken"}:
            record.rejection = f"unexpected query {params}"
            return self._json(h, record, 400, {"message": "Improperly formed request.", "reason": None})
        if self.listing_status != 200:
            return self._json(h, record, self.listing_status, {"message": "listing unavailable"})
        size = int(params.get("maxResults", "50"))
        start = int(params.get("nextToken", "0"))
        page = self.listed[start : start + size]
        body: dict[str, Any] = {
            "models": [
                {
                    "modelId": m,
                    "modelName": m.replace("-", " ").title(),
                    "tokenLimits": {"maxInputTokens": 1_000_000 if "opus" in m else 200_000},
                }
                for m in page
            ],
            "defaultModel": {"modelId": "auto"},
        }
        if start + size < len(self.listed):
            body["nextToken"] = str(start + size)
        return self._json(h, record, 200, body)

    def _json(
        self,
        h: BaseHTTPRequestHandler,
        record: RecordedRequest,
        status: int,
        body: Any,
        headers: dict[str, str] | None = None,
    ) -> None:
        data = (json.dumps(body) if not isinstance(body, str) else body).encode()
        record.status = status
        h.send_response(status)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            h.send_header(k, v)
        h.end_headers()
        h.wfile.write(data)
        h.wfile.flush()

    def _refresh(self, h: BaseHTTPRequestHandler, record: RecordedRequest, social: bool) -> None:
        if self.refresh_delay:
            time.sleep(self.refresh_delay)
        body = record.body if isinstance(record.body, dict) else {}
        if "json" not in (record.headers.get("content-type") or ""):
            return self._json(h, record, 400, {"error": "invalid_request", "error_description": "expected JSON"})
        with self._lock:
            if not social:
                if body.get("clientId") != self.client_id or body.get("clientSecret") != self.client_secret:
                    return self._json(h, record, 401, {"error": "invalid_client"})
                if body.get("grantType") != "refresh_token":
                    return self._json(h, record, 400, {"error": "unsupported_grant_type"})
            if not body.get("refreshToken") or body.get("refreshToken") != self.refresh_token:
                record.rejection = "stale or unknown refresh token"
                return self._json(
                    h, record, 401, {"error": "invalid_grant", "message": "Invalid refresh token provided"}
                )
            self.refresh_count += 1
            self.access_token = f"kiro-access-{self.refresh_count}"
            self.refresh_token = f"kiro-refresh-{self.refresh_count}"
            answer: dict[str, Any] = {
                "accessToken": self.access_token,
                "refreshToken": self.refresh_token,
                "expiresIn": self.expires_in,
            }
            if social:
                answer["profileArn"] = self.profile_arn
            else:
                answer["tokenType"] = "Bearer"
        self._json(h, record, 200, answer)

    def _generate(self, h: BaseHTTPRequestHandler, record: RecordedRequest) -> None:
        if record.headers.get("authorization") != f"Bearer {self.access_token}":
            record.rejection = "bad bearer token"
            return self._json(h, record, 403, {"message": BAD_TOKEN})
        if not isinstance(record.body, dict):
            record.rejection = "body is not a JSON object"
            return self._json(h, record, 400, IMPROPER)
        reason = validate_body(record.body, needs_profile_arn=self.auth_method == "social")
        if reason:
            record.rejection = reason
            return self._json(h, record, 400, IMPROPER, headers={"x-fake-rejection": reason[:200]})
        if model_of(record.body) not in self.models:
            record.rejection = "unknown model"
            return self._json(
                h,
                record,
                400,
                {
                    "__type": "com.amazon.kiro.runtimeservice#ValidationException",
                    "message": "Invalid model. Please select a different model to continue.",
                    "reason": "INVALID_MODEL_ID",
                },
            )
        chosen = self.responder(record.body) if self.responder is not None else None
        with self._lock:
            item = chosen if chosen is not None else self._queue.pop(0) if self._queue else list(DEFAULT_REPLY)
        if isinstance(item, HttpError):
            return self._json(h, record, item.status, item.body, item.headers)
        record.status = 200
        h.send_response(200)
        h.send_header("Content-Type", "application/vnd.amazon.eventstream")
        h.send_header("Transfer-Encoding", "chunked")
        h.send_header("x-amzn-RequestId", "fake-request-id")
        h.end_headers()
        try:
            for step in item:
                for piece in render_step(step):
                    if isinstance(piece, float | int):
                        time.sleep(piece)
                        continue
                    h.wfile.write(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
                    h.wfile.flush()
            h.wfile.write(b"0\r\n\r\n")
            h.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            pass
