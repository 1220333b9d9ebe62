"""llmbridge/reload.py: the config watcher reads a changed file only once it is whole.

(The reload of a running bridge end to end is in tests/test_e2e_reload.py and
tests/test_e2e_pool_operations.py.)"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import pytest

from llmbridge.config import BridgeConfig
from llmbridge.reload import ConfigWatcher

CONFIG = """api_keys = ["sk-client-0123456789"]

[[accounts]]
name = "one"
provider = "openai"
api_key = "sk-upstream"
base_url = "http://127.0.0.1:9/v1"
"""


class StubApp:
    """What the watcher needs of BridgeApp: validate, then apply; each applied config is kept."""

    def __init__(self) -> None:
        self.applied: list[BridgeConfig] = []

    def validate(self, config: BridgeConfig) -> None:
        pass

    def apply(self, config: BridgeConfig) -> list[str]:
        self.applied.append(config)
        return ["accounts"]


def watcher(path: Path, app: StubApp, **timing: float) -> ConfigWatcher:
    return ConfigWatcher(app, path, **timing)  # type: ignore[arg-type]


def test_an_empty_file_is_not_applied(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "bridge.toml"
    path.write_text(CONFIG)
    app = StubApp()
    watching = watcher(path, app)
    path.write_text("")
    with caplog.at_level(logging.ERROR, logger="llmbridge.reload"):
        assert watching.reload() is False
    assert app.applied == []
    assert any("empty" in r.message and "previous config stays" in r.message for r in caplog.records)
    path.write_text(CONFIG)
    assert watching.reload() is True and [a.name for a in app.applied[0].accounts] == ["one"]


def test_a_file_being_rewritten_is_read_once_it_is_whole(tmp_path: Path) -> None:
    """Truncated, then written a moment later (as `cat > file` or some editors do): the watcher
    must apply the whole new file once, never the empty one in between."""
    path = tmp_path / "bridge.toml"
    path.write_text(CONFIG)
    app = StubApp()

    async def run() -> None:
        watching = asyncio.ensure_future(watcher(path, app, interval=0.02, settle=0.3).run())
        await asyncio.sleep(0.1)
        path.write_text("")  # the watcher sees this within its 20 ms interval...
        await asyncio.sleep(0.15)  # ...but it has not settled when the rest is written
        path.write_text(CONFIG.replace('name = "one"', 'name = "two"'))
        await asyncio.sleep(1.0)
        watching.cancel()

    asyncio.run(run())
    assert [[a.name for a in config.accounts] for config in app.applied] == [["two"]]


def test_an_edit_is_applied_after_it_settles(tmp_path: Path) -> None:
    path = tmp_path / "bridge.toml"
    path.write_text(CONFIG)
    app = StubApp()
    seen: list[Any] = []

    async def run() -> None:
        watching = asyncio.ensure_future(watcher(path, app, interval=0.02, settle=0.05).run())
        path.write_text(CONFIG.replace('name = "one"', 'name = "three"'))
        for _ in range(100):
            await asyncio.sleep(0.02)
            if app.applied:
                break
        seen.extend(app.applied)
        watching.cancel()

    asyncio.run(run())
    assert [[a.name for a in config.accounts] for config in seen] == [["three"]]
