"""Credential files: atomic writes and single-flight refresh.

A refreshed or rotated token is written to disk (temp file in the same directory, fsync, rename,
mode 0600) *before* it is used: a rotated refresh token that only lived in memory is a lost account.
"""

from __future__ import annotations

import asyncio
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Awaitable, Callable

from llmbridge.redact import register_secrets_in


def read_json(path: Path) -> dict[str, Any]:
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    if not isinstance(data, dict):
        raise ValueError(f"{path} does not hold a JSON object")
    register_secrets_in(data)  # its tokens are redacted wherever they appear
    return data


def write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    """Replace `path` with `data` so that a crash leaves either the old or the new file, never half."""
    register_secrets_in(data)  # a refreshed token is redacted before it is first used
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=2)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


class SingleFlight:
    """Runs one refresh at a time per account: concurrent callers wait for the one in flight and
    share its outcome (five requests on an expired token cause one refresh, not five)."""

    def __init__(self) -> None:
        self._running: asyncio.Future[None] | None = None

    async def run(self, refresh: Callable[[], Awaitable[None]]) -> None:
        if self._running is not None:
            return await asyncio.shield(self._running)
        loop = asyncio.get_running_loop()
        self._running = loop.create_future()
        try:
            await refresh()
        except BaseException as e:
            self._running.set_exception(e)
            self._running.exception()  # mark retrieved: waiters re-raise it themselves
            raise
        else:
            self._running.set_result(None)
        finally:
            self._running = None
