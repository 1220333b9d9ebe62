"""Retention: deletes exchanges older than N days, their attempts, then whatever they alone used.

Messages are shared between exchanges (content addressing), so a message goes only when no remaining
exchange reaches it through its request or response chain; a blob goes when no remaining part uses it.
Runs in one IMMEDIATE transaction, so a bridge writing at the same time waits rather than racing.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from sqlite_utils import Database

from llmbridge.recorder.store import utc_text

_KEEP_MESSAGES = """
CREATE TEMP TABLE _keep AS
WITH RECURSIVE keep(hash) AS (
    SELECT request_message_hash FROM exchanges WHERE request_message_hash IS NOT NULL
    UNION SELECT response_message_hash FROM exchanges WHERE response_message_hash IS NOT NULL
    UNION SELECT m.parent_hash FROM messages m JOIN keep ON m.hash = keep.hash
          WHERE m.parent_hash IS NOT NULL
)
SELECT hash FROM keep
"""

# Blobs are referenced by parts.blob_hash (images), or inside a tool result's payload.
_ORPHAN_BLOBS = """
DELETE FROM blobs WHERE NOT EXISTS (SELECT 1 FROM parts WHERE parts.blob_hash = blobs.hash)
AND NOT EXISTS (SELECT 1 FROM parts WHERE parts.type = 'tool_result' AND instr(parts.payload, blobs.hash))
"""


@dataclass
class PruneResult:
    exchanges: int = 0
    attempts: int = 0
    messages: int = 0
    parts: int = 0
    blobs: int = 0

    def describe(self) -> str:
        return (
            f"deleted {self.exchanges} exchanges, {self.attempts} attempts, {self.messages} messages, "
            f"{self.parts} parts, {self.blobs} blobs"
        )


def prune(db: Database, days: float, now: float | None = None, vacuum: bool = False) -> PruneResult:
    """Deletes exchanges that started more than `days` days before `now`, and what only they used."""
    cutoff = utc_text((time.time() if now is None else now) - days * 86400)
    conn = db.conn
    result = PruneResult()
    conn.execute("BEGIN IMMEDIATE")
    try:
        old = "SELECT id FROM exchanges WHERE started_at < ?"
        result.attempts = conn.execute(f"DELETE FROM attempts WHERE exchange_id IN ({old})", [cutoff]).rowcount
        result.exchanges = conn.execute("DELETE FROM exchanges WHERE started_at < ?", [cutoff]).rowcount
        conn.execute("DROP TABLE IF EXISTS temp._keep")
        conn.execute(_KEEP_MESSAGES)
        conn.execute("CREATE INDEX temp._keep_hash ON _keep(hash)")
        unused = "SELECT hash FROM messages WHERE hash NOT IN (SELECT hash FROM _keep)"
        result.parts = conn.execute(f"DELETE FROM parts WHERE message_hash IN ({unused})").rowcount
        result.messages = conn.execute(f"DELETE FROM messages WHERE hash IN ({unused})").rowcount
        result.blobs = conn.execute(_ORPHAN_BLOBS).rowcount
        conn.execute("DROP TABLE temp._keep")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    if vacuum:
        conn.execute("VACUUM")
    return result
