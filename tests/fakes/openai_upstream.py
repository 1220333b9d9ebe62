"""A fake OpenAI-compatible upstream on 127.0.0.1: scripted chat.completion.chunk streams.

A request with `"stream": true` gets the scripted chunks as SSE; any other gets them as the real API
answers a non-stream request: one `chat.completion` JSON body (`completion`), sent once the whole
answer is ready (after the time the stream would have taken).

Strict like the real API: rejects unknown top-level fields, `stream_options` without streaming, a
missing/wrong bearer key, and message histories where a tool message does not answer a preceding
assistant tool call.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any

from tests.fakes.loopback import LoopbackFake

# `max_tokens` is OpenAI's older name, still accepted and the only one many compatible servers know
# (the bridge sends it to any base_url other than api.openai.com).
KNOWN_FIELDS = {
    "model",
    "messages",
    "stream",
    "stream_options",
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    "temperature",
    "top_p",
    "seed",
    "max_completion_tokens",
    "max_tokens",
    "presence_penalty",
    "frequency_penalty",
    "stop",
    "reasoning_effort",
    "response_format",
}


@dataclass
class Reply:
    """One scripted answer: a list of chunk deltas, or an HTTP error."""

    deltas: list[dict[str, Any]] = field(default_factory=list)
    finish: str = "stop"
    usage: dict[str, Any] | None = None
    status: int = 200
    error_body: dict[str, Any] | None = None
    delay: float = 0.0  # seconds between chunks (a non-stream answer waits for all of them)
    header_delay: float = 0.0  # seconds before the response starts
    cut: bool = False  # drop the connection before finishing
    headers: dict[str, str] = field(default_factory=dict)
    # A broken upstream: `raw` is sent as the whole body (stream or not) instead of the scripted chunks;
    # `inject[i]` is sent as it is after the i-th scripted chunk (0: the role chunk).
    raw: bytes | None = None
    inject: dict[int, bytes] = field(default_factory=dict)


def completion(reply: Reply, model: str) -> dict[str, Any]:
    """The scripted answer as the real API sends a non-stream one: the deltas joined into one
    message (text, reasoning, tool calls by index), its finish reason and usage."""
    message: dict[str, Any] = {"role": "assistant", "content": None, "refusal": None, "annotations": []}
    text = "".join(d.get("content") or "" for d in reply.deltas)
    reasoning = "".join(d.get("reasoning_content") or "" for d in reply.deltas)
    calls: dict[int, dict[str, Any]] = {}
    for delta in reply.deltas:
        for call in delta.get("tool_calls") or []:
            whole = calls.setdefault(
                call["index"], {"id": "", "type": "function", "function": {"name": "", "arguments": ""}}
            )
            whole["id"] = call.get("id") or whole["id"]
            function = call.get("function") or {}
            whole["function"]["name"] += function.get("name") or ""
            whole["function"]["arguments"] += function.get("arguments") or ""
    message["content"] = text or None
    if reasoning:
        message["reasoning_content"] = reasoning
    if calls:
        message["tool_calls"] = [calls[i] for i in sorted(calls)]
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": 1,
        "model": model,
        "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": reply.finish}],
        "usage": reply.usage or {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
        "service_tier": "default",
        "system_fingerprint": None,
    }


def text_reply(text: str, pieces: int = 3, **kw: Any) -> Reply:
    size = max(1, len(text) // pieces)
    deltas = [{"content": text[i : i + size]} for i in range(0, len(text), size)]
    return Reply(deltas=deltas, usage={"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18}, **kw)


class FakeOpenAI(LoopbackFake[Reply]):
    def __init__(self, api_key: str | None = "sk-upstream-secret") -> None:  # None: a keyless local server
        self.api_key = api_key
        self.default: Reply | None = None
        # `responder` (from LoopbackFake), when set, chooses the reply from the request body (for
        # concurrent tests, where the order in which requests arrive is not known); a responder that
        # returns None leaves it to the queue, then `default`.
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.disconnects = 0
        self.rejections: list[str] = []
        self.model_listings = 0  # GET /v1/models calls (health probes)
        self.in_flight = 0  # chat requests being answered now
        self.max_in_flight = 0  # the most at once (pacing across bridge processes)
        self.listed_models = ["gpt-test"]
        super().__init__()

    @property
    def base_url(self) -> str:
        return self.origin + "/v1"

    def next_reply(self, body: Any = None) -> Reply:
        reply = self.pop_reply(body)
        if reply is not None:
            return reply
        if self.default is not None:
            return self.default
        return Reply(status=500, error_body={"error": {"message": "fake: no reply scripted"}})

    def validate(self, headers: dict[str, str], body: dict[str, Any]) -> tuple[int, str] | None:
        expected = f"Bearer {self.api_key}" if self.api_key is not None else None
        if headers.get("authorization") != expected:
            return 401, "Incorrect API key provided" if expected else "this server takes no Authorization header"
        unknown = set(body) - KNOWN_FIELDS
        if unknown:
            return 400, f"Unrecognized request argument supplied: {sorted(unknown)[0]}"
        if "stream_options" in body and body.get("stream") is not True:
            return 400, "The 'stream_options' parameter is only allowed when 'stream' is enabled."
        open_calls: set[str] = set()
        for message in body.get("messages", []):
            if message.get("role") == "assistant":
                open_calls |= {c["id"] for c in message.get("tool_calls") or []}
            if message.get("role") == "tool" and message.get("tool_call_id") not in open_calls:
                return 400, "messages with role 'tool' must be a response to a preceding tool_calls"
        return None

    def _handler(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                """`GET /v1/models` (what the bridge's health probe asks), checked like a chat request."""
                headers = {k.lower(): v for k, v in self.headers.items()}
                with fake.lock:
                    fake.model_listings += 1
                if self.path.split("?")[0] != "/v1/models":
                    return self._json(404, {"error": {"message": f"fake: no route {self.path}"}})
                expected = f"Bearer {fake.api_key}" if fake.api_key is not None else None
                if headers.get("authorization") != expected:
                    return self._json(401, {"error": {"message": "Incorrect API key provided", "type": "invalid"}})
                models = [{"id": m, "object": "model", "owned_by": "fake"} for m in fake.listed_models]
                self._json(200, {"object": "list", "data": models})

            def do_POST(self) -> None:
                with fake.lock:
                    fake.in_flight += 1
                    fake.max_in_flight = max(fake.max_in_flight, fake.in_flight)
                try:
                    self._answer()
                finally:
                    with fake.lock:
                        fake.in_flight -= 1

            def _answer(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("content-length", 0))))
                headers = {k.lower(): v for k, v in self.headers.items()}
                with fake.lock:
                    fake.requests.append(body)
                    fake.headers.append(headers)
                problem = fake.validate(headers, body)
                if problem:
                    fake.rejections.append(problem[1])
                    return self._json(problem[0], {"error": {"message": problem[1], "type": "invalid_request_error"}})
                reply = fake.next_reply(body)
                time.sleep(reply.header_delay)
                if reply.status != 200:
                    return self._json(reply.status, reply.error_body or {}, reply.headers)
                if body.get("stream") is True:
                    self._stream(reply, body.get("model"))
                else:
                    self._whole(reply, body.get("model"))

            def _whole(self, reply: Reply, model: str) -> None:
                """A non-stream answer: ready when the stream would have ended. `raw` is the body as it
                is; `cut` drops the connection halfway through the body."""
                time.sleep(reply.delay * (len(reply.deltas) + 1))
                data = reply.raw if reply.raw is not None else json.dumps(completion(reply, model)).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                try:
                    if reply.cut:
                        self.close_connection = True
                        self.wfile.write(data[: len(data) // 2])
                        return self.wfile.flush()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    with fake.lock:
                        fake.disconnects += 1

            def _json(self, status: int, body: dict[str, Any], extra: dict[str, str] | None = None) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                for k, v in (extra or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

            def _stream(self, reply: Reply, model: str) -> None:
                self.send_response(200)
                self.send_header("content-type", "text/event-stream")
                self.send_header("transfer-encoding", "chunked")
                self.end_headers()
                base = {"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": 1, "model": model}
                chunks = [
                    dict(base, choices=[{"index": 0, "delta": d, "finish_reason": None}])
                    for d in [{"role": "assistant", "content": ""}] + reply.deltas
                ]
                try:
                    if reply.raw is not None:
                        self._send(reply.raw)
                        self.wfile.write(b"0\r\n\r\n")
                        return self.wfile.flush()
                    for i, chunk in enumerate(chunks):
                        self._send(b"data: " + json.dumps(chunk).encode() + b"\n\n")
                        if i in reply.inject:
                            self._send(reply.inject[i])
                        time.sleep(reply.delay)
                    if reply.cut:
                        self.close_connection = True
                        return self.wfile.flush()
                    self._send(
                        b"data: "
                        + json.dumps(
                            dict(base, choices=[{"index": 0, "delta": {}, "finish_reason": reply.finish}])
                        ).encode()
                        + b"\n\n"
                    )
                    if reply.usage:
                        self._send(b"data: " + json.dumps(dict(base, choices=[], usage=reply.usage)).encode() + b"\n\n")
                    self._send(b"data: [DONE]\n\n")
                    self.wfile.write(b"0\r\n\r\n")
                    self.wfile.flush()
                except (BrokenPipeError, ConnectionResetError):
                    with fake.lock:
                        fake.disconnects += 1

            def _send(self, data: bytes) -> None:
                self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
                self.wfile.flush()

        return Handler
