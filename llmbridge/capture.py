"""Capture: an official client's own upstream traffic, recorded into the bridge's SQLite database.

`mitmdump -s addons/capture.py` (the only mitmproxy side of it) hands every finished HTTP exchange to
`CaptureStore.record`. Rows go to the `captures` table of the same database the bridge records to,
each marked with its `source` (`captured` for an official client, or whatever label the run was
given, e.g. `bridge` when the bridge's own upstream traffic is captured the same way for
`llmbridge drift`) and its `session` (one capture run).

What is kept is what a server could see: method, URL, request headers *as a list in wire order with
their original case*, the request body, and the answer (status, headers, body). Secrets are redacted
by structure before anything is written: credential header values keep only their scheme word
(`Bearer [redacted]`), `key=`-style query parameters and token fields of JSON bodies go
(`llmbridge.redact`). Captures export as replay fixtures (`export_capture`, `llmbridge
export-capture`).
"""

from __future__ import annotations

import base64
import json
import sqlite3
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from llmbridge.redact import REDACTED, is_credential_url, is_secret_header, redact_body, redact_json, redact_url

TABLE = "captures"
SCHEMA = f"""
create table if not exists {TABLE} (
    id integer primary key,
    session text not null,          -- one capture run
    source text not null,           -- 'captured' (an official client) or the run's label
    client text,                    -- the client, from its User-Agent (e.g. GeminiCLI-tui/0.61.0)
    seq integer not null,           -- order within the session
    started real not null,          -- unix time the request began
    duration_ms real,
    method text not null,
    url text not null,              -- redacted
    request_headers text not null,  -- JSON [[name, value], ...] in wire order, original case, redacted
    request_body text,              -- JSON (redacted) or text
    status integer,
    response_headers text,          -- JSON [[name, value], ...]
    response_body blob,             -- the answer's bytes as the client got them (decoded), redacted
    error text
);
create index if not exists captures_session on {TABLE}(session, seq);
"""


@dataclass
class Captured:
    """One exchange as the capture saw it; `request_headers` keeps wire order and case."""

    method: str
    url: str
    request_headers: list[tuple[str, str]]
    request_body: bytes
    status: int | None = None
    response_headers: list[tuple[str, str]] = field(default_factory=list)
    response_body: bytes = b""
    started: float = field(default_factory=time.time)
    duration_ms: float | None = None
    error: str | None = None


def redact_header_value(name: str, value: str) -> str:
    """A credential header keeps its scheme word (`Bearer`), so a drift check still sees the form."""
    if not is_secret_header(name):
        return value
    scheme, _, rest = value.partition(" ")
    return f"{scheme} {REDACTED}" if rest and scheme.isalpha() else REDACTED


def redact_header_list(headers: list[tuple[str, str]]) -> list[list[str]]:
    return [[name, redact_header_value(name, value)] for name, value in headers]


def client_of(headers: list[tuple[str, str]]) -> str | None:
    """`GeminiCLI-tui/0.61.0` from the User-Agent: its first product token, model dropped."""
    agent = next((v for k, v in headers if k.lower() == "user-agent"), "")
    first = agent.split(" ", 1)[0]
    return "/".join(first.split("/")[:2]) or None


def _body_text(raw: bytes) -> str | None:
    if not raw:
        return None
    try:
        return json.dumps(redact_json(json.loads(raw)), ensure_ascii=False)
    except ValueError:
        return redact_body(raw).decode("utf-8", errors="replace")


class CaptureStore:
    def __init__(self, path: Path | str, source: str = "captured", session: str | None = None) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.source = source
        self.session = session or f"{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:8]}"
        self.conn = sqlite3.connect(self.path, check_same_thread=False)
        self.conn.execute("pragma journal_mode=wal")
        self.conn.executescript(SCHEMA)
        self.seq = 0

    def record(self, item: Captured) -> int:
        self.seq += 1
        cursor = self.conn.execute(
            f"insert into {TABLE} (session, source, client, seq, started, duration_ms, method, url, "
            "request_headers, request_body, status, response_headers, response_body, error) "
            "values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                self.session,
                self.source,
                client_of(item.request_headers),
                self.seq,
                item.started,
                item.duration_ms,
                item.method,
                redact_url(item.url),
                json.dumps(redact_header_list(item.request_headers)),
                REDACTED if is_credential_url(item.url) and item.request_body else _body_text(item.request_body),
                item.status,
                json.dumps(redact_header_list(item.response_headers)),
                redact_body(item.response_body) if item.response_body else None,
                item.error,
            ),
        )
        self.conn.commit()
        return int(cursor.lastrowid or 0)

    def close(self) -> None:
        self.conn.close()


# --- reading captures back ---------------------------------------------------------------------------


@dataclass
class Call:
    """One captured request (and its answer), as drift and the fixture export read it."""

    seq: int
    method: str
    url: str
    headers: list[tuple[str, str]]
    body: Any  # parsed JSON, text, or None
    status: int | None = None
    response_headers: list[tuple[str, str]] = field(default_factory=list)
    response_body: bytes = b""

    @property
    def target(self) -> str:
        parts = urlsplit(self.url)
        return parts.path + (f"?{parts.query}" if parts.query else "")

    @property
    def rpc(self) -> str:
        """The method's short name: `streamGenerateContent`, `loadCodeAssist`, `operations`."""
        path = urlsplit(self.url).path
        if ":" in path.rsplit("/", 1)[-1]:
            return path.rsplit(":", 1)[-1]
        return path.rstrip("/").rsplit("/", 2)[-2] if "/operations/" in path else path.rsplit("/", 1)[-1]


def _json_or_text(text: str | None) -> Any:
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return text


def sessions(db: Path) -> list[tuple[str, str, str | None, int]]:
    """(session, source, client, number of calls) of every capture run, oldest first."""
    with sqlite3.connect(db) as conn:
        rows = conn.execute(
            f"select session, source, max(client), count(*) from {TABLE} group by session order by min(id)"
        ).fetchall()
    return [(str(s), str(src), c, int(n)) for s, src, c, n in rows]


def load_session(db: Path, selector: str) -> list[Call]:
    """The calls of one capture run: `selector` is a session id, or a source label (its latest run)."""
    with sqlite3.connect(db) as conn:
        try:
            found = conn.execute(f"select session from {TABLE} where session = ? limit 1", (selector,)).fetchone()
            if found is None:
                found = conn.execute(
                    f"select session from {TABLE} where source = ? order by id desc limit 1", (selector,)
                ).fetchone()
        except sqlite3.OperationalError:
            found = None
        if found is None:
            raise LookupError(f"no capture session or source {selector!r} in {db}")
        rows = conn.execute(
            f"select seq, method, url, request_headers, request_body, status, response_headers, response_body "
            f"from {TABLE} where session = ? order by seq",
            (found[0],),
        ).fetchall()
    return [
        Call(
            seq=int(seq),
            method=str(method),
            url=str(url),
            headers=[(k, v) for k, v in json.loads(headers)],
            body=_json_or_text(body),
            status=status,
            response_headers=[(k, v) for k, v in json.loads(rheaders or "[]")],
            response_body=bytes(rbody or b""),
        )
        for seq, method, url, headers, body, status, rheaders, rbody in rows
    ]


# --- fixtures ----------------------------------------------------------------------------------------


def call_fixture(call: Call, provider: str, source: str) -> dict[str, Any]:
    """One call in the replay fixture format (`replay/README.md`), plus the header list in order."""
    return {
        "provider": provider,
        "source": source,
        "request": {
            "method": call.method,
            "url": call.url,
            "headers": dict(call.headers),
            "header_list": [list(h) for h in call.headers],
            "body": call.body,
        },
        "response": {
            "status": call.status,
            "headers": dict(call.response_headers),
            "body_base64": base64.b64encode(call.response_body).decode(),
        },
    }


def load_fixture_calls(folder: Path) -> list[Call]:
    """The calls of an exported capture folder, in order (`NNN-<rpc>.json`)."""
    calls = []
    for i, path in enumerate(sorted(folder.glob("*.json"))):
        data = json.loads(path.read_text())
        request, response = data["request"], data.get("response") or {}
        headers = request.get("header_list") or [[k, v] for k, v in request.get("headers", {}).items()]
        calls.append(
            Call(
                seq=i + 1,
                method=request["method"],
                url=request["url"],
                headers=[(k, v) for k, v in headers],
                body=request.get("body"),
                status=response.get("status"),
                response_headers=list((response.get("headers") or {}).items()),
                response_body=base64.b64decode(response.get("body_base64") or ""),
            )
        )
    return calls


def export_capture(db: Path, selector: str, out: Path, provider: str = "gemini-cli") -> list[Path]:
    """Write one capture run as replay fixtures, one file per call (`NNN-<rpc>.json`), in order."""
    calls = load_session(db, selector)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for call in calls:
        path = out / f"{call.seq:03d}-{call.rpc}.json"
        path.write_text(json.dumps(call_fixture(call, provider, "captured"), indent=1, ensure_ascii=False) + "\n")
        written.append(path)
    return written
