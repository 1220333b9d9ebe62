"""Exports one recorded exchange as a replay fixture: what crossed the provider edge.

A fixture holds the translated request (method, URL, headers, JSON body) and the upstream answer
(status, headers, the raw bytes base64-encoded), plus the client's own request for context. Secrets
were removed when the exchange was recorded; they are removed again here, so fixtures written from
an older database are safe too.
"""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path
from typing import Any

from sqlite_utils import Database

from llmbridge.redact import redact_body, redact_headers, redact_json, redact_url

FIXTURE_FORMAT = "llmbridge-replay-fixture"
FIXTURE_VERSION = 1


class ExportError(Exception):
    """The exchange cannot be exported; the message is one line."""


def _loads(text: str | None) -> Any:
    return json.loads(text) if text else None


def fixture_for(db: Database, exchange_id: str, attempt: int | None = None) -> dict[str, Any]:
    """The fixture of one attempt of an exchange (by default its last, the one that answered)."""
    exchange = next(db.query("SELECT * FROM exchanges WHERE id = ?", [exchange_id]), None)
    if exchange is None:
        raise ExportError(f"no exchange {exchange_id!r} in the database")
    attempts = list(db.query("SELECT * FROM attempts WHERE exchange_id = ? ORDER BY position", [exchange_id]))
    if not attempts:
        raise ExportError(f"exchange {exchange_id} has no upstream attempt to export")
    chosen: dict[str, Any] | None
    if attempt is None:
        chosen = attempts[-1]
    else:
        chosen = next((a for a in attempts if a["position"] == attempt), None)
    if chosen is None:
        raise ExportError(f"exchange {exchange_id} has no attempt {attempt} (it has {len(attempts)})")
    if chosen["response_body"] is None:
        raise ExportError(f"exchange {exchange_id} was recorded without bodies (record_bodies = false)")
    body = redact_body(bytes(chosen["response_body"]))
    return {
        "format": FIXTURE_FORMAT,
        "version": FIXTURE_VERSION,
        "exchange_id": exchange_id,
        "attempt": chosen["position"],
        "recorded_at": chosen["started_at"],
        "provider": chosen["provider"],
        "account": chosen["account"],
        "client": {
            "format": exchange["client_format"],
            "endpoint": exchange["endpoint"],
            "stream": bool(exchange["stream"]),
            "request": redact_json(_loads(exchange["request_raw"])),
        },
        "request": {
            "method": chosen["method"],
            "url": redact_url(chosen["url"] or ""),
            "headers": redact_headers(_loads(chosen["request_headers"]) or {}),
            "body": redact_json(_loads(chosen["request_json"])),
        },
        "response": {
            "status": chosen["status"],
            "headers": redact_headers(_loads(chosen["response_headers"]) or {}),
            "body_base64": base64.b64encode(body).decode(),
            "size": len(body),
            "ttfb_ms": chosen["ttfb_ms"],
            "duration_ms": chosen["duration_ms"],
        },
        "expected": {
            "status": exchange["status"],
            "finish_reason": exchange["finish_reason"],
            "model_served": exchange["model_served"],
            "usage": _loads(exchange["usage_json"]),
            "error_kind": exchange["error_kind"],
        },
    }


def export_fixture(db: Database, exchange_id: str, out_dir: str | Path = "replay", attempt: int | None = None) -> Path:
    """Writes `<out_dir>/<provider>-<exchange_id>.json`; returns its path."""
    fixture = fixture_for(db, exchange_id, attempt)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    suffix = "" if attempt is None else f"-attempt{attempt}"
    provider = re.sub(r"[^A-Za-z0-9_.-]", "_", fixture["provider"] or "upstream")
    path = out / f"{provider}-{exchange_id}{suffix}.json"
    path.write_text(json.dumps(fixture, indent=2, ensure_ascii=False) + "\n")
    return path
