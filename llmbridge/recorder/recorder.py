"""The recorder's front: takes finished exchanges from any thread and writes them on its own thread.

`submit()` never blocks the event loop: it puts the record on a bounded queue and returns. One writer
thread owns the SQLite connection and writes the records waiting, up to BATCH_SIZE, in one transaction
(`store.RecordWriter.write_batch`; each in a savepoint of its own, so one that fails loses only itself).
Nothing is lost silently: a full queue drops the record and logs an error with the counts (`dropped`),
a failed write logs an error and counts it (`failed`); `stats` shows all counters.
"""

from __future__ import annotations

import logging
import queue
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

from llmbridge.config import BridgeConfig
from llmbridge.errors import ConfigError
from llmbridge.exchange import ExchangeRecord
from llmbridge.recorder.schema import connect, migrate
from llmbridge.recorder.store import TRANSIENT, RecordWriter

log = logging.getLogger(__name__)

_STOP = object()  # tells the writer thread to finish
OVERFLOW_LOG_INTERVAL = 5.0  # seconds between repeated "queue full" errors during one overflow
# Records written in one transaction at most, when that many are waiting (see `_next_batch`).
BATCH_SIZE = 64
# A write that fails for a reason that passes (the database locked past SQLite's busy timeout by
# another program, the disk full until space is freed) is tried again after these pauses, in
# seconds; the exchange is lost, loudly, only when all fail. Other errors are not retried.
RETRY_PAUSES = (1.0, 2.0, 4.0, 8.0)
# Several bridges starting at once on one database (scripts/serve-many) each migrate it; SQLite answers
# "locked" at once (not after its busy timeout) when two connections race to change the journal mode
# or the schema. The open is retried on that answer: migrations are named and run once, so a retry
# finds the other process's work done.
OPEN_RETRY_PAUSES = (0.1, 0.2, 0.4, 0.8, 1.6, 3.2)


class RecorderError(ConfigError):
    """The recordings database cannot be opened or created; the message is one line."""


class Recorder:
    def __init__(self, path: str | Path, record_bodies: bool = True, queue_size: int = 10000) -> None:
        self.path = Path(path)
        self.record_bodies = record_bodies
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=queue_size)
        self._lock = threading.Lock()
        self._progress = threading.Condition(self._lock)
        self._accepted = 0  # records put on the queue
        self._done = 0  # records the writer finished with (written or failed)
        self._written = 0
        self._failed = 0
        self._dropped = 0
        self._last_overflow_log = 0.0
        self._thread: threading.Thread | None = None
        self._closed = False

    # --- lifecycle ---------------------------------------------------------------------------------

    def open(self) -> None:
        """Creates or migrates the database and starts the writer thread.

        Raises RecorderError (a ConfigError) with a one-line message when the file cannot be used."""
        for pause in (*OPEN_RETRY_PAUSES, None):
            try:
                self._create_or_migrate()
                break
            except sqlite3.OperationalError as e:
                if pause is None or "locked" not in str(e):
                    raise RecorderError(f"cannot open recordings database {self.path}: {e}") from None
                time.sleep(pause)  # another process is migrating the same file: once it is done, ours is too
            except Exception as e:  # sqlite3.Error, OSError, a failed migration: all mean "cannot record"
                raise RecorderError(f"cannot open recordings database {self.path}: {e}") from None
        self._thread = threading.Thread(target=self._run, name="llmbridge-recorder", daemon=True)
        self._thread.start()

    def _create_or_migrate(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        db = connect(self.path)
        try:
            migrate(db)
        finally:
            db.conn.close()

    def close(self, timeout: float = 30) -> None:
        """Writes what is queued, then stops the writer thread. Reports records left unwritten."""
        if self._closed:
            return
        self._closed = True
        if self._thread is None:
            return
        try:
            self._queue.put(_STOP, timeout=timeout)
        except queue.Full:
            log.error("recorder: queue still full after %.0fs at close", timeout)
        self._thread.join(timeout)
        left = self._accepted - self._done
        if left:
            log.error("recorder: closed with %d exchanges not written (stats %s)", left, self.stats)

    # --- the caller's side -------------------------------------------------------------------------

    def submit(self, record: ExchangeRecord) -> None:
        """Queues one finished exchange for writing. Thread-safe; never blocks."""
        if self._closed or self._thread is None:
            self._drop("recorder is not open")
            return
        try:
            self._queue.put_nowait(record)
        except queue.Full:
            self._drop(f"queue full ({self._queue.maxsize} waiting)")
            return
        with self._lock:
            self._accepted += 1

    def flush(self, timeout: float = 10) -> None:
        """Waits until everything submitted so far is written (or has failed). TimeoutError if not."""
        with self._progress:
            target = self._accepted
            if not self._progress.wait_for(lambda: self._done >= target, timeout):
                raise TimeoutError(f"recorder: {target - self._done} exchanges still unwritten after {timeout}s")

    @property
    def stats(self) -> dict[str, int]:
        with self._lock:
            return {
                "written": self._written,
                "failed": self._failed,
                "dropped": self._dropped,
                "queued": self._queue.qsize(),
            }

    def _drop(self, why: str) -> None:
        now = time.monotonic()
        with self._lock:
            self._dropped += 1
            dropped = self._dropped
            first = dropped == 1 or now - self._last_overflow_log >= OVERFLOW_LOG_INTERVAL
            if first:
                self._last_overflow_log = now
        if first:  # loud, but not one line per dropped record during a burst
            log.error(
                "recorder: exchange not recorded: %s; %d dropped so far (written %d, failed %d)",
                why,
                dropped,
                self._written,
                self._failed,
            )

    # --- the writer thread -------------------------------------------------------------------------

    def _run(self) -> None:
        writer = self._connect()
        stopping = False
        while not stopping:
            batch = self._next_batch()
            if batch[-1] is _STOP:
                batch.pop()
                stopping = True
            if batch:
                self._write_batch(writer, batch)
        if writer is not None:
            writer.conn.close()

    def _next_batch(self) -> list[Any]:
        """The next record (waiting for it) and those queued behind it, up to BATCH_SIZE: under load
        they share one transaction; alone, a record is written at once. Ends at the stop marker."""
        batch = [self._queue.get()]
        while len(batch) < BATCH_SIZE and batch[-1] is not _STOP:
            try:
                batch.append(self._queue.get_nowait())
            except queue.Empty:
                break
        return batch

    def _connect(self) -> RecordWriter | None:
        try:
            return RecordWriter(connect(self.path).conn, self.record_bodies)
        except Exception:
            log.exception("recorder: cannot open %s in the writer thread; every write will fail", self.path)
            return None

    def _write_batch(self, writer: RecordWriter | None, batch: list[ExchangeRecord]) -> None:
        try:
            if writer is None:
                raise RecorderError(f"recordings database {self.path} is not open")
            outcomes = self._write_retrying(writer, batch)
        except Exception as e:  # the whole batch lost: counted and logged, never silent
            outcomes = [e] * len(batch)
        for record, error in zip(batch, outcomes, strict=True):
            if error is not None:
                exchange_id = getattr(record, "id", "?")
                log.error("recorder: writing exchange %s failed: %s: %s", exchange_id, type(error).__name__, error)
        with self._progress:
            self._done += len(batch)
            self._failed += sum(error is not None for error in outcomes)
            self._written += sum(error is None for error in outcomes)
            self._progress.notify_all()

    def _write_retrying(self, writer: RecordWriter, batch: list[ExchangeRecord]) -> list[Exception | None]:
        for pause in (*RETRY_PAUSES, None):
            try:
                return self._write(writer, batch)
            except (sqlite3.OperationalError, OSError) as e:
                if pause is None or not any(reason in str(e).lower() for reason in TRANSIENT):
                    raise
                log.warning("recorder: writing %d exchanges failed (%s); trying again in %.0fs", len(batch), e, pause)
                time.sleep(pause)
        raise AssertionError("unreachable: the last pause is None")

    def _write(self, writer: RecordWriter, batch: list[ExchangeRecord]) -> list[Exception | None]:
        """One batch, one transaction. (A seam for tests that slow the writer down or fail it.)"""
        return writer.write_batch(batch)


def recorder_from_config(config: BridgeConfig) -> Recorder | None:
    """The recorder the config asks for, not yet opened; None when `record = false`."""
    if not config.record:
        return None
    return Recorder(config.database, record_bodies=config.record_bodies)
