"""Replay fixtures (llmbridge/recorder/export.py) hold what crossed the provider edge, secrets removed."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
import sqlite_utils

from llmbridge.recorder import Recorder
from llmbridge.recorder.export import ExportError, export_fixture, fixture_for
from tests.fakes.recordings import exchange, user


def record_all(path: Path, records, record_bodies: bool = True) -> None:
    rec = Recorder(path, record_bodies=record_bodies)
    rec.open()
    for record in records:
        rec.submit(record)
    rec.flush()
    rec.close()
    assert rec.stats["failed"] == 0


def test_export_fixture_holds_translated_request_and_raw_bytes(tmp_path: Path) -> None:
    path = tmp_path / "bridge.db"
    record = exchange([user("hi")], "hello", stream=True)
    record.attempts[0].request_headers["Authorization"] = "Bearer SECRET-TOKEN"
    record_all(path, [record])
    out = export_fixture(sqlite_utils.Database(path), record.id, tmp_path / "replay")
    assert out.parent == tmp_path / "replay" and out.name == f"fake-{record.id}.json"
    fixture = json.loads(out.read_text())
    assert fixture["format"] == "llmbridge-replay-fixture" and fixture["provider"] == "fake"
    assert fixture["request"]["url"] == "https://upstream.test/v1/chat"
    assert fixture["request"]["body"] == {"model": "test-model", "n": 1}
    assert fixture["request"]["headers"]["Authorization"] == "[redacted]"
    assert base64.b64decode(fixture["response"]["body_base64"]) == bytes(record.attempts[0].response_body)
    assert fixture["response"]["status"] == 200
    assert fixture["client"]["stream"] is True and fixture["expected"]["finish_reason"] == "stop"
    assert "SECRET-TOKEN" not in out.read_text()


def test_export_chooses_an_attempt_and_explains_failures(tmp_path: Path) -> None:
    path = tmp_path / "bridge.db"
    record = exchange([user("hi")])
    record.attempts.insert(0, exchange([user("x")], status=429).attempts[0])
    record_all(path, [record])
    db = sqlite_utils.Database(path)
    assert fixture_for(db, record.id)["attempt"] == 2
    assert fixture_for(db, record.id, attempt=1)["response"]["status"] == 429
    with pytest.raises(ExportError, match="no attempt 3"):
        fixture_for(db, record.id, attempt=3)
    with pytest.raises(ExportError, match="no exchange 'nope'"):
        fixture_for(db, "nope")


def test_export_refuses_metadata_only_recordings(tmp_path: Path) -> None:
    path = tmp_path / "bridge.db"
    record = exchange([user("hi")])
    record_all(path, [record], record_bodies=False)
    with pytest.raises(ExportError, match="record_bodies = false"):
        fixture_for(sqlite_utils.Database(path), record.id)
