"""Read-side helpers for the CLI: open an existing database, list exchanges, format one line each."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sqlite_utils import Database

from llmbridge.recorder.recorder import RecorderError
from llmbridge.recorder.schema import connect

_COLUMNS = (
    "rowid, id, started_at, client_format, coalesce(model_served, model_requested) AS model, account,"
    " status, duration_ms, ttfb_ms, input_tokens, output_tokens, usage_estimated, error_kind,"
    " client_disconnected"
)


def open_existing(path: str | Path) -> Database:
    """An existing recordings database; RecorderError with one line when there is none."""
    path = Path(path)
    if not path.is_file():
        raise RecorderError(f"no recordings database at {path} (the bridge creates it when it records)")
    try:
        db = connect(path)
        db.execute("SELECT 1 FROM exchanges LIMIT 1")
    except sqlite3.Error as e:
        raise RecorderError(f"cannot read recordings database {path}: {e}") from None
    return db


def recent_exchanges(db: Database, limit: int) -> list[dict[str, Any]]:
    """The latest `limit` exchanges, oldest first (as a log reads)."""
    rows = list(db.query(f"SELECT {_COLUMNS} FROM exchanges ORDER BY rowid DESC LIMIT ?", [limit]))
    return rows[::-1]


def exchanges_after(db: Database, rowid: int) -> Iterator[dict[str, Any]]:
    """Exchanges written after the one with `rowid`, in the order they were written."""
    return db.query(f"SELECT {_COLUMNS} FROM exchanges WHERE rowid > ? ORDER BY rowid", [rowid])


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}ms"


def format_line(row: dict[str, Any]) -> str:
    """time format model account status duration ttfb tokens [error]"""
    tokens = "-"
    if row["input_tokens"] is not None or row["output_tokens"] is not None:
        tokens = f"{row['input_tokens'] or 0}>{row['output_tokens'] or 0}"
        tokens += "~" if row["usage_estimated"] else ""
    fields = [
        row["started_at"] or "-",
        f"{row['client_format'] or '-':<9}",
        f"{row['model'] or '-':<24}",
        f"{row['account'] or '-':<14}",
        f"{row['status'] or '-'!s:>3}",
        f"{_ms(row['duration_ms']):>8}",
        f"ttfb {_ms(row['ttfb_ms']):>7}",
        f"tok {tokens}",
    ]
    if row["error_kind"]:
        fields.append(f"! {row['error_kind']}")
    if row["client_disconnected"]:
        fields.append("(client left)")
    return "  ".join(fields)
