"""A fake Anthropic Messages API on 127.0.0.1: scripted SSE event sequences, strict validation.

A request with `"stream": true` gets the scripted events as SSE; any other gets them as the real API
answers a non-stream request (`message`): one `message` object with whole content blocks, or, for a
script that ends in an error event, that error with its HTTP status (529 for `overloaded_error`).

Strict like the real API: rejects a missing/wrong `x-api-key` (401 authentication_error), a missing
`anthropic-version`, unknown top-level fields, a missing `max_tokens`, non-alternating roles, a
tool_result that does not answer a tool_use of the previous assistant turn (or is not first in its
turn), empty text blocks and thinking blocks without a signature (400 invalid_request_error); with
thinking enabled, also a budget below 1024 or not below `max_tokens`, a forced `tool_choice`, `top_p`
below 0.95, temperature other than 1, `top_k`, and a last tool-calling assistant turn that does not
start with thinking.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any

from tests.fakes.loopback import LoopbackFake

MESSAGE_FIELDS = {
    "model",
    "messages",
    "max_tokens",
    "system",
    "stream",
    "tools",
    "tool_choice",
    "thinking",
    "stop_sequences",
    "temperature",
    "top_p",
    "top_k",
    "metadata",
    "output_config",
    "service_tier",
}
COUNT_FIELDS = {"model", "messages", "system", "tools", "tool_choice", "thinking", "output_config"}
USAGE = {"input_tokens": 20, "cache_read_input_tokens": 5, "cache_creation_input_tokens": 3}


@dataclass
class Reply:
    """One scripted answer: SSE events (name, payload), or an HTTP error."""

    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    status: int = 200
    error_body: dict[str, Any] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0  # seconds before a non-stream answer (the model generating all of it)
    whole: bytes | None = None  # a non-stream answer's body as it is (a broken upstream)


# The HTTP status of each error type (Anthropic's errors page), for a non-stream answer.
ERROR_STATUS = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "overloaded_error": 529,
}


def message(events: list[tuple[str, dict[str, Any]]]) -> tuple[int, dict[str, Any]]:
    """The scripted events as the real API answers a non-stream request: (200, the `message` with
    whole content blocks, its stop reason and usage), or (status, error body) for an error event."""
    whole: dict[str, Any] = {}
    partial_json: dict[int, str] = {}
    for name, payload in events:
        if name == "error":
            return ERROR_STATUS.get(payload["error"]["type"], 500), payload
        if name == "message_start":
            whole = json.loads(json.dumps(payload["message"]))
        elif name == "content_block_start":
            whole["content"].append(json.loads(json.dumps(payload["content_block"])))
        elif name == "content_block_delta":
            _apply_delta(whole["content"][-1], payload["delta"], partial_json, len(whole["content"]) - 1)
        elif name == "message_delta":
            whole.update(payload["delta"])
            whole["usage"].update(payload.get("usage") or {})
    for index, raw in partial_json.items():
        whole["content"][index]["input"] = json.loads(raw) if raw else {}
    return 200, whole


def _apply_delta(block: dict[str, Any], delta: dict[str, Any], partial_json: dict[int, str], index: int) -> None:
    kind = delta["type"]
    if kind == "text_delta":
        block["text"] += delta["text"]
    elif kind == "thinking_delta":
        block["thinking"] += delta["thinking"]
    elif kind == "signature_delta":
        block["signature"] = delta["signature"]
    elif kind == "input_json_delta":
        partial_json[index] = partial_json.get(index, "") + delta["partial_json"]


def error_reply(status: int, kind: str, message: str, **headers: str) -> Reply:
    return Reply(
        status=status,
        error_body={"type": "error", "error": {"type": kind, "message": message}},
        headers={k.replace("_", "-"): v for k, v in headers.items()},
    )


def _start(model: str = "claude-test") -> tuple[str, dict[str, Any]]:
    return (
        "message_start",
        {
            "type": "message_start",
            "message": {
                "id": "msg_fake01",
                "type": "message",
                "role": "assistant",
                "model": model,
                "content": [],
                "stop_reason": None,
                "stop_sequence": None,
                "usage": dict(USAGE, output_tokens=1),
            },
        },
    )


def _block(index: int, block: dict[str, Any], deltas: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    events = [("content_block_start", {"type": "content_block_start", "index": index, "content_block": block})]
    events += [("content_block_delta", {"type": "content_block_delta", "index": index, "delta": d}) for d in deltas]
    return events + [("content_block_stop", {"type": "content_block_stop", "index": index})]


def _end(stop_reason: str, output_tokens: int = 9, stop_sequence: str | None = None) -> list[tuple[str, dict]]:
    return [
        (
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": stop_reason, "stop_sequence": stop_sequence},
                "usage": {"output_tokens": output_tokens},
            },
        ),
        ("message_stop", {"type": "message_stop"}),
    ]


def text_events(text: str, pieces: int = 3) -> list[tuple[str, dict[str, Any]]]:
    size = max(1, len(text) // pieces)
    deltas = [{"type": "text_delta", "text": text[i : i + size]} for i in range(0, len(text), size)]
    return _block(0, {"type": "text", "text": ""}, deltas)


def text_reply(text: str, stop_reason: str = "end_turn", stop_sequence: str | None = None) -> Reply:
    return Reply(
        events=[
            _start(),
            ("ping", {"type": "ping"}),
            *text_events(text),
            *_end(stop_reason, stop_sequence=stop_sequence),
        ]
    )


def pieces_reply(*pieces: str, thinking: str | None = None, signature: str = "c2lnLWNsYXVkZQ==") -> Reply:
    """Text streamed as exactly these text_delta pieces, after a signed thinking block when `thinking`."""
    events: list[tuple[str, dict[str, Any]]] = [_start()]
    if thinking:
        events += _block(
            0,
            {"type": "thinking", "thinking": "", "signature": ""},
            [{"type": "thinking_delta", "thinking": thinking}, {"type": "signature_delta", "signature": signature}],
        )
    events += _block(
        1 if thinking else 0, {"type": "text", "text": ""}, [{"type": "text_delta", "text": p} for p in pieces]
    )
    return Reply(events=events + _end("end_turn"))


def thinking_reply(thinking: str, signature: str, text: str) -> Reply:
    half = len(thinking) // 2
    deltas = [
        {"type": "thinking_delta", "thinking": thinking[:half]},
        {"type": "thinking_delta", "thinking": thinking[half:]},
        {"type": "signature_delta", "signature": signature},
    ]
    events = _block(0, {"type": "thinking", "thinking": "", "signature": ""}, deltas)
    text_block = [(name, dict(payload, index=1)) for name, payload in text_events(text)]
    return Reply(events=[_start(), *events, *text_block, *_end("end_turn")])


def tool_reply(name: str, call_id: str, args: dict[str, Any], text: str = "", fragments: int = 4) -> Reply:
    raw = json.dumps(args)
    size = max(1, len(raw) // fragments)
    deltas = [{"type": "input_json_delta", "partial_json": raw[i : i + size]} for i in range(0, len(raw), size)]
    events: list[tuple[str, dict[str, Any]]] = [_start()]
    index = 0
    if text:
        events += text_events(text)
        index = 1
    events += _block(
        index,
        {"type": "tool_use", "id": call_id, "name": name, "input": {}},
        [{"type": "input_json_delta", "partial_json": ""}, *deltas],
    )
    return Reply(events=events + _end("tool_use"))


def error_event_reply(kind: str = "overloaded_error", message: str = "Overloaded") -> Reply:
    return Reply(
        events=[
            _start(),
            *text_events("partial"),
            ("error", {"type": "error", "error": {"type": kind, "message": message}}),
        ]
    )


class FakeAnthropic(LoopbackFake[Reply]):
    def __init__(self, api_key: str = "sk-ant-upstream-secret") -> None:
        self.api_key = api_key
        self.requests: list[dict[str, Any]] = []  # bodies of /v1/messages
        self.headers: list[dict[str, str]] = []
        self.count_requests: list[dict[str, Any]] = []
        self.rejections: list[str] = []
        self.generate_headers: list[dict[str, str]] = []  # headers of each /v1/messages request
        super().__init__()

    @property
    def base_url(self) -> str:
        return self.origin

    def next_reply(self, body: Any = None) -> Reply:
        reply = self.pop_reply(body)
        if reply is not None:
            return reply
        return error_reply(500, "api_error", "fake: no reply scripted")

    def validate(self, path: str, headers: dict[str, str], body: Any) -> tuple[int, str, str] | None:
        if headers.get("x-api-key") != self.api_key:
            return 401, "authentication_error", "invalid x-api-key"
        if not headers.get("anthropic-version"):
            return 400, "invalid_request_error", "anthropic-version: header is required"
        if not isinstance(body, dict):
            return 400, "invalid_request_error", "body must be an object"
        counting = path.endswith("/count_tokens")
        unknown = set(body) - (COUNT_FIELDS if counting else MESSAGE_FIELDS)
        if unknown:
            return 400, "invalid_request_error", f"{sorted(unknown)[0]}: Extra inputs are not permitted"
        if not counting and not isinstance(body.get("max_tokens"), int):
            return 400, "invalid_request_error", "max_tokens: Field required"
        problem = check_messages(body.get("messages")) or check_thinking(body)
        return (400, "invalid_request_error", problem) if problem else None

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("content-length", 0)))
                headers = {k.lower(): v for k, v in self.headers.items()}
                if self.path not in ("/v1/messages", "/v1/messages/count_tokens"):
                    return self._json(404, _error("not_found_error", f"no route {self.path}"))
                try:
                    body = json.loads(raw)
                except ValueError:
                    return self._json(400, _error("invalid_request_error", "body is not JSON"))
                with fake.lock:
                    (fake.count_requests if self.path.endswith("count_tokens") else fake.requests).append(body)
                    fake.headers.append(headers)
                    if not self.path.endswith("count_tokens"):
                        fake.generate_headers.append(headers)
                problem = fake.validate(self.path, headers, body)
                if problem:
                    fake.rejections.append(problem[2])
                    return self._json(problem[0], _error(problem[1], problem[2]))
                if self.path.endswith("count_tokens"):
                    return self._json(200, {"input_tokens": 4242})
                reply = fake.next_reply(body)
                if reply.status != 200:
                    return self._json(reply.status, reply.error_body or {}, reply.headers)
                if body.get("stream") is True:
                    return self._stream(reply)
                time.sleep(reply.delay)
                if reply.whole is not None:
                    return self._raw(reply.whole)
                self._json(*message(reply.events))

            def _raw(self, data: bytes) -> None:
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _json(self, status: int, body: dict[str, Any], extra: dict[str, str] | None = None) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                for k, v in (extra or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

            def _stream(self, reply: Reply) -> None:
                self.send_response(200)
                self.send_header("content-type", "text/event-stream")
                self.send_header("content-length", str(len(data := _sse(reply.events))))
                self.end_headers()
                for i in range(0, len(data), 97):  # in odd-sized pieces, as a network would
                    self.wfile.write(data[i : i + 97])
                    self.wfile.flush()
                    time.sleep(0.001)

        return Handler


def _error(kind: str, message: str) -> dict[str, Any]:
    return {"type": "error", "error": {"type": kind, "message": message}}


def _sse(events: list[tuple[str, dict[str, Any]]]) -> bytes:
    return b"".join(f"event: {name}\ndata: {json.dumps(payload)}\n\n".encode() for name, payload in events)


def check_messages(messages: Any) -> str | None:
    """Why the real API would reject these messages, or None."""
    if not isinstance(messages, list) or not messages:
        return "messages: at least one message is required"
    previous_calls: set[str] = set()
    for i, message in enumerate(messages):
        role = message.get("role")
        if i and role == messages[i - 1].get("role"):
            return f"messages.{i}: roles must alternate between user and assistant"
        content = message.get("content")
        blocks = [{"type": "text", "text": content}] if isinstance(content, str) else content or []
        problem = _check_blocks(i, role, blocks, previous_calls)
        if problem:
            return problem
        previous_calls = {b["id"] for b in blocks if b.get("type") == "tool_use"} if role == "assistant" else set()
    return None


def check_thinking(body: dict[str, Any]) -> str | None:
    """Anthropic's refusals of a request with thinking enabled (None when thinking is off)."""
    thinking = body.get("thinking") or {}
    if thinking.get("type") != "enabled":
        return None
    budget = thinking.get("budget_tokens")
    if not isinstance(budget, int) or budget < 1024:
        return "thinking.enabled.budget_tokens: Input should be greater than or equal to 1024"
    if isinstance(body.get("max_tokens"), int) and budget >= body["max_tokens"]:
        return "`max_tokens` must be greater than `thinking.budget_tokens`"
    if (body.get("tool_choice") or {}).get("type") in ("any", "tool"):
        return "Thinking may not be enabled when tool_choice forces tool use."
    if body.get("top_p") is not None and body["top_p"] < 0.95:
        return "`top_p` must be greater than or equal to 0.95 or unset when thinking is enabled."
    if body.get("temperature") not in (None, 1) or body.get("top_k") is not None:
        return "`temperature` may only be set to 1 and `top_k` unset when thinking is enabled."
    last = next((m for m in reversed(body.get("messages") or []) if m.get("role") == "assistant"), None)
    blocks = (last or {}).get("content")
    if (
        isinstance(blocks, list)
        and any(b.get("type") == "tool_use" for b in blocks)
        and blocks[0].get("type") not in ("thinking", "redacted_thinking")
    ):
        return (
            f"messages.{body['messages'].index(last)}.content.0.type: Expected `thinking` or "
            f"`redacted_thinking`, but found `{blocks[0].get('type')}`. When `thinking` is enabled, a "
            "final `assistant` message must start with a thinking block."
        )
    return None


def _check_blocks(i: int, role: str, blocks: list[dict[str, Any]], calls: set[str]) -> str | None:
    seen_other = False
    for j, block in enumerate(blocks):
        kind = block.get("type")
        if kind == "text" and not block.get("text"):
            return f"messages.{i}.content.{j}: text content blocks must be non-empty"
        if kind == "thinking" and not block.get("signature"):
            return f"messages.{i}.content.{j}.thinking.signature: Field required"
        if kind == "tool_result":
            if seen_other:
                return f"messages.{i}: tool_result blocks must come first in the user message"
            if block.get("tool_use_id") not in calls:
                return (
                    f"messages.{i}.content.{j}: unexpected `tool_use_id` found in `tool_result` blocks: "
                    f"{block.get('tool_use_id')}. Each `tool_result` block must have a corresponding "
                    f"`tool_use` block in the previous message."
                )
        else:
            seen_other = True
        if kind in ("thinking", "redacted_thinking", "tool_use") and role != "assistant":
            return f"messages.{i}.content.{j}: {kind} blocks belong in assistant messages"
    return None
