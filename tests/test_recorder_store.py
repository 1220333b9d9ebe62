"""One exchange becomes rows (llmbridge/recorder/store.py): route, timings, usage and attempts; bodies only
when `record_bodies` is on; credential refresh traffic never. (Secrets: tests/test_recorder_redaction.py.)"""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlite_utils

from llmbridge.recorder import Recorder
from tests.fakes.recordings import exchange, user


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "recordings" / "bridge.db"


@pytest.fixture
def recorder(db_path: Path):
    rec = Recorder(db_path)
    rec.open()
    yield rec
    rec.close()


def test_exchange_and_attempt_rows_hold_route_timings_and_usage(recorder: Recorder, db_path: Path) -> None:
    record = exchange([user("hello")], "hi there", stream=True)
    recorder.submit(record)
    recorder.flush()
    db = sqlite_utils.Database(db_path)
    row = db["exchanges"].get(record.id)
    assert (row["client_format"], row["model_requested"], row["model_served"]) == (
        "openai",
        "test-model",
        "test-model-served",
    )
    route = (row["account"], row["provider"], row["attempt_count"], row["status"])
    assert route == ("acct-1", "fake", 1, 200)
    timing = (row["ttfb_ms"], row["duration_ms"], row["stream"], row["finish_reason"])
    assert timing == (12.0, 40.0, 1, "stop")
    assert (row["input_tokens"], row["output_tokens"], row["usage_estimated"]) == (10, 2, 0)
    assert row["key_label"] == "key1" and row["client_disconnected"] == 0
    attempt = next(db["attempts"].rows_where("exchange_id = ?", [record.id]))
    assert attempt["response_body"] == bytes(record.attempts[0].response_body)
    assert attempt["position"] == 1 and attempt["status"] == 200
    assert recorder.stats == {"written": 1, "failed": 0, "dropped": 0, "queued": 0}


def test_record_bodies_off_keeps_metadata_only(db_path: Path) -> None:
    rec = Recorder(db_path, record_bodies=False)
    rec.open()
    record = exchange([user("private words")], "secret answer")
    rec.submit(record)
    rec.flush()
    rec.close()
    db = sqlite_utils.Database(db_path)
    row = db["exchanges"].get(record.id)
    assert row["status"] == 200 and row["input_tokens"] == 10
    assert row["request_raw"] is None and row["request_json"] is None and row["request_message_hash"] is None
    assert db["messages"].count == 0 and db["parts"].count == 0
    attempt = next(db["attempts"].rows)
    assert attempt["response_body"] is None and attempt["request_json"] is None
    assert attempt["response_size"] > 0


def test_disconnected_stream_is_recorded_whole(recorder: Recorder, db_path: Path) -> None:
    record = exchange([user("long story")], "the partial answer so far", stream=True)
    record.client_disconnected = True
    recorder.submit(record)
    recorder.flush()
    db = sqlite_utils.Database(db_path)
    row = db["exchanges"].get(record.id)
    assert row["client_disconnected"] == 1
    answer = next(db["parts"].rows_where("message_hash = ?", [row["response_message_hash"]]))
    assert answer["text"] == "the partial answer so far"


def test_credential_refresh_attempts_are_never_recorded(recorder: Recorder, db_path: Path) -> None:
    record = exchange([user("hi")])
    refresh = exchange([user("x")]).attempts[0]
    refresh.url = "https://oauth2.googleapis.com/token"
    record.attempts.insert(0, refresh)
    recorder.submit(record)
    recorder.flush()
    urls = [r["url"] for r in sqlite_utils.Database(db_path)["attempts"].rows]
    assert urls == ["https://upstream.test/v1/chat"]
