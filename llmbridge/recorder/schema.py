"""The recordings database schema, as named, append-only migrations.

Uses `sqlite_utils.migrations.Migrations` (present in the installed sqlite-utils 4.x): each step is
a named function, applied once, in order, in its own transaction, and remembered in the
`_sqlite_migrations` table. Never edit or reorder a released step: add a new one at the end.

Tables (see `metadata.py` for the column descriptions Datasette shows):

    exchanges  one row per client request: route, timings, usage, status, error, links to messages
    attempts   one row per upstream attempt of an exchange: translated request, raw response bytes
    messages   content-addressed: hash over (parent hash, role, parts), so shared history is stored once
    parts      the parts of each message (text, reasoning, tool_call, tool_result, image); FTS5 on text
               (porter stemming since m003: "lighthouse" finds "lighthouses")
    blobs      image bytes, stored once by hash (sha256 of media type + bytes)
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from sqlite_utils import Database
from sqlite_utils.migrations import Migrations

MIGRATION_SET = "llmbridge-recorder"
migrations = Migrations(MIGRATION_SET)


@migrations(name="m001_initial")
def _m001_initial(db: Database) -> None:
    db.table("blobs").create(
        {"hash": str, "media_type": str, "size": int, "content": bytes, "created_at": str}, pk="hash"
    )
    db.table("messages").create(
        {
            "hash": str,
            "parent_hash": str,
            "role": str,
            "part_count": int,
            "provider_metadata": str,
            "first_exchange_id": str,
            "created_at": str,
        },
        pk="hash",
        foreign_keys=[("parent_hash", "messages", "hash")],
    )
    db.table("parts").create(
        {
            "id": int,
            "message_hash": str,
            "position": int,
            "type": str,
            "text": str,
            "tool_name": str,
            "tool_call_id": str,
            "blob_hash": str,
            "payload": str,
        },
        pk="id",
        foreign_keys=[("message_hash", "messages", "hash"), ("blob_hash", "blobs", "hash")],
    )
    db.table("parts").create_index(["message_hash", "position"], unique=True)
    db.table("exchanges").create(
        _EXCHANGE_COLUMNS,
        pk="id",
        foreign_keys=[
            ("request_message_hash", "messages", "hash"),
            ("response_message_hash", "messages", "hash"),
        ],
    )
    db.table("exchanges").create_index(["started_at"])
    db.table("attempts").create(_ATTEMPT_COLUMNS, pk="id", foreign_keys=[("exchange_id", "exchanges", "id")])
    db.table("attempts").create_index(["exchange_id", "position"], unique=True)
    db.table("attempts").create_index(["account"])


@migrations(name="m002_parts_fts")
def _m002_parts_fts(db: Database) -> None:
    # FTS5 over the text of every part, kept current by triggers (prune deletes rows too).
    db.table("parts").enable_fts(["text"], fts_version="FTS5", create_triggers=True)


@migrations(name="m003_parts_fts_porter")
def _m003_parts_fts_porter(db: Database) -> None:
    # Words, not spellings: the porter tokenizer (over unicode61) stems, so "lighthouse" matches
    # "lighthouses". The index is dropped with its triggers, made again, and filled from `parts`.
    db.table("parts").disable_fts()
    db.table("parts").enable_fts(["text"], fts_version="FTS5", create_triggers=True, tokenize="porter unicode61")
    db.table("parts").rebuild_fts()


@migrations(name="m004_turn_indexes")
def _m004_turn_indexes(db: Database) -> None:
    # The exchange screen links each turn to the previous and next one through message hashes.
    db.table("exchanges").create_index(["request_message_hash"], if_not_exists=True)
    db.table("exchanges").create_index(["response_message_hash"], if_not_exists=True)


@migrations(name="m005_exchange_column_order")
def _m005_exchange_column_order(db: Database) -> None:
    # Datasette shows columns in table order: the ones people scan come first (a one-time table copy;
    # sqlite-utils keeps the indexes and foreign keys).
    db.table("exchanges").transform(column_order=list(EXCHANGE_COLUMNS_FIRST))


EXCHANGE_COLUMNS_FIRST = (
    "id",
    "started_at",
    "model_served",
    "account",
    "status",
    "duration_ms",
    "input_tokens",
    "output_tokens",
    "error_kind",
    "client_format",
    "provider",
    "model_requested",
)


_EXCHANGE_COLUMNS: dict[str, type] = {
    "id": str,
    "started_at": str,  # UTC "YYYY-MM-DD HH:MM:SS.fff": sortable, and SQLite's date() reads it
    "client_format": str,
    "endpoint": str,
    "key_label": str,
    "stream": int,
    "model_requested": str,
    "model_served": str,
    "provider": str,
    "account": str,
    "attempt_count": int,
    "status": int,
    "ttfb_ms": float,
    "duration_ms": float,
    "finish_reason": str,
    "input_tokens": int,
    "output_tokens": int,
    "cached_tokens": int,
    "cache_creation_tokens": int,
    "reasoning_tokens": int,
    "usage_estimated": int,
    "error_kind": str,
    "error_message": str,
    "client_disconnected": int,
    "response_id": str,
    "request_message_hash": str,
    "response_message_hash": str,
    "request_json": str,  # canonical request without its messages (those are in `messages`)
    "request_raw": str,  # the client's body as received, redacted
    "usage_json": str,
}

_ATTEMPT_COLUMNS: dict[str, type] = {
    "id": int,
    "exchange_id": str,
    "position": int,  # 1 for the first attempt
    "started_at": str,
    "account": str,
    "provider": str,
    "method": str,
    "url": str,
    "request_headers": str,
    "request_json": str,
    "status": int,
    "response_headers": str,
    "response_body": bytes,
    "response_size": int,
    "ttfb_ms": float,
    "duration_ms": float,
    "error_kind": str,
    "error_message": str,
}


def connect(path: str | Path) -> Database:
    """A connection in WAL mode that waits for locks instead of failing at once.

    Raises sqlite3.Error (or OSError) when the file cannot be opened as a database."""
    conn = sqlite3.connect(str(path), timeout=30, check_same_thread=False)
    try:
        conn.execute("PRAGMA journal_mode=WAL")  # the first real read: fails on a non-database file
        conn.execute("PRAGMA synchronous=NORMAL")  # safe with WAL; a crash can lose only the last rows
        conn.execute("PRAGMA foreign_keys=OFF")  # rows arrive in one transaction; prune keeps order
    except sqlite3.Error:
        conn.close()
        raise
    return Database(conn)


def migrate(db: Database) -> list[str]:
    """Apply pending migrations; returns the names applied now (empty when up to date)."""
    pending = [m.name for m in migrations.pending(db)]
    migrations.apply(db)
    return pending


def applied(db: Database) -> list[str]:
    return [m.name for m in migrations.applied(db)]
