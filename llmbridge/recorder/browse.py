"""What `llmbridge browse` guards: which Host names Datasette answers, and when a sign-in is required.

Datasette binds 127.0.0.1, but a page on any web site can still reach it through DNS rebinding: the
attacker's name is made to resolve to 127.0.0.1, and the browser then sends that page's requests,
with `Host: evil.example.com`, to the local Datasette and lets the page read the answers (every
recorded prompt). The guard is the Host header: a request whose Host is not a local name
(`127.0.0.1`, `localhost`, `[::1]`, any port) or a name the user allowed (`--allow-host`) gets a 403
before Datasette sees it. It runs as a Datasette plugin on the documented `asgi_wrapper` hook
(`datasette_plugins/host_check.py`, loaded with `--plugins-dir`); the names reach the Datasette process
in the environment (`LLMBRIDGE_BROWSE_HOSTS`).

Served beyond loopback (`--host 0.0.0.0`, a LAN address), Host names are not enough: anyone who can
reach the port could read the recordings. There the sign-in is always on: Datasette's `--root` prints a
one-time sign-in URL (it sets a signed `ds_actor` cookie for the `root` actor) and the metadata's
instance-wide `allow: {id: root}` refuses everyone else (403), the JSON API included.
"""

from __future__ import annotations

import errno
import ipaddress
import os
import socket
from collections.abc import Iterable
from typing import Any

HOSTS_ENV = "LLMBRIDGE_BROWSE_HOSTS"
LOCAL_NAMES = ("127.0.0.1", "localhost", "[::1]")
PLUGINS_DIR = os.path.join(os.path.dirname(__file__), "datasette_plugins")
TEMPLATES_DIR = os.path.join(os.path.dirname(__file__), "templates")


def port_problem(host: str, port: int) -> str | None:
    """One line naming the option to change when Datasette could not listen on host:port, else None.
    Checked before Datasette starts: its own failure is a traceback after the URL was printed."""
    family = socket.AF_INET6 if ":" in host.strip("[]") else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn's server does
        try:
            probe.bind((host.strip("[]"), port))
        except OSError as e:
            if e.errno == errno.EADDRINUSE:
                return (
                    f"port {port} on {host} is already in use (another llmbridge browse or Datasette?); "
                    f"stop it, or choose another port with --port {port + 1}"
                )
            return f"cannot listen on {host}:{port}: {e.strerror or e}; choose another address with --host"
    return None


def is_loopback(host: str) -> bool:
    """Whether binding `host` keeps the server on this machine (127.0.0.0/8, ::1, localhost)."""
    if host.lower() in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def is_wildcard(host: str) -> bool:
    try:
        return ipaddress.ip_address(host.strip("[]")).is_unspecified
    except ValueError:
        return False


def host_name(host: str) -> str:
    """How a bind address appears in a Host header: IPv6 literals in brackets, names lower-case."""
    host = host.strip().lower()
    try:
        if ipaddress.ip_address(host.strip("[]")).version == 6:
            return f"[{host.strip('[]')}]"
    except ValueError:
        pass
    return host


def allowed_names(extra: Iterable[str] = ()) -> frozenset[str]:
    return frozenset(LOCAL_NAMES) | {host_name(name) for name in extra if name.strip()}


def names_from_env(environ: dict[str, str] | None = None) -> frozenset[str]:
    value = (environ if environ is not None else os.environ).get(HOSTS_ENV, "")
    return allowed_names(value.split(","))


def host_allowed(header: str | None, allowed: frozenset[str]) -> bool:
    """Whether a Host header value names an allowed host, with or without a port."""
    if not header:
        return False
    host = header.strip().lower()
    if host.startswith("["):
        name, bracket, rest = host.partition("]")
        if not bracket:
            return False
        name += "]"
        if rest and not rest.startswith(":"):
            return False
        port = rest[1:]
    else:
        name, colon, port = host.partition(":")
        if colon and not port:
            return False
    if port and not port.isdigit():
        return False
    return name in allowed


def datasette_app(database: str | os.PathLike[str], metadata: dict[str, Any]) -> Any:
    """An in-process Datasette as `llmbridge browse` starts it (same plugins and templates), for tests
    and scripts; call `await app.invoke_startup()` before use."""
    from datasette.app import Datasette  # imported only when wanted: it is heavy

    return Datasette([str(database)], metadata=metadata, plugins_dir=PLUGINS_DIR, template_dir=TEMPLATES_DIR)
