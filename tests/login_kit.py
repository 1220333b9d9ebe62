"""What the login tests share: a user's machine in a temporary directory (home, bridge home, working
directory), and running `llmbridge login ...` in-process as a user would type it."""

from __future__ import annotations

import signal
import stat
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from llmbridge import cli


@dataclass
class Machine:
    home: Path  # the user's ~
    bridge_home: Path  # $LLMBRIDGE_HOME: the bridge's data directory and the config it finds
    work: Path  # the working directory

    @property
    def config(self) -> Path:
        return self.bridge_home / "bridge.toml"


def isolated_machine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Machine:
    machine = Machine(tmp_path / "userhome", tmp_path / "bridgehome", tmp_path / "work")
    for folder in (machine.home, machine.bridge_home, machine.work):
        folder.mkdir()
    monkeypatch.setenv("HOME", str(machine.home))
    monkeypatch.setenv("LLMBRIDGE_HOME", str(machine.bridge_home))
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    for name in ("LLMBRIDGE_CONFIG", "XDG_DATA_HOME", "BROWSER"):
        monkeypatch.delenv(name, raising=False)
    for name in ("AUTH_URL", "TOKEN_URL", "DEVICE_URL", "BASE_URL"):
        monkeypatch.delenv(f"LLMBRIDGE_LOGIN_{name}", raising=False)
    monkeypatch.chdir(machine.work)
    return machine


def login(*args: str, input: str | None = None) -> Result:
    return CliRunner().invoke(cli.main, ["login", *args], input=input)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def leftovers(folder: Path) -> list[str]:
    """Files a login left in `folder` (temp files included)."""
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def as_from_a_terminal() -> None:
    """`preexec_fn` of a login started to be interrupted: SIGINT unblocked and at its default in the
    child, as a terminal's Ctrl-C finds a command, whatever the test runner's own signal state (a
    runner started in the background has SIGINT ignored, which its children inherit, and a blocked
    SIGINT in the spawning thread would be inherited too)."""
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    signal.signal(signal.SIGINT, signal.SIG_DFL)
