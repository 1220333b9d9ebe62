"""The recorder writes every exchange to SQLite, off the caller's thread, and never loses one silently."""

from __future__ import annotations

import base64
import logging
import sqlite3
import threading
from pathlib import Path

import pytest
import sqlite_utils

from llmbridge.canonical import ImagePart, Message, ReasoningPart, TextPart, ToolCallPart, ToolResultPart
from llmbridge.config import BridgeConfig
from llmbridge.errors import ConfigError
from llmbridge.recorder import Recorder, RecorderError, recorder_from_config
from llmbridge.recorder.messages import normalize_part
from llmbridge.recorder.schema import applied, connect, migrate
from tests.fakes.recordings import conversation, exchange, user


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "recordings" / "bridge.db"


@pytest.fixture
def recorder(db_path: Path):
    rec = Recorder(db_path)
    rec.open()
    yield rec
    rec.close()


def count(path: Path, table: str) -> int:
    return sqlite_utils.Database(path)[table].count


def test_open_creates_parent_dir_and_uses_wal(db_path: Path) -> None:
    rec = Recorder(db_path)
    rec.open()
    rec.close()
    assert db_path.is_file()
    assert sqlite3.connect(db_path).execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_exchange_and_attempt_rows_hold_route_timings_and_usage(recorder: Recorder, db_path: Path) -> None:
    record = exchange([user("hello")], "hi there", stream=True)
    recorder.submit(record)
    recorder.flush()
    db = sqlite_utils.Database(db_path)
    row = db["exchanges"].get(record.id)
    assert (row["client_format"], row["model_requested"], row["model_served"]) == (
        "openai", "test-model", "test-model-served")
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


def test_history_resent_each_turn_adds_only_new_messages(recorder: Recorder, db_path: Path) -> None:
    for record in conversation(3):
        recorder.submit(record)
    recorder.flush()
    # system + (user, assistant) x 3, each stored once; the assistant answer of turn N is the same
    # message as the one the client re-sends in turn N+1.
    assert count(db_path, "messages") == 7
    assert count(db_path, "parts") == 7
    assert count(db_path, "exchanges") == 3


def test_response_links_to_request_chain_rooted_at_system_prompt(recorder: Recorder, db_path: Path) -> None:
    records = conversation(2)
    for record in records:
        recorder.submit(record)
    recorder.flush()
    db = sqlite_utils.Database(db_path)
    row = db["exchanges"].get(records[-1].id)
    chain, digest = [], row["response_message_hash"]
    while digest:
        message = db["messages"].get(digest)
        text = next(db["parts"].rows_where("message_hash = ?", [digest]))["text"]
        chain.append((message["role"], text))
        digest = message["parent_hash"]
    assert chain[::-1] == [("system", "You are a terse assistant."), ("user", "question 0"),
                           ("assistant", "answer 0"), ("user", "question 1"), ("assistant", "answer 1")]


def test_same_history_under_another_system_prompt_is_a_new_chain(recorder: Recorder, db_path: Path) -> None:
    recorder.submit(exchange([user("same")], system="one"))
    recorder.submit(exchange([user("same")], system="two"))
    recorder.flush()
    assert count(db_path, "messages") == 2 * 3


def test_dump_with_or_without_defaults_hashes_the_same() -> None:
    parts = [TextPart(text="t"), ReasoningPart(text="r", signature="s"),
             ToolCallPart(id="c1", name="f", arguments={"a": 1}),
             ToolResultPart(tool_call_id="c1", content=[TextPart(text="out")]), ImagePart(data="AAAA")]
    for part in parts:
        full, lean = part.model_dump(mode="json"), part.model_dump(mode="json", exclude_defaults=True)
        assert normalize_part(full) == normalize_part(lean), part.type
        assert normalize_part(lean)["type"] == part.type


def test_parts_keep_tool_calls_results_reasoning_and_images_once(recorder: Recorder, db_path: Path) -> None:
    png = base64.b64encode(b"\x89PNG fake image bytes").decode()
    history = [
        Message(role="user", parts=[TextPart(text="look"), ImagePart(data=png, media_type="image/png")]),
        Message(role="assistant", parts=[ReasoningPart(text="hmm", signature="sig"),
                                         ToolCallPart(id="c1", name="lookup", arguments={"q": "x"})]),
        Message(role="user", parts=[ToolResultPart(tool_call_id="c1", name="lookup",
                                                   content=[TextPart(text="found"),
                                                            ImagePart(data=png, media_type="image/png")])]),
    ]
    recorder.submit(exchange(history, "done"))
    recorder.flush()
    db = sqlite_utils.Database(db_path)
    kinds = [r["type"] for r in db.query("SELECT type FROM parts ORDER BY rowid")]
    assert kinds == ["text", "text", "image", "reasoning", "tool_call", "tool_result", "text"]
    assert db["blobs"].count == 1  # the same image twice is stored once
    blob = next(db["blobs"].rows)
    assert blob["content"] == b"\x89PNG fake image bytes" and blob["media_type"] == "image/png"
    tool = next(db["parts"].rows_where("type = 'tool_call'"))
    assert (tool["tool_name"], tool["tool_call_id"]) == ("lookup", "c1")
    assert png not in "".join(str(r) for r in db["parts"].rows)  # images are not inlined in parts


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


def test_open_failure_is_a_one_line_config_error(tmp_path: Path) -> None:
    not_a_db = tmp_path / "garbage.db"
    not_a_db.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(ConfigError) as info:
        Recorder(not_a_db).open()
    assert isinstance(info.value, RecorderError)
    assert str(not_a_db) in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(ConfigError, match="cannot open recordings database"):
        Recorder(tmp_path).open()  # a directory


def test_migrations_are_idempotent(db_path: Path) -> None:
    for _ in range(2):
        rec = Recorder(db_path)
        rec.open()
        rec.close()
    db = connect(db_path)
    assert migrate(db) == []
    assert applied(db) == ["m001_initial", "m002_parts_fts"]
    assert db["_sqlite_migrations"].count == 2


def test_full_queue_drops_loudly_and_counts(db_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    rec = Recorder(db_path, queue_size=2)
    rec.open()
    gate = threading.Event()
    real_write = rec._write
    rec._write = lambda writer, record: (gate.wait(10), real_write(writer, record))  # type: ignore[method-assign]
    with caplog.at_level(logging.ERROR, logger="llmbridge.recorder"):
        for record in conversation(6):
            rec.submit(record)  # returns at once even though the writer is stuck
    assert rec.stats["dropped"] >= 3
    assert any("dropped so far" in r.message and "queue full" in r.message for r in caplog.records)
    gate.set()
    rec.flush()
    stats = rec.stats
    rec.close()
    assert stats["written"] + stats["dropped"] == 6 and stats["failed"] == 0
    assert count(db_path, "exchanges") == stats["written"]


def test_write_failure_is_logged_and_counted(recorder: Recorder, db_path: Path,
                                             caplog: pytest.LogCaptureFixture) -> None:
    recorder.submit(exchange([user("before")]))
    recorder.flush()
    with sqlite3.connect(db_path) as other:
        other.execute("DROP TABLE attempts")
    with caplog.at_level(logging.ERROR, logger="llmbridge.recorder"):
        recorder.submit(exchange([user("after")]))
        recorder.flush()
    assert recorder.stats["failed"] == 1 and recorder.stats["written"] == 1
    assert any("failed" in r.message and "attempts" in r.message for r in caplog.records)
    assert count(db_path, "exchanges") == 1  # the failed exchange rolled back whole


def test_many_threads_submitting_at_once(recorder: Recorder, db_path: Path) -> None:
    def client(n: int) -> None:
        for record in conversation(5):
            record.account = f"acct-{n}"
            recorder.submit(record)

    threads = [threading.Thread(target=client, args=(n,)) for n in range(40)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    recorder.flush(timeout=60)
    assert recorder.stats == {"written": 200, "failed": 0, "dropped": 0, "queued": 0}
    assert count(db_path, "exchanges") == 200
    assert count(db_path, "messages") == 11  # 40 identical conversations share every message


def test_submit_after_close_is_counted_as_dropped(db_path: Path) -> None:
    rec = Recorder(db_path)
    rec.open()
    rec.close()
    rec.submit(exchange([user("late")]))
    assert rec.stats["dropped"] == 1


def test_flush_times_out_loudly(db_path: Path) -> None:
    rec = Recorder(db_path)
    rec.open()
    gate = threading.Event()
    rec._write = lambda writer, record: gate.wait(10)  # type: ignore[method-assign]
    rec.submit(exchange([user("slow")]))
    with pytest.raises(TimeoutError, match="1 exchanges still unwritten"):
        rec.flush(timeout=0.2)
    gate.set()
    rec.close()


def test_recorder_from_config_follows_record_options(tmp_path: Path) -> None:
    assert recorder_from_config(BridgeConfig(record=False)) is None
    rec = recorder_from_config(BridgeConfig(database=str(tmp_path / "x.db"), record_bodies=False))
    assert rec is not None and rec.path == tmp_path / "x.db" and rec.record_bodies is False
