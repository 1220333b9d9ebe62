"""Replays recorded upstream traffic: a small HTTP server on 127.0.0.1 that answers a provider's
requests from fixtures (`llmbridge export-fixture`), so any recorded exchange can be run again
offline — through the real bridge, with the real translators.

Matching is on method, path and the JSON body with volatile fields (session and prompt ids)
ignored. A request that matches no fixture is answered with status 599 and a body that names the
first difference from the closest fixture: a provider's changed protocol, or a changed translator,
shows up at once instead of silently passing. Each fixture answers once; `unused()` lists the rest.

With `nearest=True` (offline mode, `llmbridge serve --replay`, `llmbridge.offline`) a request the corpus
does not hold exactly is answered by the closest recording of the same call instead, and the
difference is logged: a newcomer can try any prompt, while a recorded session still replays exactly.
A call of one kind (stream or whole answer) that the corpus holds only as the other kind is answered
from that recording, converted (`llmbridge.replay_kinds`).
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import socket
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from llmbridge.replay_kinds import (
    UNCONVERTIBLE_STATUS,
    WHOLE,
    Call,
    Unconvertible,
    converted,
    convertible,
    read_call,
    unconvertible_error,
)

# Fields that differ on every request by design; everything else must match exactly. Code Assist's
# ids, Kiro's conversation ids, Qwen's `metadata.sessionId` / `metadata.promptId`.
VOLATILE_FIELDS = frozenset(
    {"user_prompt_id", "session_id", "conversationId", "agentContinuationId", "sessionId", "promptId"}
)
NO_MATCH_STATUS = 599

log = logging.getLogger(__name__)


@dataclass
class Fixture:
    path: Path
    data: dict[str, Any]
    used: bool = False

    @property
    def method(self) -> str:
        method: str = self.data["request"]["method"]
        return method

    @property
    def target(self) -> str:
        recorded: str = self.data["request"]["url"]
        url = urlsplit(recorded)
        return url.path + (f"?{url.query}" if url.query else "")

    @property
    def body(self) -> Any:
        return normalize(self.data["request"]["body"])

    @cached_property
    def call(self) -> Call:
        """The recorded call, as offline mode compares calls (`llmbridge.replay_kinds`)."""
        return read_call(self.method, self.target, self.data["request"]["body"])

    def response_bytes(self) -> bytes:
        return base64.b64decode(self.data["response"]["body_base64"])


def load_fixtures(paths: list[Path]) -> list[Fixture]:
    fixtures = []
    for path in paths:
        files = sorted(path.glob("*.json")) if path.is_dir() else [path]
        fixtures += [Fixture(f, json.loads(f.read_text())) for f in files]
    return fixtures


def normalize(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: normalize(v) for k, v in value.items() if k not in VOLATILE_FIELDS}
    if isinstance(value, list):
        return [normalize(v) for v in value]
    return value


def first_difference(expected: Any, actual: Any, where: str = "body") -> str | None:
    """Where two JSON values first differ, as a readable path; None when equal."""
    if isinstance(expected, dict) and isinstance(actual, dict):
        for key in sorted(set(expected) | set(actual)):
            if key not in actual:
                return f"{where}.{key} is missing"
            if key not in expected:
                return f"{where}.{key} is new"
            found = first_difference(expected[key], actual[key], f"{where}.{key}")
            if found:
                return found
        return None
    if isinstance(expected, list) and isinstance(actual, list):
        if len(expected) != len(actual):
            return f"{where} has {len(actual)} items, the fixture {len(expected)}"
        for i, (e, a) in enumerate(zip(expected, actual)):
            found = first_difference(e, a, f"{where}[{i}]")
            if found:
                return found
        return None
    return None if expected == actual else f"{where} is {actual!r}, the fixture has {expected!r}"


def nearest_fixture(same_call: list[Fixture], body: Any, wants_stream: bool) -> Fixture:
    """The recording to answer a call the corpus does not hold exactly: one whose body matches (it was
    replayed before), else one of the kind asked (stream or not), else one of the other kind that
    converts, else the first (which, of the other kind, gets the client an error saying why)."""
    exact = [f for f in same_call if first_difference(f.body, body) is None]
    alike = [f for f in same_call if f.call.stream == wants_stream]
    return (exact or alike or [f for f in same_call if convertible(f)] or same_call)[0]


class ReplayServer:
    def __init__(self, fixtures: list[Fixture], chunk_size: int = 256, nearest: bool = False) -> None:
        self.fixtures = fixtures
        self.chunk_size = chunk_size  # the body goes out in pieces, as a stream would
        self.nearest = nearest  # answer an unmatched call from its closest recording (offline mode)
        self.mismatches: list[str] = []
        self.approximated: list[str] = []  # calls answered from a nearest recording, and why
        self.server: asyncio.Server | None = None
        self.port = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self, port: int = 0, sock: socket.socket | None = None) -> ReplayServer:
        """Listen on 127.0.0.1:`port`, or on `sock`, a socket bound before (its address was needed first)."""
        if sock is not None:
            self.server = await asyncio.start_server(self._serve, sock=sock)
        else:
            self.server = await asyncio.start_server(self._serve, "127.0.0.1", port)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def close(self) -> None:
        if self.server:
            self.server.close()
            await self.server.wait_closed()

    def unused(self) -> list[Fixture]:
        return [f for f in self.fixtures if not f.used]

    def match(self, method: str, target: str, body: Any) -> tuple[Fixture | None, str]:
        """The unused fixture this request matches; else None and why, against the closest one."""
        body = normalize(body)
        closest = "no fixture for this method and path"
        for fixture in (f for f in self.fixtures if f.method == method and f.target == target):
            difference = first_difference(fixture.body, body)
            if difference is None and not fixture.used:
                return fixture, ""
            closest = f"{fixture.path.name}: {difference or 'matches, but was already replayed'}"
        if self.nearest:
            # the same call whatever kind it asks for: Gemini's stream and non-stream paths differ
            call = read_call(method, target, body)
            same_call = [f for f in self.fixtures if f.method == method and f.call.same == call.same]
            if same_call:
                self.approximated.append(f"{method} {target}: {closest}")
                log.info("replay: no exact recording, answering from the nearest (%s)", closest)
                return nearest_fixture(same_call, body, call.stream), ""
        return None, f"{method} {target}: {closest}"

    def reply(self, method: str, target: str, body: Any) -> tuple[int, str, bytes]:
        """Status, content type and body of the answer to a request: its fixture's recorded answer,
        converted in nearest mode when the recording is of the other kind (stream or not); 599 when no
        fixture matches."""
        fixture, why = self.match(method, target, body)
        if fixture is None:
            self.mismatches.append(why)
            return (
                NO_MATCH_STATUS,
                WHOLE,
                json.dumps({"error": {"message": f"replay: no fixture matches: {why}"}}).encode(),
            )
        fixture.used = True
        call = read_call(method, target, body)
        if self.nearest and fixture.call.stream != call.stream and call.route is not None:
            return self._converted(fixture, call, body)
        response = fixture.data["response"]
        content_type = {k.lower(): v for k, v in response["headers"].items()}.get("content-type", "")
        return response["status"], content_type, fixture.response_bytes()

    def _converted(self, fixture: Fixture, call: Call, body: Any) -> tuple[int, str, bytes]:
        """A nearest recording of the other kind, converted; else an error that says what to do. Noted on
        this call's `approximated` line (the one `match` has just added)."""
        recorded = fixture.call.kind
        try:
            content_type, data = converted(fixture, call, body)
        except Unconvertible as e:
            message = (
                f"offline mode: the corpus has no {call.kind} recording of this call, and its {recorded} "
                f"recording {fixture.path.name} cannot be converted ({e}); re-record the corpus with "
                f"scripts/record_demo_corpus.py, or capture this call again as a {call.kind} request "
                f"and export it (llmbridge export-fixture)"
            )
            self.approximated[-1] += f"; not converted from a {recorded} recording ({e})"
            log.warning("replay: %s", message)
            return UNCONVERTIBLE_STATUS, WHOLE, unconvertible_error(call, message)
        self.approximated[-1] += f"; converted from a {recorded} recording ({fixture.path.name})"
        log.info(
            "replay: answered a %s call converted from a %s recording (%s)", call.kind, recorded, fixture.path.name
        )
        return 200, content_type, data

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while await self._one(reader, writer):
                pass
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    async def _one(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
        method, target, _ = head[0].split(" ", 2)
        headers = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in head[1:] if h)}
        raw = await reader.readexactly(int(headers.get("content-length", 0)))
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode(errors="replace")
        await self._send(writer, *self.reply(method, target, body))
        return True

    async def _send(self, writer: asyncio.StreamWriter, status: int, content_type: str, body: bytes) -> None:
        writer.write(
            f"HTTP/1.1 {status} Replayed\r\ncontent-type: {content_type}\r\ntransfer-encoding: chunked\r\n\r\n".encode(
                "latin-1"
            )
        )
        for start in range(0, len(body), self.chunk_size):
            piece = body[start : start + self.chunk_size]
            writer.write(b"%x\r\n%s\r\n" % (len(piece), piece))
            await writer.drain()
        writer.write(b"0\r\n\r\n")
        await writer.drain()


def base_url_lines(server: ReplayServer) -> list[str]:
    """What to set as each fixture provider's `base_url` (OpenAI-compatible ones end in /v1)."""
    from llmbridge.providers.base import PROVIDERS, provider_class

    names = sorted({str(f.data.get("provider")) for f in server.fixtures if f.data.get("provider") in PROVIDERS})
    return [
        f'  provider {name!r}: base_url = "{server.base_url}{provider_class(name).base_url_path}"' for name in names
    ]


async def serve_forever(paths: list[Path], port: int) -> None:
    server = await ReplayServer(load_fixtures(paths)).start(port)
    lines = [
        f"replaying {len(server.fixtures)} fixtures on {server.base_url} (Ctrl-C stops); point the accounts at it:",
        *base_url_lines(server),
    ]
    print("\n".join(lines), flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await server.close()
