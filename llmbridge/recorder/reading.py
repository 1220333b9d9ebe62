"""The read side of one exchange, for its screen in Datasette (`datasette_plugins/pages.py`).

Loads everything the screen shows from a plain `sqlite3.Connection` (Datasette runs it on its own
thread with `execute_fn`): the exchange row, the conversation as the model saw it (the request's message
chain, root first), the answer, the upstream attempts, and the previous and next turn of the same
conversation.

Turns are found through the content-addressed chain, not through timing: the previous turn is the
nearest ancestor of this request that another exchange sent or received (the head of its request or its
answer); the next turn is the first later exchange whose request chain holds this exchange's answer or
request head. A client that rewrites an earlier answer (so its hash differs) still links through the
user message before it.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass, field
from typing import Any

# How many later exchanges are examined for the next turn: a busy bridge interleaves conversations.
NEXT_TURN_WINDOW = 200


@dataclass
class PartView:
    type: str
    text: str | None
    tool_name: str | None
    tool_call_id: str | None
    blob_hash: str | None
    payload: dict[str, Any] = field(default_factory=dict)


@dataclass
class MessageView:
    hash: str
    role: str
    parts: list[PartView]


@dataclass
class ExchangeView:
    row: dict[str, Any]
    conversation: list[MessageView]
    answer: MessageView | None
    attempts: list[dict[str, Any]]
    previous_id: str | None
    next_id: str | None
    blob_types: dict[str, str]


def load_exchange(conn: sqlite3.Connection, exchange_id: str) -> ExchangeView | None:
    """Everything the exchange screen shows, or None when there is no such exchange."""
    conn.row_factory = sqlite3.Row
    found = conn.execute("SELECT * FROM exchanges WHERE id = ?", [exchange_id]).fetchone()
    if found is None:
        return None
    row = dict(found)
    row.pop("request_raw", None)  # shown on the raw row page, not here
    head, answer_hash = row["request_message_hash"], row["response_message_hash"]
    conversation = _chain(conn, head) if head else []
    answer = _chain_of_one(conn, answer_hash) if answer_hash else None
    attempts = [
        dict(a)
        for a in conn.execute(
            "SELECT id, position, started_at, account, provider, method, url, status, response_size, ttfb_ms,"
            " duration_ms, error_kind, error_message FROM attempts WHERE exchange_id = ? ORDER BY position",
            [exchange_id],
        )
    ]
    messages = conversation + ([answer] if answer else [])
    return ExchangeView(
        row=row,
        conversation=conversation,
        answer=answer,
        attempts=attempts,
        previous_id=previous_turn(conn, row),
        next_id=next_turn(conn, row),
        blob_types=_blob_types(conn, messages),
    )


_CHAIN = """WITH RECURSIVE chain(hash, depth) AS (
  SELECT ?, 0
  UNION ALL
  SELECT m.parent_hash, chain.depth + 1 FROM messages m JOIN chain ON m.hash = chain.hash
  WHERE m.parent_hash IS NOT NULL
)
SELECT chain.hash, chain.depth, m.role FROM chain JOIN messages m ON m.hash = chain.hash ORDER BY chain.depth DESC"""


def _chain(conn: sqlite3.Connection, head: str) -> list[MessageView]:
    """The message chain ending at `head`, root (the system prompt) first."""
    links = conn.execute(_CHAIN, [head]).fetchall()
    return [MessageView(link["hash"], link["role"], _parts(conn, link["hash"])) for link in links]


def _chain_of_one(conn: sqlite3.Connection, message: str) -> MessageView | None:
    found = conn.execute("SELECT hash, role FROM messages WHERE hash = ?", [message]).fetchone()
    return MessageView(found["hash"], found["role"], _parts(conn, found["hash"])) if found else None


def _parts(conn: sqlite3.Connection, message: str) -> list[PartView]:
    rows = conn.execute(
        "SELECT type, text, tool_name, tool_call_id, blob_hash, payload FROM parts WHERE message_hash = ?"
        " ORDER BY position",
        [message],
    )
    return [
        PartView(r["type"], r["text"], r["tool_name"], r["tool_call_id"], r["blob_hash"], _json_object(r["payload"]))
        for r in rows
    ]


def _json_object(text: str | None) -> dict[str, Any]:
    try:
        value = json.loads(text) if text else {}
    except ValueError:
        return {"payload": text}
    return value if isinstance(value, dict) else {"payload": value}


def _blob_types(conn: sqlite3.Connection, messages: list[MessageView]) -> dict[str, str]:
    """Media type of each image blob the messages refer to (also those inside tool results)."""
    hashes = {p.blob_hash for m in messages for p in m.parts if p.blob_hash}
    for message in messages:
        for part in message.parts:
            for item in part.payload.get("content") or []:
                if isinstance(item, dict) and item.get("blob_hash"):
                    hashes.add(item["blob_hash"])
    if not hashes:
        return {}
    marks = ", ".join("?" for _ in hashes)
    rows = conn.execute(f"SELECT hash, media_type FROM blobs WHERE hash IN ({marks})", sorted(hashes))
    return {r["hash"]: r["media_type"] for r in rows}


_ANCESTORS = """WITH RECURSIVE up(hash, depth) AS (
  SELECT parent_hash, 1 FROM messages WHERE hash = ?
  UNION ALL
  SELECT m.parent_hash, up.depth + 1 FROM messages m JOIN up ON m.hash = up.hash WHERE m.parent_hash IS NOT NULL
)"""


def previous_turn(conn: sqlite3.Connection, row: dict[str, Any]) -> str | None:
    """The latest earlier exchange whose request head or answer is the nearest ancestor of this request."""
    head = row["request_message_hash"]
    if not head:
        return None
    found = conn.execute(
        _ANCESTORS
        + """
SELECT e.id FROM up JOIN messages m ON m.hash = up.hash
JOIN exchanges e ON (e.response_message_hash = up.hash OR e.request_message_hash = up.hash)
WHERE m.role != 'system' AND e.id != ? AND e.started_at <= ?
ORDER BY up.depth, e.started_at DESC LIMIT 1""",
        [head, row["id"], row["started_at"]],
    ).fetchone()
    return str(found["id"]) if found else None


def next_turn(conn: sqlite3.Connection, row: dict[str, Any]) -> str | None:
    """The first later exchange whose request chain holds this exchange's answer or request head."""
    marks = [h for h in (row["response_message_hash"], row["request_message_hash"]) if h]
    if not marks:
        return None
    later = conn.execute(
        "SELECT id, request_message_hash FROM exchanges WHERE started_at >= ? AND id != ?"
        " AND request_message_hash IS NOT NULL AND request_message_hash != ? ORDER BY started_at, id LIMIT ?",
        [row["started_at"], row["id"], row["request_message_hash"] or "", NEXT_TURN_WINDOW],
    ).fetchall()
    holds = _ANCESTORS + f" SELECT 1 FROM up WHERE hash IN ({', '.join('?' for _ in marks)}) LIMIT 1"
    for candidate in later:
        if conn.execute(holds, [candidate["request_message_hash"], *marks]).fetchone():
            return str(candidate["id"])
    return None
