"""Turns one `ExchangeRecord` into rows, secrets removed, and writes them in one transaction.

Everything that reaches the database passes through here, so this is where redaction happens:
headers (`redact_headers`), URLs and endpoints (`redact_url`), JSON bodies (`redact_json`), raw
response bytes (`redact_body`) and free text such as error messages (`redact_text`). Attempts
against OAuth/SSO token endpoints are credential refresh traffic and are never written.
"""

from __future__ import annotations

import dataclasses
import json
import sqlite3
import time
from typing import Any

from llmbridge.exchange import AttemptRecord, ExchangeRecord
from llmbridge.hostile import SURROGATE, escape_surrogates, scrub_surrogates
from llmbridge.recorder.messages import MessageStore, compact
from llmbridge.redact import (
    is_credential_url,
    redact_body,
    redact_headers,
    redact_json,
    redact_text,
    redact_url,
)

# Usage keys as the canonical `Usage` names them -> exchanges columns.
_USAGE_COLUMNS = {
    "input_tokens": "input_tokens",
    "output_tokens": "output_tokens",
    "cached_tokens": "cached_tokens",
    "cache_creation_tokens": "cache_creation_tokens",
    "reasoning_tokens": "reasoning_tokens",
}

# Failures that pass (another program holding the database past the busy timeout, a disk full
# until space is freed): the whole batch is tried again (recorder.RETRY_PAUSES).
TRANSIENT = ("database is locked", "database table is locked", "database or disk is full", "disk i/o error")


def utc_text(timestamp: float) -> str:
    """UTC "YYYY-MM-DD HH:MM:SS.fff": sorts as text, and SQLite's date()/datetime() read it."""
    whole = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(timestamp))
    return f"{whole}.{int(timestamp * 1000) % 1000:03d}"


def _json_text(value: Any) -> str | None:
    """JSON text of a value; a lone surrogate in it (which UTF-8 cannot hold) is kept as its escape."""
    if value is None:
        return None
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if text.isascii() or not SURROGATE.search(text) else escape_surrogates(text)


def _redacted_json_text(value: Any) -> str | None:
    """JSON text of a body, secrets removed. Bodies that arrive as text/bytes are parsed if they can
    be; text that is not JSON is kept as a JSON string with URLs and bearer tokens redacted."""
    if isinstance(value, bytes | bytearray):
        value = bytes(value).decode(errors="replace")
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return _json_text(redact_text(value))
    return _json_text(redact_json(value))


def as_plain(value: Any) -> Any:
    """Plain JSON data from a pydantic model (ChatResult, Usage, ...) or the data itself."""
    return value.model_dump(mode="json") if hasattr(value, "model_dump") else value


def _text(value: str | None) -> str | None:
    return redact_text(value) if value else value


class RecordWriter:
    """Writes records on one connection (the writer thread's)."""

    def __init__(self, conn: sqlite3.Connection, record_bodies: bool = True) -> None:
        self.conn = conn
        self.record_bodies = record_bodies
        self.messages = MessageStore(conn)

    def write(self, record: ExchangeRecord) -> None:
        """All rows of one exchange, or none; the exchange's own error is raised."""
        (error,) = self.write_batch([record])
        if error is not None:
            raise error

    def write_batch(self, records: list[ExchangeRecord]) -> list[Exception | None]:
        """Several exchanges in one transaction, since its commit is most of what recording costs
        (rows and index pages written to the WAL once for the lot). Each exchange sits in a
        savepoint of its own: one that fails is rolled back alone, and its error is returned in its
        place (None for those written). A failure of the transaction itself (the database locked,
        the disk full) is raised with nothing written: the caller tries the batch again."""
        outcomes: list[Exception | None] = []
        with self.conn:
            self.conn.execute("BEGIN")  # so that releasing a savepoint does not commit
            for record in records:
                self.conn.execute("SAVEPOINT one_exchange")
                try:
                    self._write_one(record)
                    outcomes.append(None)
                except sqlite3.OperationalError as e:
                    if any(reason in str(e).lower() for reason in TRANSIENT):
                        raise  # the batch's problem, not this exchange's
                    self.conn.execute("ROLLBACK TO one_exchange")
                    outcomes.append(e)
                except Exception as e:
                    self.conn.execute("ROLLBACK TO one_exchange")
                    outcomes.append(e)
                self.conn.execute("RELEASE one_exchange")
        return outcomes

    def _write_one(self, record: ExchangeRecord) -> None:
        """Text that UTF-8 cannot encode (a lone surrogate from a client or an upstream) must not
        lose the row: the exchange is written again with such characters replaced by U+FFFD."""
        try:
            self._rows(record)
        except UnicodeEncodeError:
            self.conn.execute("ROLLBACK TO one_exchange")
            self._rows(_scrubbed(record))

    def _rows(self, record: ExchangeRecord) -> None:
        now = utc_text(record.started)
        canonical, result = as_plain(record.request_canonical), as_plain(record.result)
        request_hash = response_hash = None
        if self.record_bodies and canonical:
            request_hash = self.messages.store_request(canonical, record.id, now)
        if self.record_bodies and result:
            response_hash = self.messages.store_response(result, request_hash, record.id, now)
        self._insert("exchanges", self.exchange_row(record, request_hash, response_hash))
        attempts = [a for a in record.attempts if not is_credential_url(a.url)]
        for position, attempt in enumerate(attempts, start=1):
            self._insert("attempts", self.attempt_row(record.id, position, attempt))

    def _insert(self, table: str, row: dict[str, Any]) -> None:
        columns = ", ".join(row)
        marks = ", ".join("?" for _ in row)
        self.conn.execute(f"INSERT INTO {table} ({columns}) VALUES ({marks})", list(row.values()))

    def exchange_row(
        self, record: ExchangeRecord, request_hash: str | None, response_hash: str | None
    ) -> dict[str, Any]:
        result = as_plain(record.result) or {}
        error = result.get("error") or {}
        usage = as_plain(record.usage) or result.get("usage") or {}
        row: dict[str, Any] = {
            "id": record.id,
            "started_at": utc_text(record.started),
            "client_format": record.client_format or None,
            "endpoint": redact_url(record.endpoint) if record.endpoint else None,
            "key_label": record.key_label,
            "stream": int(record.stream),
            "model_requested": record.model_requested,
            "model_served": record.model_served or result.get("model"),
            "provider": record.provider,
            "account": record.account,
            "attempt_count": len(record.attempts),
            "status": record.status,
            "ttfb_ms": record.ttfb_ms,
            "duration_ms": record.duration_ms,
            "finish_reason": record.finish_reason or result.get("finish_reason"),
            "usage_estimated": int(bool(usage.get("estimated"))) if usage else None,
            "error_kind": record.error_kind or error.get("kind"),
            "error_message": _text(record.error_message or error.get("message")),
            "client_disconnected": int(record.client_disconnected),
            "response_id": result.get("id"),
            "request_message_hash": request_hash,
            "response_message_hash": response_hash,
            "usage_json": _json_text(usage) if usage else None,
        }
        for key, column in _USAGE_COLUMNS.items():
            row[column] = usage.get(key) if usage else None
        if self.record_bodies:
            row["request_json"] = self._request_options(as_plain(record.request_canonical))
            row["request_raw"] = _redacted_json_text(record.request_raw)
        return row

    @staticmethod
    def _request_options(canonical: dict[str, Any] | None) -> str | None:
        """The canonical request without system and messages (stored once, in `messages`)."""
        if not canonical:
            return None
        options = {k: v for k, v in canonical.items() if k not in ("messages", "system")}
        if options.get("passthrough_headers"):
            options["passthrough_headers"] = redact_headers(options["passthrough_headers"])
        return _json_text(compact(redact_json(options)))

    def attempt_row(self, exchange_id: str, position: int, attempt: AttemptRecord) -> dict[str, Any]:
        body = bytes(attempt.response_body or b"")
        row: dict[str, Any] = {
            "exchange_id": exchange_id,
            "position": position,
            "started_at": utc_text(attempt.started),
            "account": attempt.account,
            "provider": attempt.provider,
            "method": attempt.method,
            "url": redact_url(attempt.url) if attempt.url else None,
            "request_headers": _json_text(redact_headers(attempt.request_headers or {})),
            "status": attempt.status,
            "response_headers": _json_text(redact_headers(attempt.response_headers or {})),
            "response_size": len(body),
            "ttfb_ms": attempt.ttfb_ms,
            "duration_ms": attempt.duration_ms,
            "error_kind": attempt.error_kind,
            "error_message": _text(attempt.error_message),
        }
        if self.record_bodies:
            row["request_json"] = _redacted_json_text(attempt.request_body)
            row["response_body"] = redact_body(body)
        return row


def _scrubbed(record: ExchangeRecord) -> ExchangeRecord:
    """A copy of the record whose every text holds no lone surrogate (replaced by U+FFFD)."""
    attempts = [
        dataclasses.replace(
            attempt, **{f.name: scrub_surrogates(getattr(attempt, f.name)) for f in dataclasses.fields(attempt)}
        )
        for attempt in record.attempts
    ]
    fields = {f.name: scrub_surrogates(as_plain(getattr(record, f.name))) for f in dataclasses.fields(record)}
    return dataclasses.replace(record, **{**fields, "attempts": attempts})
