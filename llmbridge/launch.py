"""Builds the mitmdump command line that starts the bridge (`llmbridge serve`, `scripts/serve`).

mitmdump binds its listeners before it loads a `-s` script: the addon's own defaults (reverse mode to
a dead target, 127.0.0.1, port 8418) arrive only after mitmproxy has listened on its own default, a
regular proxy on *:8080. Given on the command line, the same options are in force from the first bind.
Options the user gives win: ours are added only for what the user left unset.

Plain Python (no mitmproxy import): it only prepares arguments and checks that the port is free.
"""

from __future__ import annotations

import errno
import socket
from dataclasses import dataclass
from pathlib import Path

from llmbridge.config import DEAD_TARGET, DEFAULT_HOST, DEFAULT_PORT, checkout_root, data_dir

# The mitmproxy options that decide what is bound, with the command-line flags that also set them.
FLAGS = {"mode": ("--mode", "-m"), "listen_host": ("--listen-host",), "listen_port": ("--listen-port", "-p")}


@dataclass
class Launch:
    argv: list[str]  # the mitmdump command line
    host: str
    port: int


def addon_path() -> Path:
    root = checkout_root()
    if root is None:
        raise FileNotFoundError("addons/openai_bridge.py not found: run llmbridge from its checkout (pip install -e .)")
    return root / "addons" / "openai_bridge.py"


def given_options(args: list[str]) -> dict[str, str]:
    """The options the user's mitmdump arguments set, by option name (the last value wins)."""
    given: dict[str, str] = {}
    flag_names = {flag: name for name, flags in FLAGS.items() for flag in flags}
    i = 0
    while i < len(args):
        arg = args[i]
        value: str | None = None
        if arg == "--set" and i + 1 < len(args):
            value, i = args[i + 1], i + 1
        elif arg.startswith("--set="):
            value = arg.removeprefix("--set=")
        if value is not None:
            name, _, setting = value.partition("=")
            given[name] = setting
        else:
            flag, eq, inline = arg.partition("=")
            if flag in flag_names:
                if eq:
                    given[flag_names[flag]] = inline
                elif i + 1 < len(args):
                    given[flag_names[flag]], i = args[i + 1], i + 1
        i += 1
    return given


def build(mitmdump: Path, user_args: list[str], config_path: Path | None = None) -> Launch:
    """mitmdump's argv: the safe defaults the user did not set, the addon, then the user's arguments."""
    given = given_options(user_args)
    defaults = {
        "confdir": str(data_dir() / "mitmproxy"),  # mitmproxy makes its CA there before scripts load
        "mode": DEAD_TARGET,
        "listen_host": DEFAULT_HOST,
        "listen_port": str(DEFAULT_PORT),
    }
    if config_path is not None:
        defaults["bridge_config"] = str(config_path.expanduser().resolve())
    argv = [str(mitmdump)]
    for name, value in defaults.items():
        if name not in given:
            argv += ["--set", f"{name}={value}"]
    argv += ["-s", str(addon_path()), *user_args]
    host = given.get("listen_host", DEFAULT_HOST)
    port = int(given.get("listen_port") or DEFAULT_PORT)
    return Launch(argv=argv, host=host, port=port)


def port_problem(host: str, port: int) -> str | None:
    """A one-line explanation when host:port cannot be bound now, else None. Checked before mitmdump
    starts, because mitmproxy's own message suggests `--mode …@port`, which is wrong for the bridge."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as asyncio's server does
        try:
            probe.bind((host, port))
        except OSError as e:
            if e.errno == errno.EADDRINUSE:
                return (
                    f"{host}:{port} is already in use (another llmbridge, or another program); stop it, "
                    f"or start the bridge on another port with --set listen_port={port + 1}"
                )
            return f"cannot listen on {host}:{port}: {e.strerror or e}"
    return None
