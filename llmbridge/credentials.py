"""Credential files: atomic writes and single-flight refresh.

A refreshed or rotated token is written to disk (temp file in the same directory, fsync, rename,
mode 0600) *before* it is used: a rotated refresh token that only lived in memory is a lost account.

The temp file is created with mode 0600 (never readable by others, not even for a moment) and named
`.<file>.<pid>.<random>.tmp`. A process killed mid-write (kill -9, power loss) leaves it behind;
`recover_temp_files` runs at startup on every credential file: a leftover of a dead process that
holds a whole JSON object newer than the file is the rotated token that never reached the file, so it
is moved into place; any other leftover (half written, or older) is removed.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import secrets
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any, Awaitable, Callable, Protocol

from llmbridge.redact import register_secrets_in

log = logging.getLogger(__name__)


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
    tmp = path.parent / f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
    # 0600 from the start (O_EXCL: never someone else's file); the umask can only narrow it.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=2)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent)  # the rename itself survives a power loss
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _fsync_dir(folder: Path) -> None:
    try:
        dir_fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)


def recover_temp_files(path: Path) -> list[str]:
    """Deal with the temp files a crashed write of `path` left beside it (see the module docstring);
    those of a live process (a concurrent bridge writing right now) are left alone. Returns what
    was done, one line each, for the log."""
    done: list[str] = []
    try:
        leftovers = sorted(path.parent.glob(f".{path.name}.*.tmp"), key=_mtime)
    except OSError:
        return done
    for tmp in leftovers:
        parts = tmp.name[len(path.name) + 2 :].split(".")
        if len(parts) >= 2 and parts[0].isdigit() and _alive(int(parts[0])):
            continue
        try:
            if _mtime(tmp) > _mtime(path) and _whole_object(tmp):
                os.replace(tmp, path)
                done.append(f"{path}: restored the token file a crashed write left in {tmp.name}")
            else:
                tmp.unlink()
                done.append(f"{path}: removed {tmp.name}, left by a crashed write")
        except OSError as e:
            done.append(f"{path}: could not clean up {tmp.name}: {e}")
    return done


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _whole_object(path: Path) -> bool:
    try:
        return isinstance(json.loads(path.read_text(encoding="utf-8")), dict)
    except (OSError, ValueError):
        return False


class RefreshLock(Protocol):
    """A lock held across processes while one of them refreshes a credential file
    (`llmbridge.shared_state.SharedState.held`)."""

    def held(self, key: str) -> AbstractAsyncContextManager[None]: ...


_shared_lock: RefreshLock | None = None


def share_refreshes(lock: RefreshLock | None) -> None:
    """With `state_url`, refreshes are single-flight across processes too: the process that holds
    the file's lock refreshes it; the others wait, then find the file refreshed and re-read it (each
    refresh re-checks the file inside its flight)."""
    global _shared_lock
    _shared_lock = lock


class SingleFlight:
    """Runs one refresh at a time per account: concurrent callers wait for the one in flight and
    share its outcome (five requests on an expired token cause one refresh, not five). `key` names
    the credential file for the lock shared with other processes (`share_refreshes`)."""

    def __init__(self, key: str = "") -> None:
        self.key = key
        self._running: asyncio.Future[None] | None = None

    async def run(self, refresh: Callable[[], Awaitable[None]]) -> None:
        if self._running is not None:
            return await asyncio.shield(self._running)
        loop = asyncio.get_running_loop()
        self._running = loop.create_future()
        try:
            await self._locked(refresh)
        except BaseException as e:
            self._running.set_exception(e)
            self._running.exception()  # mark retrieved: waiters re-raise it themselves
            raise
        else:
            self._running.set_result(None)
        finally:
            self._running = None

    async def _locked(self, refresh: Callable[[], Awaitable[None]]) -> None:
        lock = _shared_lock
        if lock is None or not self.key:
            await refresh()
            return
        async with lock.held(self.key):
            await refresh()
