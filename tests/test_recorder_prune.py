"""Retention (llmbridge/recorder/prune.py) deletes old exchanges and only what they alone used."""

from __future__ import annotations

import base64
import time
from pathlib import Path

from llmbridge.canonical import ImagePart, Message, TextPart
from llmbridge.recorder import Recorder
from llmbridge.recorder.prune import prune
from llmbridge.recorder.schema import connect
from tests.fakes.recordings import conversation, exchange

DAY = 86400


def record_all(path: Path, records, record_bodies: bool = True) -> None:
    rec = Recorder(path, record_bodies=record_bodies)
    rec.open()
    for record in records:
        rec.submit(record)
    rec.flush()
    rec.close()
    assert rec.stats["failed"] == 0


def image_exchange(started: float):
    png = base64.b64encode(b"old picture").decode()
    history = [Message(role="user", parts=[TextPart(text="forgotten words"), ImagePart(data=png)])]
    return exchange(history, "an old reply", started=started, system="another system prompt")


def test_prune_deletes_old_exchanges_and_orphans_only(tmp_path: Path) -> None:
    path = tmp_path / "bridge.db"
    now = time.time()
    turns = conversation(2, started=now - 40 * DAY)
    turns[1].started = turns[1].attempts[0].started = now - DAY  # turn 2 is recent, re-sends turn 1
    record_all(path, [*turns, image_exchange(now - 40 * DAY)])
    db = connect(path)
    assert (db["exchanges"].count, db["messages"].count, db["blobs"].count) == (3, 5 + 3, 1)

    result = prune(db, 30, now=now)

    assert (result.exchanges, result.attempts, result.messages, result.blobs) == (2, 2, 3, 1)
    assert [r["id"] for r in db["exchanges"].rows] == [turns[1].id]
    assert db["attempts"].count == 1
    # turn 1's messages survive: the recent exchange's chain reaches them
    assert {r["role"] for r in db["messages"].rows} == {"system", "user", "assistant"}
    assert db["messages"].count == 5 and db["blobs"].count == 0
    assert list(db.query("SELECT rowid FROM parts_fts WHERE parts_fts MATCH 'forgotten'")) == []
    assert len(list(db.query("SELECT rowid FROM parts_fts WHERE parts_fts MATCH 'question'"))) == 2


def test_prune_keeps_everything_newer_and_vacuums(tmp_path: Path) -> None:
    path = tmp_path / "bridge.db"
    record_all(path, conversation(3))
    db = connect(path)
    result = prune(db, 1, vacuum=True)
    assert result.describe() == "deleted 0 exchanges, 0 attempts, 0 messages, 0 parts, 0 blobs"
    assert (db["exchanges"].count, db["messages"].count) == (3, 7)
