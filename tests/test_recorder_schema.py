"""The schema (llmbridge/recorder/schema.py): migrations are named, applied once and remembered."""

from __future__ import annotations

from pathlib import Path

import pytest

from llmbridge.recorder import Recorder
from llmbridge.recorder.schema import applied, connect, migrate, migrations
from llmbridge.recorder.store import RecordWriter
from tests.fakes.recordings import conversation, exchange, user


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "recordings" / "bridge.db"


def test_migrations_are_idempotent(db_path: Path) -> None:
    for _ in range(2):
        rec = Recorder(db_path)
        rec.open()
        rec.close()
    db = connect(db_path)
    assert migrate(db) == []
    assert applied(db) == [
        "m001_initial",
        "m002_parts_fts",
        "m003_parts_fts_porter",
        "m004_turn_indexes",
        "m005_exchange_column_order",
    ]
    assert db["_sqlite_migrations"].count == 5


def test_m003_rebuilds_the_search_index_of_an_older_database(db_path: Path) -> None:
    """A database written before stemming: after `migrate`, old rows are found by word, not spelling."""
    db_path.parent.mkdir(parents=True)
    db = connect(db_path)
    migrations.apply(db, stop_before="m003_parts_fts_porter")
    writer = RecordWriter(db.conn)
    for record in conversation(2):
        record.result["parts"][0]["text"] = "Two lighthouses guard the coast"  # type: ignore[index]
        writer.write(record)
    before = "SELECT count(*) FROM parts_fts WHERE parts_fts MATCH 'lighthouse'"
    assert db.execute(before).fetchone()[0] == 0  # the old index matched spellings only

    assert migrate(db) == ["m003_parts_fts_porter", "m004_turn_indexes", "m005_exchange_column_order"]
    assert db.execute(before).fetchone()[0] == 2
    assert db.execute("SELECT count(*) FROM parts_fts WHERE parts_fts MATCH '\"lightho\"*'").fetchone()[0] == 2
    # The triggers were made again: a new row is indexed, a pruned one leaves the index.
    RecordWriter(db.conn).write(exchange([user("where are the lighthouses?")], "here"))
    assert db.execute(before).fetchone()[0] == 3
    db.execute("DELETE FROM parts WHERE text = 'where are the lighthouses?'")
    assert db.execute(before).fetchone()[0] == 2
    assert list(db["exchanges"].columns_dict)[:5] == ["id", "started_at", "model_served", "account", "status"]
