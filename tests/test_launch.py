"""`llmbridge serve` / `scripts/serve`: mitmdump gets the safe defaults on its command line, so only the
configured address is bound from the first moment; a busy port is explained in the bridge's words."""

from __future__ import annotations

import errno
import os
import socket
import subprocess
from pathlib import Path

import httpx
import pytest

from llmbridge.config import DEAD_TARGET
from llmbridge.launch import addon_path, build, given_options, port_problem
from tests.bridge_process import CLIENT_KEY, LLMBRIDGE, BridgeProcess, free_port, write_config
from tests.test_e2e_faults import listening_addresses

MITMDUMP = Path("/venv/bin/mitmdump")


def test_given_options_reads_every_spelling():
    args = [
        "--set",
        "listen_port=9000",
        "--set=listen_host=::1",
        "-m",
        "reverse:http://x",
        "--flag",
        "--listen-port=9100",
        "--set",
        "bridge_config=a=b.toml",
    ]
    assert given_options(args) == {
        "listen_port": "9100",
        "listen_host": "::1",
        "mode": "reverse:http://x",
        "bridge_config": "a=b.toml",
    }
    assert given_options(["-p", "7000"]) == {"listen_port": "7000"}


def test_defaults_go_on_the_command_line_before_the_script(monkeypatch, tmp_path):
    monkeypatch.setenv("LLMBRIDGE_HOME", str(tmp_path))
    launch = build(MITMDUMP, [])
    assert launch.argv == [
        str(MITMDUMP),
        "--set",
        f"confdir={tmp_path / 'mitmproxy'}",
        "--set",
        f"mode={DEAD_TARGET}",
        "--set",
        "listen_host=127.0.0.1",
        "--set",
        "listen_port=8418",
        "-s",
        str(addon_path()),
    ]
    assert (launch.host, launch.port) == ("127.0.0.1", 8418)


def test_options_the_user_sets_are_left_to_the_user(monkeypatch, tmp_path):
    monkeypatch.setenv("LLMBRIDGE_HOME", str(tmp_path))
    user = ["--set", "listen_port=9000", "--mode", "reverse:http://127.0.0.1:9@9001"]
    launch = build(MITMDUMP, user, config_path=tmp_path / "my.toml")
    assert "listen_port=8418" not in launch.argv and f"mode={DEAD_TARGET}" not in " ".join(launch.argv)
    assert launch.argv[-len(user) :] == user  # the user's arguments come last and win
    assert f"bridge_config={tmp_path / 'my.toml'}" in launch.argv
    assert launch.port == 9000


def test_port_problem_names_the_bridges_own_fix():
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        problem = port_problem("127.0.0.1", port)
    assert problem is not None and f"--set listen_port={port + 1}" in problem and "already in use" in problem
    assert port_problem("127.0.0.1", free_port()) is None


@pytest.fixture
def port_8080_taken():
    """Something else listens on *:8080, mitmproxy's default port (if something already does, fine)."""
    holder = socket.socket()
    holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        holder.bind(("0.0.0.0", 8080))
        holder.listen()
    except OSError as e:
        assert e.errno == errno.EADDRINUSE  # taken already: the condition this test needs holds
    yield
    holder.close()


def test_serve_binds_only_the_configured_address_with_8080_taken(tmp_path, port_8080_taken):
    config = write_config(tmp_path / "bridge.toml", [], record=False)
    with BridgeProcess(tmp_path, config) as bridge:
        listening = [line for line in bridge.output().splitlines() if "listening at" in line]
        assert listening == [line for line in listening if f"at 127.0.0.1:{bridge.port}." in line], listening
        assert len(listening) == 1 and "reverse proxy to http://127.0.0.1:9" in listening[0]
        assert listening_addresses(bridge.port) == {"0100007F"}
        assert "8080" not in bridge.output()
        # the very first request after the banner is served (no listener is swapped under it)
        assert httpx.get(bridge.base_url + "/health", timeout=5).json() == {"status": "ok"}


def test_bare_mitmdump_ends_on_loopback_in_reverse_mode(tmp_path):
    """The plain `mitmdump -s` form keeps working: the addon moves mitmproxy's servers once loaded."""
    config = write_config(tmp_path / "bridge.toml", [], record=False)
    with BridgeProcess(tmp_path, config, bare=True) as bridge:
        assert listening_addresses(bridge.port) == {"0100007F"}
        assert f"reverse proxy to http://127.0.0.1:9 listening at 127.0.0.1:{bridge.port}" in bridge.output()


def test_serve_on_a_busy_port_says_which_option_to_change(tmp_path):
    config = write_config(tmp_path / "bridge.toml", [], record=False)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = subprocess.run(
            [str(LLMBRIDGE), "serve", "--set", f"listen_port={port}", "--set", f"bridge_config={config}"],
            capture_output=True,
            text=True,
            timeout=30,
            env=dict(os.environ, LLMBRIDGE_HOME=str(tmp_path / "home")),
            cwd=tmp_path,
        )
    assert done.returncode != 0
    assert f"127.0.0.1:{port} is already in use" in done.stderr and "--set listen_port=" in done.stderr
    assert "--mode" not in done.stderr and "Traceback" not in done.stderr


def test_console_is_one_line_per_exchange_flushed_at_once(tmp_path):
    """stdout goes to a file (no PYTHONUNBUFFERED): the exchange line is there while the bridge runs,
    with one time stamp and none of mitmproxy's per-connection lines."""
    config = write_config(tmp_path / "bridge.toml", [], record=False)
    with BridgeProcess(tmp_path, config) as bridge:
        response = httpx.post(
            bridge.base_url + "/v1/chat/completions",
            timeout=10,
            headers={"authorization": f"Bearer {CLIENT_KEY}"},
            json={"model": "nope", "messages": [{"role": "user", "content": "hi"}]},
        )
        assert response.status_code == 503  # no accounts configured
        lines: list[str] = []
        for _ in range(50):
            lines = [line for line in bridge.output().splitlines() if "  nope  " in line]
            if lines:
                break
            subprocess.run(["sleep", "0.1"])
        assert len(lines) == 1, bridge.output()
        assert lines[0].count(":") >= 2 and lines[0].startswith("[")  # mitmproxy's single [HH:MM:SS.mmm]
        assert lines[0].split("] ", 1)[1].startswith("openai  nope  -  503")
        for chatter in ("client connect", "server connect", "Streaming response", "client disconnect"):
            assert chatter not in bridge.output()


def test_serve_script_is_the_launcher():
    text = (Path(__file__).resolve().parents[1] / "scripts" / "serve").read_text()
    assert 'llmbridge" serve "$@"' in text


def test_relative_paths_follow_the_config_file_not_the_working_directory(tmp_path):
    """Started from another directory, the bridge reads the config's `database` relative to the config
    and names the config in force in its banner."""
    conf, elsewhere = tmp_path / "conf", tmp_path / "elsewhere"
    conf.mkdir()
    elsewhere.mkdir()
    config = write_config(conf / "bridge.toml", [], database="rec/bridge.db")
    bridge = BridgeProcess(elsewhere, config)
    with bridge:
        assert f"Config:    {config}" in bridge.output()
        assert f"Recording: {conf / 'rec' / 'bridge.db'}" in bridge.output()
    assert (conf / "rec" / "bridge.db").is_file() and not (elsewhere / "rec").exists()


def test_banner_says_when_no_config_is_in_force(tmp_path):
    with BridgeProcess(tmp_path, None) as bridge:
        assert "Config:    none found" in bridge.output()
        assert f"Recording: {tmp_path / 'home' / 'recordings' / 'bridge.db'}" in bridge.output()
