"""Runs the real bridge as a subprocess for end-to-end tests: `llmbridge serve` (which execs mitmdump
with the addon and the safe defaults on its command line), or with `bare=True` the plain
`mitmdump -s addons/openai_bridge.py` whose defaults arrive only once the script is loaded."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MITMDUMP = Path(sys.executable).parent / "mitmdump"
LLMBRIDGE = Path(sys.executable).parent / "llmbridge"
CLIENT_KEY = "sk-test-client-key-0123456789"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {toml_value(v)}" for k, v in value.items()) + " }"
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def write_config(path: Path, accounts: list[dict], extra_toml: str = "", **settings: object) -> Path:
    """`settings`: top-level keys with plain values; `extra_toml`: more TOML after the accounts (tables)."""
    settings.setdefault("api_keys", [CLIENT_KEY])
    lines = [f"{k} = {toml_value(v)}" for k, v in settings.items()]
    for account in accounts:
        lines.append("\n[[accounts]]")
        lines += [f"{k} = {toml_value(v)}" for k, v in account.items()]
    if extra_toml:
        lines.append("\n" + extra_toml)
    path.write_text("\n".join(lines) + "\n")
    return path


class BridgeProcess:
    def __init__(
        self, workdir: Path, config: Path | None, extra_args: list[str] | None = None, bare: bool = False
    ) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.home = workdir / "home"
        if bare:
            args = [str(MITMDUMP), "-s", str(ROOT / "addons" / "openai_bridge.py")]
        else:
            args = [str(LLMBRIDGE), "serve"]
        args += ["--set", f"listen_port={self.port}"]
        if config is not None:
            args += ["--set", f"bridge_config={config}"]
        self.args = args + (extra_args or [])
        self.log_path = workdir / "bridge.log"
        self.proc: subprocess.Popen | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 20) -> BridgeProcess:
        env = dict(
            os.environ,
            LLMBRIDGE_HOME=str(self.home),
            HOME=str(self.workdir / "userhome"),
            NO_PROXY="127.0.0.1,localhost",
        )
        env.pop("PYTHONUNBUFFERED", None)  # the bridge must flush its console lines by itself
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(self.args, cwd=self.workdir, env=env, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"bridge exited with {self.proc.returncode}:\n{self.output()}")
            if "is listening" in self.output():
                try:
                    socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                    return self
                except OSError:
                    pass
            time.sleep(0.1)
        raise RuntimeError(f"bridge did not start in {timeout}s:\n{self.output()}")

    def output(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if hasattr(self, "log"):
            self.log.close()

    def __enter__(self) -> BridgeProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def run_bridge_expecting_failure(workdir: Path, config: Path | None, timeout: float = 20) -> tuple[int, str]:
    bridge = BridgeProcess(workdir, config)
    env = dict(os.environ, LLMBRIDGE_HOME=str(bridge.home), HOME=str(workdir / "userhome"))
    done = subprocess.run(bridge.args, cwd=workdir, env=env, capture_output=True, text=True, timeout=timeout)
    return done.returncode, done.stdout + done.stderr
