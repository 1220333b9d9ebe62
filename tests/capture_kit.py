"""`mitmdump -s addons/capture.py` as a test runs it: capture mode in reverse mode in front of a strict
fake, recording one side of a drift comparison (the official client's traffic, or the bridge's)."""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path

from tests.bridge_process import MITMDUMP, ROOT, free_port


class CaptureProcess:
    """`mitmdump -s addons/capture.py` in reverse mode in front of `target`."""

    def __init__(self, workdir: Path, target: str, db: Path, source: str) -> None:
        self.port = free_port()
        self.log_path = workdir / f"capture-{source}.log"
        self.args = [
            str(MITMDUMP),
            "-s",
            str(ROOT / "addons" / "capture.py"),
            "--mode",
            f"reverse:{target}",
            "--listen-host",
            "127.0.0.1",
            "--listen-port",
            str(self.port),
            "--set",
            f"confdir={workdir / 'mitmproxy'}",
            "--set",
            "keep_host_header=true",
            "--set",
            f"capture_db={db}",
            "--set",
            f"capture_source={source}",
        ]
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> CaptureProcess:
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(self.args, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.time() + 20
        while time.time() < deadline:
            assert self.proc.poll() is None, self.log_path.read_text()
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return self
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"capture did not start:\n{self.log_path.read_text()}")

    def __exit__(self, *exc: object) -> None:
        assert self.proc is not None
        self.proc.terminate()
        self.proc.wait(10)
        self.log.close()
