"""The recorder (llmbridge/recorder/recorder.py) writes every exchange off the caller's thread and never
loses one silently: a full queue, a failed write or a slow writer is counted and logged."""

from __future__ import annotations

import logging
import sqlite3
import threading
from pathlib import Path

import pytest
import sqlite_utils

from llmbridge.config import BridgeConfig
from llmbridge.errors import ConfigError
from llmbridge.recorder import Recorder, RecorderError, recorder_from_config
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


def test_open_failure_is_a_one_line_config_error(tmp_path: Path) -> None:
    not_a_db = tmp_path / "garbage.db"
    not_a_db.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(ConfigError) as info:
        Recorder(not_a_db).open()
    assert isinstance(info.value, RecorderError)
    assert str(not_a_db) in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(ConfigError, match="cannot open recordings database"):
        Recorder(tmp_path).open()  # a directory


def test_full_queue_drops_loudly_and_counts(db_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    rec = Recorder(db_path, queue_size=2)
    rec.open()
    gate = threading.Event()
    real_write = rec._write
    rec._write = lambda writer, batch: (gate.wait(10), real_write(writer, batch))[1]  # type: ignore[method-assign]
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


def test_write_failure_is_logged_and_counted(
    recorder: Recorder, db_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
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
    rec._write = lambda writer, batch: (gate.wait(10), [None] * len(batch))[1]  # type: ignore[method-assign]
    rec.submit(exchange([user("slow")]))
    with pytest.raises(TimeoutError, match="1 exchanges still unwritten"):
        rec.flush(timeout=0.2)
    gate.set()
    rec.close()


def test_recorder_from_config_follows_record_options(tmp_path: Path) -> None:
    assert recorder_from_config(BridgeConfig(record=False)) is None
    rec = recorder_from_config(BridgeConfig(database=str(tmp_path / "x.db"), record_bodies=False))
    assert rec is not None and rec.path == tmp_path / "x.db" and rec.record_bodies is False


# --- failures that pass: retried, so nothing is lost ---------------------------------------------------


@pytest.fixture
def quick_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    """Pauses of 0.2 s, and a writer that waits 100 ms for a lock (not SQLite's 30 s) before failing."""
    import llmbridge.recorder.recorder as module

    real_connect = module.connect

    def connect(path: str | Path) -> sqlite_utils.Database:
        database = real_connect(path)
        database.conn.execute("PRAGMA busy_timeout = 100")
        return database

    monkeypatch.setattr(module, "RETRY_PAUSES", (0.2, 0.2, 0.2, 0.2))
    monkeypatch.setattr(module, "connect", connect)


def test_a_database_locked_past_the_busy_timeout_is_written_once_free(
    db_path: Path, quick_retries: None, caplog: pytest.LogCaptureFixture
) -> None:
    rec = Recorder(db_path)
    rec.open()
    locker = sqlite3.connect(db_path, isolation_level=None, check_same_thread=False)
    locker.execute("BEGIN EXCLUSIVE")  # another program holds the database
    with caplog.at_level(logging.WARNING, logger="llmbridge.recorder"):
        rec.submit(exchange([user("while locked")]))
        threading.Timer(0.5, lambda: locker.execute("COMMIT")).start()  # freed after a few tries
        rec.flush()
    rec.close()
    locker.close()
    assert rec.stats["written"] == 1 and rec.stats["failed"] == 0
    assert count(db_path, "exchanges") == 1
    assert any("database is locked" in r.message and "trying again" in r.message for r in caplog.records)


def test_a_write_that_keeps_failing_is_lost_loudly(
    recorder: Recorder, quick_retries: None, caplog: pytest.LogCaptureFixture
) -> None:
    calls: list[int] = []

    def disk_full(writer: object, batch: object) -> None:
        calls.append(1)
        raise sqlite3.OperationalError("database or disk is full")

    recorder._write = disk_full  # type: ignore[method-assign]
    with caplog.at_level(logging.WARNING, logger="llmbridge.recorder"):
        recorder.submit(exchange([user("never written")]))
        recorder.flush()
    assert len(calls) == 5 and recorder.stats["failed"] == 1  # the first try and four retries
    assert any(r.levelno == logging.ERROR and "disk is full" in r.message for r in caplog.records)


def test_a_full_disk_that_clears_loses_nothing(recorder: Recorder, db_path: Path, quick_retries: None) -> None:
    real_write = recorder._write
    failures = [sqlite3.OperationalError("database or disk is full")] * 2

    def full_then_free(writer: object, batch: object) -> list[Exception | None]:
        if failures:
            raise failures.pop()
        return real_write(writer, batch)  # type: ignore[arg-type]

    recorder._write = full_then_free  # type: ignore[method-assign]
    recorder.submit(exchange([user("after the disk was freed")]))
    recorder.flush()
    assert recorder.stats["written"] == 1 and count(db_path, "exchanges") == 1


def test_open_waits_out_another_process_migrating_the_same_file(tmp_path, monkeypatch):
    """Bridges started together (scripts/serve-many) migrate one database at once; SQLite answers
    "locked" at once to the loser, whose open is retried; any other failure is reported at once."""
    from llmbridge.recorder import recorder as module

    monkeypatch.setattr(module, "OPEN_RETRY_PAUSES", (0.01, 0.01, 0.01))
    rec = module.Recorder(tmp_path / "bridge.db")
    real, calls = rec._create_or_migrate, []

    def racing() -> None:
        calls.append(1)
        if len(calls) < 3:
            raise sqlite3.OperationalError("database is locked")
        real()

    monkeypatch.setattr(rec, "_create_or_migrate", racing)
    rec.open()
    rec.close()
    assert len(calls) == 3 and (tmp_path / "bridge.db").exists()

    def always_locked() -> None:
        raise sqlite3.OperationalError("database is locked")

    stuck = module.Recorder(tmp_path / "other.db")
    monkeypatch.setattr(stuck, "_create_or_migrate", always_locked)
    with pytest.raises(module.RecorderError, match="database is locked"):
        stuck.open()

    def broken() -> None:
        raise sqlite3.OperationalError("no such table: nothing")

    bad = module.Recorder(tmp_path / "third.db")
    monkeypatch.setattr(bad, "_create_or_migrate", broken)
    with pytest.raises(module.RecorderError, match="no such table"):
        bad.open()


def test_records_waiting_share_a_transaction_and_a_bad_one_fails_alone(db_path: Path) -> None:
    rec = Recorder(db_path)
    rec.open()
    gate = threading.Event()
    sizes: list[int] = []
    real_write = rec._write

    def held(writer: object, batch: list[object]) -> object:
        gate.wait(10)  # the writer is busy while the records below queue up
        sizes.append(len(batch))
        return real_write(writer, batch)  # type: ignore[arg-type]

    rec._write = held  # type: ignore[method-assign]
    records = conversation(5)
    duplicate = conversation(1)[0]
    duplicate.id = records[2].id  # the same exchange id twice: the second cannot be written
    for record in [*records, duplicate, *conversation(3)]:
        rec.submit(record)
    gate.set()
    rec.flush()
    stats = rec.stats
    rec.close()
    assert stats["written"] == 8 and stats["failed"] == 1
    assert count(db_path, "exchanges") == 8
    assert max(sizes) > 1 and sum(sizes) == 9  # several records in one transaction
    assert len(sizes) < 9


def test_a_locked_database_retries_the_whole_batch(db_path: Path, quick_retries: None) -> None:
    rec = Recorder(db_path)
    rec.open()
    gate = threading.Event()
    real_write = rec._write
    rec._write = lambda writer, batch: (gate.wait(10), real_write(writer, batch))[1]  # type: ignore[method-assign]
    locker = sqlite3.connect(db_path, isolation_level=None, check_same_thread=False)
    locker.execute("BEGIN EXCLUSIVE")
    for record in conversation(4):
        rec.submit(record)
    gate.set()
    threading.Timer(0.5, lambda: locker.execute("COMMIT")).start()
    rec.flush()
    rec.close()
    locker.close()
    assert rec.stats["written"] == 4 and rec.stats["failed"] == 0
    assert count(db_path, "exchanges") == 4
