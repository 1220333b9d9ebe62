"""End to end (issue 10, points 5 and 7): faults through the real bridge process, checking what the
client received against what was recorded in SQLite.

* a lone surrogate (`"\\ud800"`) in a prompt, or in a field that is not forwarded (`user`, `metadata`),
  is a 400 naming the field at every door, nothing reaches the upstream, and the exchange is recorded;
* a malformed upstream stream (an unparsable event then `[DONE]`, binary bytes mid-stream) is an
  upstream protocol error: a 502 in the door's dialect before the stream started, the door's error
  event after; recorded as an error with the raw upstream bytes kept.
"""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path

import httpx
import pytest

from tests.bridge_process import CLIENT_KEY, BridgeProcess, write_config
from tests.fakes.openai_upstream import FakeOpenAI, Reply, text_reply

LONE = "\\ud800"


@pytest.fixture(scope="module")
def upstream():
    with FakeOpenAI() as fake:
        yield fake


@pytest.fixture(scope="module")
def bridge(tmp_path_factory, upstream):
    workdir = tmp_path_factory.mktemp("faults-recorded")
    account = {
        "name": "only",
        "provider": "openai",
        "api_key": upstream.api_key,
        "base_url": upstream.base_url,
        "models": ["gpt-test"],
        "requests_per_minute": 1000,
        "max_concurrent": 20,
    }
    config = write_config(workdir / "bridge.toml", [account], database=str(workdir / "bridge.db"))
    with BridgeProcess(workdir, config) as process:
        process.db = workdir / "bridge.db"  # type: ignore[attr-defined]
        yield process


def post(bridge: BridgeProcess, path: str, body: str | bytes, **headers: str) -> httpx.Response:
    data = body.encode() if isinstance(body, str) else body
    headers = {"authorization": f"Bearer {CLIENT_KEY}", "x-goog-api-key": CLIENT_KEY, **headers}
    return httpx.post(bridge.base_url + path, content=data, headers=headers, timeout=30)


def recorded(bridge: BridgeProcess, status: int, count: int, timeout: float = 10) -> list[sqlite3.Row]:
    """The last `count` exchanges, once the recorder has written them (it writes off the hot path)."""
    deadline = time.monotonic() + timeout
    while True:
        db = sqlite3.connect(bridge.db)  # type: ignore[attr-defined]
        db.row_factory = sqlite3.Row
        rows = db.execute("SELECT * FROM exchanges ORDER BY started_at DESC, id DESC LIMIT ?", (count,)).fetchall()
        db.close()
        if len(rows) == count and all(row["status"] == status for row in rows) or time.monotonic() > deadline:
            return rows
        time.sleep(0.1)


def attempts_of(bridge: BridgeProcess, exchange_id: str) -> list[sqlite3.Row]:
    db = sqlite3.connect(bridge.db)  # type: ignore[attr-defined]
    db.row_factory = sqlite3.Row
    rows = db.execute("SELECT * FROM attempts WHERE exchange_id = ? ORDER BY position", (exchange_id,)).fetchall()
    db.close()
    return rows


SURROGATES = [
    (
        "/v1/chat/completions",
        '{"model":"gpt-test","messages":[{"role":"user","content":"' + LONE + '"}]}',
        "messages[0].content",
    ),
    (
        "/v1/chat/completions",
        '{"model":"gpt-test","messages":[{"role":"user","content":"hi"}],"user":"' + LONE + '"}',
        "user",
    ),
    (
        "/v1/messages",
        '{"model":"gpt-test","max_tokens":5,"messages":[{"role":"user","content":"hi"}],'
        '"metadata":{"user_id":"' + LONE + '"}}',
        "metadata.user_id",
    ),
    (
        "/v1beta/models/gpt-test:generateContent",
        '{"contents":[{"role":"user","parts":[{"text":"' + LONE + '"}]}]}',
        "contents.0.parts.0.text",
    ),
    ("/v1/responses", '{"model":"gpt-test","input":"' + LONE + '","metadata":{"k":"v"}}', "input"),
]


def test_a_lone_surrogate_is_a_400_at_every_door_and_every_exchange_is_recorded(bridge, upstream) -> None:
    before = len(upstream.requests)
    for path, body, field in SURROGATES:
        response = post(bridge, path, body)
        assert response.status_code == 400, (path, response.text)
        assert field in response.text and "lone UTF-16 surrogate" in response.text, response.text
    assert len(upstream.requests) == before  # nothing reached the upstream
    rows = recorded(bridge, 400, len(SURROGATES))
    assert [row["status"] for row in rows] == [400] * len(SURROGATES)
    for row, (path, _, field) in zip(reversed(rows), SURROGATES):
        assert row["endpoint"] == "POST " + path and row["error_kind"] == "invalid_request"
        assert field in row["error_message"]
        assert "\\ud800" in row["request_raw"]  # what the client sent, as its JSON escape


def test_an_unparsable_event_then_done_is_a_502_recorded_with_the_raw_bytes(bridge, upstream) -> None:
    raw = b"data: {broken\n\ndata: [DONE]\n\n"
    for stream in (False, True):
        upstream.enqueue(Reply(raw=raw))
        body = {"model": "gpt-test", "messages": [{"role": "user", "content": "hi"}], "stream": stream}
        response = post(bridge, "/v1/chat/completions", json.dumps(body))
        assert response.status_code == 502, response.text
        error = response.json()["error"]
        # a non-stream request went upstream non-stream: the same bytes are a malformed whole answer
        malformed = "malformed stream" if stream else "malformed answer: a body that is not JSON"
        assert error["code"] == "upstream_protocol_error" and malformed in error["message"]
    for row in recorded(bridge, 502, 2):
        assert row["error_kind"] == "upstream_protocol_error" and row["status"] == 502
        (attempt,) = attempts_of(bridge, row["id"])
        assert attempt["error_kind"] == "upstream_protocol_error" and bytes(attempt["response_body"]) == raw


def test_binary_bytes_mid_stream_are_an_error_event_recorded_as_an_error(bridge, upstream) -> None:
    upstream.enqueue(text_reply("Hello there", pieces=2, inject={1: b"\x89PNG\r\n\x1a\n\xff\x00"}, delay=0.05))
    body = {"model": "gpt-test", "messages": [{"role": "user", "content": "hi"}], "stream": True}
    with httpx.stream(
        "POST",
        bridge.base_url + "/v1/chat/completions",
        json=body,
        headers={"authorization": f"Bearer {CLIENT_KEY}"},
        timeout=30,
    ) as response:
        assert response.status_code == 200
        lines = [line for line in response.iter_lines() if line.startswith("data: ")]
    assert "Hello" in lines[0] + lines[1]
    error = json.loads(lines[-2][6:])["error"]
    assert error["code"] == "upstream_protocol_error" and lines[-1] == "data: [DONE]"
    (row,) = recorded(bridge, 200, 1)
    assert row["error_kind"] == "upstream_protocol_error" and row["finish_reason"] != "stop"
    (attempt,) = attempts_of(bridge, row["id"])
    assert b"\x89PNG\r\n\x1a\n\xff\x00" in bytes(attempt["response_body"])  # the raw bytes, kept


def test_the_bridge_lived_through_it(bridge, upstream) -> None:
    upstream.enqueue(text_reply("still here"))
    response = post(bridge, "/v1/chat/completions", '{"model":"gpt-test","messages":[{"role":"user","content":"hi"}]}')
    assert response.status_code == 200 and response.json()["choices"][0]["message"]["content"] == "still here"
    assert Path(bridge.db).exists()  # type: ignore[attr-defined]
