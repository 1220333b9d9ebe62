"""The schema (llmbridge/recorder/schema.py): migrations are named, applied once and remembered."""

from __future__ import annotations

from pathlib import Path

import pytest

from llmbridge.recorder import Recorder
from llmbridge.recorder.schema import applied, connect, migrate


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
