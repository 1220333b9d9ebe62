"""The pool's state that survives a restart: cool-downs (with their end), dead reasons, requests
counted today, the last health probe.

Behind a small interface, `PoolStateStore`, so that another backend (Redis, shared by several
bridges) is one more class. `SqlitePoolStateStore` keeps it in its own SQLite file beside the
recorder's database (`pool_state.db`): the state must survive with recording off, must not be pruned
or exported with the recordings, and its few small writes must not queue behind the recorder's.

Writes never block the event loop: `save` only notes the account's latest snapshot; a writer thread
writes what is pending at most every BATCH_SECONDS, in one transaction (a burst of requests, each
counting towards its account's day, is one small write, and the writer seldom competes with the
event loop for the interpreter).
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import threading
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Protocol

log = logging.getLogger(__name__)

STATE_FILE = "pool_state.db"
BATCH_SECONDS = 0.5  # changes are gathered this long before they are written


@dataclass(frozen=True)
class AccountSnapshot:
    """One account's state as stored; `fingerprint` ties it to the account's settings (a changed
    account starts afresh)."""

    name: str
    fingerprint: str
    cooling_until: float = 0.0  # epoch seconds
    cooling_kind: str | None = None  # the error kind that started the cool-down
    dead_reason: str | None = None
    last_error: str | None = None
    day: int = 0  # UTC day (days since the epoch) that `today` counts
    today: int = 0
    probed_at: float | None = None  # epoch seconds of the last health probe
    probe_result: str | None = None  # "ok", or what failed


class PoolStateStore(Protocol):
    def load(self) -> dict[str, AccountSnapshot]:
        """Every stored account's snapshot, by name (at startup)."""
        ...

    def save(self, snapshot: AccountSnapshot) -> None:
        """Keep this snapshot; returns at once (written in the background)."""
        ...

    def forget(self, name: str) -> None:
        """The account left the config: its state goes too."""
        ...

    def close(self) -> None:
        """Write what is pending, then release the store."""
        ...


COLUMNS = [f.name for f in fields(AccountSnapshot)]
SCHEMA = """
create table if not exists pool_state (
    name text primary key, fingerprint text not null, cooling_until real not null, cooling_kind text,
    dead_reason text, last_error text, day integer not null, today integer not null,
    probed_at real, probe_result text
)
"""


class SqlitePoolStateStore:
    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists():  # 0600: the reasons quote upstream messages (redacted, but the user's own)
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
        with contextlib.closing(self._connect()) as db, db:
            db.execute(SCHEMA)
        self._pending: dict[str, AccountSnapshot | None] = {}  # name -> snapshot, None: delete
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._closing = False
        self._writer = threading.Thread(target=self._write_loop, name="pool-state-writer", daemon=True)
        self._writer.start()

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=10, check_same_thread=False)
        db.execute("pragma journal_mode=wal")
        db.execute("pragma synchronous=normal")  # WAL stays consistent; a power cut may lose the last batch
        return db

    def load(self) -> dict[str, AccountSnapshot]:
        with contextlib.closing(self._connect()) as db:
            rows = db.execute(f"select {', '.join(COLUMNS)} from pool_state").fetchall()
        return {row[0]: AccountSnapshot(*row) for row in rows}

    def save(self, snapshot: AccountSnapshot) -> None:
        self._queue(snapshot.name, snapshot)

    def forget(self, name: str) -> None:
        self._queue(name, None)

    def _queue(self, name: str, snapshot: AccountSnapshot | None) -> None:
        with self._lock:
            self._pending[name] = snapshot
        self._wake.set()

    def close(self) -> None:
        self._closing = True
        self._wake.set()
        self._writer.join(timeout=10)

    def _write_loop(self) -> None:
        db = self._connect()
        try:
            while True:
                self._wake.wait()
                if not self._closing:
                    time.sleep(BATCH_SECONDS)  # gather the burst this change is likely part of
                self._wake.clear()
                self._write_pending(db)
                if self._closing:
                    self._write_pending(db)  # anything queued while the last batch was written
                    return
        finally:
            db.close()

    def _write_pending(self, db: sqlite3.Connection) -> None:
        with self._lock:
            pending, self._pending = self._pending, {}
        if not pending:
            return
        try:
            with db:
                for name, snapshot in pending.items():
                    if snapshot is None:
                        db.execute("delete from pool_state where name = ?", (name,))
                    else:
                        values = asdict(snapshot)
                        db.execute(
                            f"insert or replace into pool_state ({', '.join(COLUMNS)}) "
                            f"values ({', '.join('?' for _ in COLUMNS)})",
                            [values[c] for c in COLUMNS],
                        )
        except sqlite3.Error as error:  # the bridge goes on; the state is written again on its next change
            log.error("cannot write the pool state to %s: %s", self.path, error)


def state_path(database: str) -> Path:
    """Where the pool state lives: `pool_state.db` in the recorder's database folder."""
    return Path(database).expanduser().parent / STATE_FILE
