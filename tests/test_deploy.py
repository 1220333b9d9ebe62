"""The deployment files agree with each other and with the process topology the e2e tests run
(`scripts/serve-many`): HAProxy accepts its config with either list of bridges, every bridge of the
compose file is in HAProxy's list (on the port the image listens on), and the shared pieces (Redis,
one data volume) are there. No container engine runs here: hadolint and dclint check the files'
form (README "Scale-out")."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import yaml

from tests.bridge_process import ROOT
from tests.scaleout_kit import require

DEPLOY = ROOT / "deploy"


def compose() -> dict:
    return yaml.safe_load((DEPLOY / "compose.yaml").read_text())


def haproxy_check(backends: Path) -> subprocess.CompletedProcess[str]:
    binary = require("haproxy", "haproxy")
    env = dict(os.environ, LLMBRIDGE_BIND="127.0.0.1:18418")
    args = [binary, "-c", "-f", str(DEPLOY / "haproxy.cfg"), "-f", str(backends)]
    return subprocess.run(args, env=env, capture_output=True, text=True, timeout=30)


def test_haproxy_accepts_the_compose_bridges() -> None:
    checked = haproxy_check(DEPLOY / "haproxy-bridges.compose.cfg")
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_haproxy_accepts_the_bridges_serve_many_writes(tmp_path: Path) -> None:
    script = (ROOT / "scripts" / "serve-many").read_text()
    lines = re.findall(r'echo "(    [^"$]*|backend bridges)"', script)
    server = re.search(r'echo "(    server [^"]*)"', script)
    assert lines and server, "scripts/serve-many no longer writes the backend the way this test reads it"
    backend = "\n".join(lines) + "\n" + server.group(1).replace("$i", "1").replace("$bridge_port", "18419") + "\n"
    (tmp_path / "bridges.cfg").write_text(backend)
    checked = haproxy_check(tmp_path / "bridges.cfg")
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_every_compose_bridge_is_behind_haproxy_on_the_image_port() -> None:
    services = compose()["services"]
    bridges = sorted(name for name in services if name.startswith("bridge"))
    servers = re.findall(r"server (\S+) (\S+):(\d+)", (DEPLOY / "haproxy-bridges.compose.cfg").read_text())
    assert len(bridges) >= 2
    assert sorted(host for _, host, _ in servers) == bridges
    image_port = re.search(r"listen_port=(\d+)", (DEPLOY / "Dockerfile").read_text())
    assert image_port and {port for _, _, port in servers} == {image_port.group(1)}


def test_bridges_share_redis_the_data_volume_and_datasette_reads_it() -> None:
    services = compose()["services"]
    example = (DEPLOY / "bridge.example.toml").read_text()
    assert 'state_url = "redis://redis:6379/0"' in example and "redis" in services
    database = re.search(r'database = "([^"]+)"', example)
    assert database and database.group(1).startswith("/data/")
    for name in ("bridge1", "bridge2", "datasette"):
        assert "data:/data" in services[name]["volumes"]
    assert database.group(1) in services["datasette"]["command"]
