"""Lone surrogates (issue 10, point 5), in process: a request body whose JSON holds `"\\ud800"` (half a
UTF-16 pair, not valid Unicode) is a 400 naming the field at every door — whether or not the field is
forwarded — and the exchange is recorded; the recorder never loses a row to text UTF-8 cannot encode.
The same against the real bridge process: tests/test_e2e_faults_recorded.py."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path
from typing import Any

import httpx
import pytest

from llmbridge.bridge import IncomingRequest
from llmbridge.formats import load_formats
from llmbridge.hostile import escape_surrogates, lone_surrogate_path, scrub_surrogates
from llmbridge.recorder import Recorder
from tests.bridge_kit import KEY, answer, make_bridge, streamed, text_stream
from tests.fakes.recordings import exchange, user

LONE = "\\ud800"  # as JSON writes it: the six characters backslash, u, d, 8, 0, 0


def upstream_never_called(request: httpx.Request) -> httpx.Response:
    raise AssertionError("a request with invalid Unicode reached the upstream")


# door -> (path, body with LONE at the named place, the field named in the answer)
CASES: list[tuple[str, str, str, str]] = [
    (
        "openai prompt",
        "/v1/chat/completions",
        '{"model":"m","messages":[{"role":"user","content":"hi ' + LONE + '"}]}',
        "messages[0].content",
    ),
    (
        "openai user (not forwarded)",
        "/v1/chat/completions",
        '{"model":"m","messages":[{"role":"user","content":"hi"}],"user":"' + LONE + '"}',
        "user",
    ),
    (
        "openai metadata key",
        "/v1/chat/completions",
        '{"model":"m","messages":[{"role":"user","content":"hi"}],"metadata":{"k' + LONE + '":"v"}}',
        "metadata.k\\ud800",
    ),
    (
        "anthropic prompt",
        "/v1/messages",
        '{"model":"m","max_tokens":5,"messages":[{"role":"user","content":[{"type":"text","text":"' + LONE + '"}]}]}',
        "messages.0.content.0.text",
    ),
    (
        "anthropic metadata (not forwarded)",
        "/v1/messages",
        '{"model":"m","max_tokens":5,"messages":[{"role":"user","content":"hi"}],"metadata":{"user_id":"'
        + LONE
        + '"}}',
        "metadata.user_id",
    ),
    (
        "gemini prompt",
        "/v1beta/models/m:generateContent",
        '{"contents":[{"role":"user","parts":[{"text":"a\\udfff"}]}]}',
        "contents.0.parts.0.text",
    ),
    (
        "responses prompt",
        "/v1/responses",
        '{"model":"m","input":"' + LONE + '"}',
        "input",
    ),
]


def headers_for(path: str) -> dict[str, str]:
    return {"x-goog-api-key": KEY} if path.startswith("/v1beta") else {"authorization": f"Bearer {KEY}"}


def message_of(body: bytes) -> tuple[str, str | None]:
    error = json.loads(body)["error"]
    return error["message"], error.get("param")


@pytest.mark.parametrize("name, path, body, field", CASES, ids=[c[0] for c in CASES])
def test_a_lone_surrogate_is_a_400_naming_the_field_and_recorded(name: str, path: str, body: str, field: str) -> None:
    bridge, _ = make_bridge(upstream_never_called)
    status, answered = asyncio.run(answer(bridge, IncomingRequest("POST", path, headers_for(path), body.encode())))
    assert status == 400, answered
    answered.decode()  # the answer itself is valid UTF-8
    message, _ = message_of(answered)
    assert message.startswith(field) and "lone UTF-16 surrogate" in message, message
    (record,) = bridge.records  # type: ignore[attr-defined]
    assert record.status == 400 and record.error_kind == "invalid_request" and record.request_raw is not None


def test_a_surrogate_pair_is_one_character_and_goes_through() -> None:
    bridge, _ = make_bridge(lambda request: streamed(text_stream("ok")))
    body = b'{"model":"m","messages":[{"role":"user","content":"\\ud83d\\ude00"}]}'
    status, answered = asyncio.run(
        answer(bridge, IncomingRequest("POST", "/v1/chat/completions", headers_for(""), body))
    )
    assert status == 200, answered
    assert bridge.records[0].request_canonical["messages"][0]["parts"][0]["text"] == "\U0001f600"  # type: ignore[attr-defined]


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_nan_and_infinity_are_not_json(constant: str) -> None:
    bridge, _ = make_bridge(upstream_never_called)
    body = b'{"model":"m","messages":[{"role":"user","content":"hi"}],"temperature":' + constant.encode() + b"}"
    status, answered = asyncio.run(
        answer(bridge, IncomingRequest("POST", "/v1/chat/completions", headers_for(""), body))
    )
    assert status == 400 and constant in message_of(answered)[0]


def test_a_passthrough_header_that_is_not_ascii_is_a_400() -> None:
    bridge, _ = make_bridge(upstream_never_called)
    headers = {"x-api-key": KEY, "anthropic-beta": "tools-\udcff"}  # a byte that was not UTF-8, as mitmproxy hands it
    body = b'{"model":"m","max_tokens":5,"messages":[{"role":"user","content":"hi"}]}'
    status, answered = asyncio.run(answer(bridge, IncomingRequest("POST", "/v1/messages", headers, body)))
    assert status == 400 and "anthropic-beta" in answered.decode()


def test_every_door_names_paths_in_its_own_style() -> None:
    paths = {door.name: door.field_path(["messages", 0, "content"]) for door in load_formats()}
    assert paths == {
        "openai": "messages[0].content",
        "responses": "messages[0].content",
        "anthropic": "messages.0.content",
        "gemini": "messages.0.content",
    }


def test_lone_surrogate_path_is_free_without_an_escape_and_finds_keys_and_values() -> None:
    assert lone_surrogate_path(b'{"a": "\xf0\x9f\x98\x80"}', {"a": "\U0001f600"}) is None
    sentinel: Any = object()  # not walked: the raw body has no surrogate escape
    assert lone_surrogate_path(b'{"a": 1}', sentinel) is None
    raw = b'{"a":[1,{"b":"x\\udc00"}],"c":"\\ud800"}'
    assert lone_surrogate_path(raw, json.loads(raw)) == ["a", 1, "b"]  # the first in the text
    raw = b'{"c\\ud800":1}'
    assert lone_surrogate_path(raw, json.loads(raw)) == ["c\ud800"]
    assert escape_surrogates("a\ud800b") == "a\\ud800b"
    assert scrub_surrogates({"k\udfff": ["\ud800", 1]}) == {"k\ufffd": ["\ufffd", 1]}


def record_and_read(path: Path, record: Any) -> sqlite3.Connection:
    recorder = Recorder(path)
    recorder.open()
    recorder.submit(record)
    recorder.flush()
    recorder.close()
    assert recorder.stats["written"] == 1 and recorder.stats["failed"] == 0
    return sqlite3.connect(path)


def test_a_refused_request_is_recorded_as_the_client_sent_it(tmp_path: Path) -> None:
    # a door's 400: no canonical request, the raw body keeps the lone surrogate as its JSON escape
    record = exchange([user("q")], "a")
    record.request_canonical, record.result, record.status = None, None, 400
    record.request_raw = {"messages": [{"role": "user", "content": "hi"}], "user": "\udfff"}
    db = record_and_read(tmp_path / "bridge.db", record)
    (raw,) = db.execute("SELECT request_raw FROM exchanges").fetchone()
    assert "\\udfff" in raw and json.loads(raw)["user"] == "\udfff"


def test_the_recorder_never_loses_a_row_to_a_lone_surrogate(tmp_path: Path) -> None:
    # surrogates everywhere (an upstream's answer, headers, messages): written, with U+FFFD in their place
    record = exchange([user("question \ud800")], "answer \udc00", upstream_body=b"data: \xff\xfe\n\n")
    record.error_message = "upstream said \ud800"
    record.attempts[0].request_headers = {"anthropic-beta": "x\udcff"}
    db = record_and_read(tmp_path / "bridge.db", record)
    (message,) = db.execute("SELECT error_message FROM exchanges").fetchone()
    assert message == "upstream said \ufffd"
    texts = [row[0] for row in db.execute("SELECT text FROM parts WHERE text IS NOT NULL")]
    assert "question \ufffd" in texts and "answer \ufffd" in texts, texts
    (body,) = db.execute("SELECT response_body FROM attempts").fetchone()
    assert bytes(body) == b"data: \xff\xfe\n\n"  # the raw upstream bytes as received
