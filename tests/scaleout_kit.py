"""Real processes for the scale-out tests: a redis-server and `scripts/serve-many` (N bridges behind
HAProxy), each on free 127.0.0.1 ports in a temp dir, stopped by their `with` block.

Tests never install anything: without the binaries they skip, naming the binary and the Debian
package (`.ci/run` installs both)."""

from __future__ import annotations

import os
import random
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from tests.bridge_process import ROOT, free_port


def require(binary: str, package: str) -> str:
    """The binary's path; else the test skips, loudly."""
    found = shutil.which(binary) or next(
        (p for p in (f"/usr/bin/{binary}", f"/usr/sbin/{binary}") if os.access(p, os.X_OK)), None
    )
    if found is None:
        pytest.skip(f"{binary} not found: install the Debian package {package} (apt-get install {package})")
    return found


class RedisServer:
    """A throwaway redis-server: no persistence, 127.0.0.1 only."""

    def __init__(self, workdir: Path) -> None:
        self.binary = require("redis-server", "redis-server")
        self.workdir = workdir
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        self.workdir.mkdir(parents=True, exist_ok=True)
        args = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        args += ["--dir", str(self.workdir)]
        self.log = open(self.workdir / "redis.log", "wb")
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT)
        wait_for_port(self.port, self.proc, self.workdir / "redis.log")
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        self.log.close()

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def free_port_block(count: int) -> int:
    """The first of `count` consecutive free ports, below Linux's ephemeral range (32768 and up), where
    the outgoing connections of other tests cannot take one between this check and the bind."""
    rng = random.Random()
    for _ in range(200):
        first = rng.randrange(20000, 32000 - count)
        if all(_bindable(first + i) for i in range(count)):
            return first
    raise RuntimeError(f"no {count} consecutive free ports between 20000 and 32000")


def _bindable(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


class ServeMany:
    """`scripts/serve-many N` as a user runs it: N bridges, one config, one data dir, HAProxy in front."""

    def __init__(self, workdir: Path, count: int, config: Path) -> None:
        require("haproxy", "haproxy")
        self.workdir = workdir
        self.count = count
        self.port = free_port()
        self.first_port = free_port_block(count)
        self.ports = [self.first_port + i for i in range(count)]
        self.run_dir = workdir / "run"
        self.args = [str(ROOT / "scripts" / "serve-many"), str(count), "--port", str(self.port)]
        self.args += ["--first-port", str(self.first_port), "--", "--set", f"bridge_config={config}"]
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def bridge_url(self, index: int) -> str:
        return f"http://127.0.0.1:{self.ports[index]}"

    def start(self, timeout: float = 60) -> ServeMany:
        env = dict(
            os.environ,
            LLMBRIDGE_HOME=str(self.workdir / "home"),
            HOME=str(self.workdir / "userhome"),
            LLMBRIDGE_RUN_DIR=str(self.run_dir),
            NO_PROXY="127.0.0.1,localhost",
        )
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.log = open(self.workdir / "serve-many.log", "wb")
        self.proc = subprocess.Popen(
            self.args, cwd=self.workdir, env=env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True
        )
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"serve-many exited with {self.proc.returncode}:\n{self.output()}")
            if "behind HAProxy" in self.output() and self._healthy():
                return self
            time.sleep(0.2)
        raise RuntimeError(f"serve-many did not start in {timeout}s:\n{self.output()}")

    def _healthy(self) -> bool:
        try:
            return httpx.get(self.base_url + "/health", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def output(self) -> str:
        texts = [(self.workdir / "serve-many.log").read_text(errors="replace")]
        for log in sorted(self.run_dir.glob("*.log")) if self.run_dir.exists() else []:
            texts.append(f"--- {log.name}\n{log.read_text(errors='replace')}")
        return "\n".join(texts)

    def bridge_log(self, index: int) -> str:
        return (self.run_dir / f"bridge-{index + 1}.log").read_text(errors="replace")

    def stop(self) -> None:
        """SIGTERM to the script, which stops its bridges (each flushes its recorder) and HAProxy."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.log.close()

    def __enter__(self) -> ServeMany:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def wait_for_port(port: int, proc: subprocess.Popen[bytes], log: Path, timeout: float = 10) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"exited with {proc.returncode}:\n{log.read_text(errors='replace')}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port} after {timeout}s:\n{log.read_text(errors='replace')}")
