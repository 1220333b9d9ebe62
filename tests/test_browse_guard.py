"""`llmbridge browse` (issue 10, point 11): Datasette answers only local Host names (a DNS-rebinding
guard, as a Datasette plugin on its `asgi_wrapper` hook), and beyond loopback only after the one-time
sign-in. The real Datasette process runs on 127.0.0.1; serving beyond loopback is checked from the
command it would run."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from llmbridge import cli
from llmbridge.recorder import browse as browse_module
from llmbridge.recorder.browse import HOSTS_ENV, allowed_names, host_allowed, is_loopback
from llmbridge.recorder.schema import connect, migrate


def test_host_names_that_are_answered() -> None:
    allowed = allowed_names(["box.lan", "FE80::1"])
    for header in ("127.0.0.1", "127.0.0.1:8001", "localhost:8001", "LOCALHOST", "[::1]", "[::1]:8001", "box.lan:80"):
        assert host_allowed(header, allowed), header
    assert host_allowed("[fe80::1]:8001", allowed)
    for header in (
        None,
        "",
        "evil.example.com",
        "evil.example.com:8001",
        "127.0.0.1.evil.example.com",
        "127.0.0.2",
        "localhost:abc",
        "localhost:",
        "[::1]x",
        "[::1",
        "::1",
        "localhost.evil.com:8001",
    ):
        assert not host_allowed(header, allowed), header
    assert is_loopback("127.0.0.1") and is_loopback("127.1.2.3") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.5") and not is_loopback("box.lan")


def make_database(path: Path) -> Path:
    """An empty recordings database, as the bridge leaves it before the first request."""
    if not path.exists():
        migrate(connect(path))
    return path


def browse_command(monkeypatch, db: Path, *args: str):
    make_database(db)
    # The command line is what is checked here; 192.168.1.5 is not this machine's, so it cannot be bound.
    monkeypatch.setattr(browse_module, "port_problem", lambda host, port: None)
    calls = []
    monkeypatch.setattr(subprocess, "call", lambda command, **kw: calls.append((command, kw.get("env"))) or 0)
    result = CliRunner().invoke(cli.main, ["browse", "--db", str(db), *args], catch_exceptions=False)
    return result, calls


def test_beyond_loopback_the_sign_in_is_always_on(tmp_path: Path, monkeypatch) -> None:
    db = tmp_path / "bridge.db"
    refused, calls = browse_command(monkeypatch, db, "--host", "0.0.0.0")
    assert refused.exit_code == 1 and "--allow-host" in refused.output and not calls

    result, calls = browse_command(monkeypatch, db, "--host", "0.0.0.0", "--allow-host", "box.lan")
    assert result.exit_code == 0, result.output
    ((command, env),) = calls
    assert "--root" in command and command[command.index("--host") + 1] == "0.0.0.0"
    assert Path(command[command.index("--plugins-dir") + 1], "host_check.py").is_file()
    assert env[HOSTS_ENV] == "box.lan"
    metadata = yaml.safe_load(Path(command[command.index("--metadata") + 1]).read_text())
    assert metadata["allow"] == {"id": "root"}
    assert "Sign in" in result.output

    result, calls = browse_command(monkeypatch, db, "--host", "192.168.1.5")
    ((command, env),) = calls
    assert result.exit_code == 0 and "--root" in command and env[HOSTS_ENV] == "192.168.1.5"

    result, calls = browse_command(monkeypatch, db)  # the default: loopback, no sign-in
    ((command, env),) = calls
    assert "--root" not in command and env[HOSTS_ENV] == ""
    assert "allow" not in yaml.safe_load(Path(command[command.index("--metadata") + 1]).read_text())


# --- the real Datasette ------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(port: int, path: str, host: str | None = None, cookie: str | None = None) -> tuple[int, str, dict]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}")
    if host is not None:
        request.add_unredirected_header("Host", host)
    if cookie:
        request.add_header("Cookie", cookie)
    opener = urllib.request.build_opener(NoRedirect)
    try:
        with opener.open(request, timeout=5) as response:
            return response.status, response.read().decode(), dict(response.headers)
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(errors="replace"), dict(e.headers)


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):  # the sign-in answers 302 with its cookie: keep it
        return None


class Browse:
    def __init__(self, tmp_path: Path, *args: str) -> None:
        self.port = free_port()
        self.out = tmp_path / "browse.out"
        make_database(tmp_path / "bridge.db")
        command = [
            sys.executable,
            "-c",
            "from llmbridge.cli import main; main()",
            "browse",
            "--db",
            str(tmp_path / "bridge.db"),
            "--port",
            str(self.port),
            *args,
        ]
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        with open(self.out, "wb") as out:
            self.process = subprocess.Popen(
                command, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, env=env
            )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            assert self.process.poll() is None, self.out.read_text()
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.2)
        raise AssertionError(f"Datasette did not start: {self.out.read_text()}")

    def output(self) -> str:
        return self.out.read_text(errors="replace")

    def stop(self) -> None:
        os.killpg(self.process.pid, signal.SIGTERM)  # browse and the Datasette it started
        self.process.wait(timeout=10)


@pytest.mark.timeout(120)
def test_datasette_answers_only_local_host_names(tmp_path: Path) -> None:
    browse = Browse(tmp_path, "--allow-host", "recordings.test")
    try:
        port = browse.port
        for host in (f"127.0.0.1:{port}", f"localhost:{port}", f"[::1]:{port}", "recordings.test"):
            status, body, _ = get(port, "/bridge.json", host)
            assert status == 200, (host, body)
        for host in ("evil.example.com", f"evil.example.com:{port}", f"127.0.0.1.nip.io:{port}"):
            status, body, _ = get(port, "/bridge.json", host)
            assert status == 403 and "not a local name" in body, (host, status, body)
        status, _, _ = get(port, "/bridge/recent_exchanges.json", "evil.example.com")
        assert status == 403
    finally:
        browse.stop()


@pytest.mark.timeout(120)
def test_with_login_nothing_is_shown_before_the_one_time_sign_in(tmp_path: Path) -> None:
    browse = Browse(tmp_path, "--login")
    try:
        port = browse.port
        deadline = time.monotonic() + 10
        while "auth-token?token=" not in browse.output() and time.monotonic() < deadline:
            time.sleep(0.1)
        url = next(w for w in browse.output().split() if "auth-token?token=" in w)
        llmbridge_pages = ("/", "/-/llmbridge/help", "/bridge/-/exchange/anything", "/bridge/-/image/sha256~3Ax")
        for path in ("/bridge.json", "/bridge/recent_exchanges.json", "/bridge/exchanges.json", "/-/metadata.json"):
            status, _, _ = get(port, path)
            assert status == 403, path
        for path in llmbridge_pages:  # the plugin's own pages ask Datasette's permissions too
            status, _, _ = get(port, path)
            assert status == 403, path
        status, _, headers = get(port, url.split(str(port), 1)[1])
        assert status == 302 and "ds_actor=" in headers.get("set-cookie", "")
        cookie = headers["set-cookie"].split(";")[0]
        status, _, _ = get(port, url.split(str(port), 1)[1])
        assert status == 403  # one-time: the URL signs in once
        for path in ("/bridge.json", "/bridge/recent_exchanges.json", "/", "/-/llmbridge/help"):
            status, body, _ = get(port, path, cookie=cookie)
            assert status == 200, (path, body)
        status, _, _ = get(port, "/bridge/-/exchange/anything", cookie=cookie)
        assert status == 404
        status, _, _ = get(port, "/bridge.json", "evil.example.com", cookie=cookie)
        assert status == 403  # signed in or not, the Host must be local
    finally:
        browse.stop()
