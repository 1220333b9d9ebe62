"""Config reload without a restart: the config file is watched, and an edit takes effect on the
running bridge.

What changes at once: accounts (added, removed, changed: an unchanged account keeps its state),
client keys, prompt rules, aliases, routing, pacing, limits and the other request settings. What
needs a restart (the listener, the database, upstream timeouts) is named in the log. An edit that
does not load or validate is reported and the previous config stays in force. Requests in flight
finish on the accounts they started with.
"""

from __future__ import annotations

import asyncio
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from llmbridge.config import BridgeConfig, load_config

if TYPE_CHECKING:
    from llmbridge.app import BridgeApp

log = logging.getLogger(__name__)

WATCH_INTERVAL = 1.0  # seconds between looks at the config file
# A changed file is read once it has stayed the same this long: an editor (or `cat >`, or a test)
# that truncates the file and then writes it must not be caught in between, when the file is empty
# or half written and may still parse (an empty file is a valid config with no accounts or keys).
SETTLE_SECONDS = 0.25
# Settings read once at startup: a change is reported, and takes effect after a restart.
RESTART_SETTINGS = (
    "database",
    "record",
    "record_bodies",
    "upstream_connect_timeout",
    "upstream_read_timeout",
    "state_url",
)


@dataclass(frozen=True)
class FileStamp:
    mtime_ns: int
    size: int

    @classmethod
    def of(cls, path: Path) -> FileStamp | None:
        try:
            stat = os.stat(path)
        except OSError:
            return None
        return cls(stat.st_mtime_ns, stat.st_size)


class ConfigWatcher:
    def __init__(
        self, app: BridgeApp, path: Path, interval: float = WATCH_INTERVAL, settle: float = SETTLE_SECONDS
    ) -> None:
        self.app, self.path, self.interval, self.settle = app, path, interval, settle
        self.stamp = FileStamp.of(path)

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            stamp = await self._settled()
            if stamp is not None and stamp != self.stamp:
                self.stamp = stamp
                self.reload()

    async def _settled(self) -> FileStamp | None:
        """The file's stamp once it has stopped changing (see SETTLE_SECONDS)."""
        stamp = FileStamp.of(self.path)
        while stamp is not None and stamp != self.stamp:
            await asyncio.sleep(self.settle)
            again = FileStamp.of(self.path)
            if again == stamp:
                break
            stamp = again
        return stamp

    def reload(self) -> bool:
        """Load, validate and apply the config file; False (and the old config kept) if it fails."""
        try:
            if not self.path.read_text().strip():
                raise ValueError("the file is empty (still being written?)")
            config = load_config(self.path)
            self.app.validate(config)
        except Exception as error:  # a config edit must never take the running bridge down
            log.error("config %s not reloaded: %s; the previous config stays in force", self.path, error)
            return False
        changed = self.app.apply(config)
        log.info("config %s reloaded: %s", self.path, changed or "nothing that matters changed")
        return True


def restart_needed(old: BridgeConfig, new: BridgeConfig) -> list[str]:
    return [name for name in RESTART_SETTINGS if getattr(old, name) != getattr(new, name)]
