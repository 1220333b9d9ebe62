"""A fake public Gemini API on 127.0.0.1: scripted SSE GenerateContentResponse chunks, strict checks.

`:streamGenerateContent?alt=sse` gets the scripted chunks as SSE; `:generateContent` gets them as the
real API answers it (`whole_response`): one GenerateContentResponse whose candidate holds every part
(consecutive text pieces joined), with the last chunk's finish reason and usage.

Strict like the real API: rejects a key in the URL (`?key=`: the bridge must use the header), a
missing/wrong `x-goog-api-key` (400 API_KEY_INVALID, as Google answers), a stream request without
`alt=sse`, unknown top-level or generationConfig fields, a functionResponse whose name answers no
earlier functionCall, a Gemini 3 model turn whose first functionCall has no thoughtSignature, and a
thoughtSignature it issued coming back on another kind of part (rules shared with the Code Assist fake).
With `known_signatures_only`, a signature it never issued (another provider's) is refused too.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.fakes.code_assist_rules import (
    SIGNATURE_MESSAGE,
    Ledger,
    Rejected,
    check_signatures,
    issue_signatures,
)
from tests.fakes.loopback import LoopbackFake

REQUEST_FIELDS = {
    "contents",
    "systemInstruction",
    "tools",
    "toolConfig",
    "generationConfig",
    "safetySettings",
    "cachedContent",
}
GENERATION_FIELDS = {
    "temperature",
    "topP",
    "topK",
    "maxOutputTokens",
    "seed",
    "presencePenalty",
    "frequencyPenalty",
    "stopSequences",
    "responseMimeType",
    "responseJsonSchema",
    "responseSchema",
    "thinkingConfig",
    "candidateCount",
}
COUNT_FIELDS = {"model", "contents", "systemInstruction", "tools"}
PATH = re.compile(r"^/v1beta/models/(?P<model>[^:/]+):(?P<method>\w+)$")
CORRUPTED_SIGNATURE = "Corrupted thought signature."  # the public API's wording
USAGE = {"promptTokenCount": 12, "candidatesTokenCount": 6, "thoughtsTokenCount": 2, "totalTokenCount": 20}


@dataclass
class Reply:
    """One scripted answer: response chunks, or an HTTP error (google.rpc.Status body)."""

    chunks: list[dict[str, Any]] = field(default_factory=list)
    status: int = 200
    error_body: dict[str, Any] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0  # seconds before a non-stream answer (the model generating all of it)
    whole: bytes | None = None  # a non-stream answer's body as it is (a broken upstream)


GENERATE_METHODS = {"generateContent", "streamGenerateContent", "countTokens"}


def whole_response(chunks: list[dict[str, Any]]) -> dict[str, Any]:
    """The scripted chunks as `:generateContent` answers: one candidate with all their parts (text
    pieces of the same kind joined, as the service does when it is not streaming), the finish reason,
    usage, model and id of the chunks that carry them."""
    parts: list[dict[str, Any]] = []
    out: dict[str, Any] = {}
    candidate: dict[str, Any] = {"content": {"role": "model", "parts": parts}, "index": 0}
    for piece in chunks:
        out.update({k: v for k, v in piece.items() if k != "candidates"})
        for scripted in piece.get("candidates", [])[:1]:
            for part in scripted.get("content", {}).get("parts", []):
                _join(parts, dict(part))
            candidate.update({k: v for k, v in scripted.items() if k not in ("content", "index")})
    return {"candidates": [candidate], **out}


def _join(parts: list[dict[str, Any]], part: dict[str, Any]) -> None:
    last = parts[-1] if parts else None
    joinable = last is not None and "text" in last and "text" in part and "thoughtSignature" not in part
    if joinable and last is not None and bool(last.get("thought")) == bool(part.get("thought")):
        last["text"] += part["text"]
    else:
        parts.append(part)


def chunk(*parts: dict[str, Any], finish: str | None = None, usage: bool = False) -> dict[str, Any]:
    candidate: dict[str, Any] = {"content": {"role": "model", "parts": list(parts)}, "index": 0}
    if finish:
        candidate["finishReason"] = finish
    out: dict[str, Any] = {"candidates": [candidate], "modelVersion": "gemini-2.5-flash", "responseId": "resp-fake-1"}
    if usage:
        out["usageMetadata"] = USAGE
    return out


def text_reply(*pieces: str, thought: str | None = None) -> Reply:
    chunks = [chunk({"text": thought, "thought": True})] if thought else []
    chunks += [chunk({"text": p}) for p in pieces[:-1]]
    chunks.append(chunk({"text": pieces[-1]}, finish="STOP", usage=True))
    return Reply(chunks=chunks)


def tool_reply(name: str, args: dict[str, Any], call_id: str | None = None) -> Reply:
    call: dict[str, Any] = {"name": name, "args": args}
    if call_id:
        call["id"] = call_id
    return Reply(chunks=[chunk({"functionCall": call}, finish="STOP", usage=True)])


def status_reply(
    code: int,
    status: str,
    message: str,
    details: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
) -> Reply:
    error = {"code": code, "message": message, "status": status, "details": details or []}
    return Reply(status=code, error_body={"error": error}, headers=headers or {})


class FakeGeminiAPI(LoopbackFake[Reply]):
    def __init__(self, api_key: str = "AIza-fake-upstream-key") -> None:
        self.api_key = api_key
        self.requests: list[dict[str, Any]] = []
        self.paths: list[str] = []
        self.headers: list[dict[str, str]] = []
        self.count_requests: list[dict[str, Any]] = []
        self.rejections: list[str] = []
        self.generate_calls: list[tuple[str, dict[str, str]]] = []  # (path, headers) of each generate call
        self.signatures: Ledger = {}  # thoughtSignatures handed out in replies
        self.known_signatures_only = False
        super().__init__()

    @property
    def base_url(self) -> str:
        return self.origin

    def next_reply(self, body: Any = None) -> Reply:
        reply = self.pop_reply(body)
        if reply is not None:
            return reply
        return status_reply(500, "INTERNAL", "fake: no reply scripted")

    def validate(
        self, method: str, query: dict[str, list[str]], headers: dict[str, str], body: Any, model: str = ""
    ) -> tuple[int, str, str, str] | None:
        """(HTTP status, status, reason, message) of a rejection, or None. `model` (from the path)
        turns on Gemini 3's signature rule."""
        if "key" in query:
            return 400, "INVALID_ARGUMENT", "KEY_IN_URL", "fake: the key must not travel in the URL"
        if headers.get("x-goog-api-key") != self.api_key:
            return 400, "INVALID_ARGUMENT", "API_KEY_INVALID", "API key not valid. Please pass a valid API key."
        if method == "streamGenerateContent" and query.get("alt") != ["sse"]:
            return 400, "INVALID_ARGUMENT", "", "fake: stream without alt=sse"
        if method == "generateContent" and query.get("alt", ["json"]) != ["json"]:
            return 400, "INVALID_ARGUMENT", "", "fake: generateContent answers JSON only"
        if method == "countTokens":
            inner = body.get("generateContentRequest") if isinstance(body, dict) else None
            if set(body) != {"generateContentRequest"} or not isinstance(inner, dict):
                return 400, "INVALID_ARGUMENT", "", "fake: countTokens takes generateContentRequest"
            unknown = set(inner) - COUNT_FIELDS
        else:
            unknown = set(body) - REQUEST_FIELDS
            unknown |= set(body.get("generationConfig") or {}) - GENERATION_FIELDS
        if unknown:
            return 400, "INVALID_ARGUMENT", "", f'Invalid JSON payload received. Unknown name "{sorted(unknown)[0]}"'
        contents = body.get("contents") if method != "countTokens" else body["generateContentRequest"].get("contents")
        problem = check_contents(contents, gemini3=model.startswith("gemini-3") and method != "countTokens")
        if not problem:
            try:
                with self.lock:
                    check_signatures(contents, self.signatures, self.known_signatures_only, CORRUPTED_SIGNATURE)
            except Rejected as e:
                problem = e.message
        return (400, "INVALID_ARGUMENT", "", problem) if problem else None

    def issue(self, reply: Reply) -> None:
        with self.lock:
            for chunk in reply.chunks:
                for candidate in chunk.get("candidates", [])[:1]:
                    issue_signatures(self.signatures, candidate.get("content", {}).get("parts", []))

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("content-length", 0)))
                url = urlsplit(self.path)
                match = PATH.match(url.path)
                if not match or match["method"] not in GENERATE_METHODS:
                    return self._json(404, {"error": {"code": 404, "message": "not found", "status": "NOT_FOUND"}})
                headers = {k.lower(): v for k, v in self.headers.items()}
                body = json.loads(raw)
                method = match["method"]
                with fake.lock:
                    (fake.count_requests if method == "countTokens" else fake.requests).append(body)
                    fake.paths.append(self.path)
                    fake.headers.append(headers)
                    if method != "countTokens":
                        fake.generate_calls.append((self.path, headers))
                problem = fake.validate(method, parse_qs(url.query), headers, body, model=match["model"])
                if problem:
                    fake.rejections.append(problem[3])
                    details = (
                        [
                            {
                                "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                                "reason": problem[2],
                                "domain": "googleapis.com",
                            }
                        ]
                        if problem[2]
                        else []
                    )
                    error = {"code": problem[0], "message": problem[3], "status": problem[1], "details": details}
                    return self._json(problem[0], {"error": error})
                if method == "countTokens":
                    return self._json(200, {"totalTokens": 321, "promptTokensDetails": []})
                reply = fake.next_reply(body)
                if reply.status != 200:
                    return self._json(reply.status, reply.error_body or {}, reply.headers)
                fake.issue(reply)
                if method == "generateContent":
                    return self._whole(reply)
                data = b"".join(b"data: " + json.dumps(c).encode() + b"\r\n\r\n" for c in reply.chunks)
                self.send_response(200)
                self.send_header("content-type", "text/event-stream")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _whole(self, reply: Reply) -> None:
                """A non-stream answer: ready when all of it is. A script with an error chunk (an error
                mid-stream) is that error's status and body, as the service answers it without a stream."""
                time.sleep(reply.delay)
                errors = [c["error"] for c in reply.chunks if "error" in c]
                if errors:
                    return self._json(int(errors[0].get("code") or 500), {"error": errors[0]})
                data = reply.whole if reply.whole is not None else json.dumps(whole_response(reply.chunks)).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json; charset=UTF-8")
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

        return Handler


def check_contents(contents: Any, gemini3: bool = False) -> str | None:
    if not isinstance(contents, list) or not contents:
        return "contents is not specified"
    called: set[str] = set()
    for i, content in enumerate(contents):
        if content.get("role") not in ("user", "model"):
            return f"contents[{i}].role must be user or model"
        calls = [(j, p) for j, p in enumerate(content.get("parts") or []) if "functionCall" in p]
        if gemini3 and content["role"] == "model" and calls and not calls[0][1].get("thoughtSignature"):
            j, part = calls[0]
            return SIGNATURE_MESSAGE.format(name=part["functionCall"]["name"], pos=f"{i}.{j}")
        for part in content.get("parts") or []:
            if "functionCall" in part:
                called.add(part["functionCall"]["name"])
            if "functionResponse" in part and part["functionResponse"]["name"] not in called:
                return f"contents[{i}]: function response {part['functionResponse']['name']} answers no call"
            if not part:
                return f"contents[{i}]: empty part"
    return None
