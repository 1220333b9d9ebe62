"""End to end: hostile input against the real bridge process (issue 10).

Each attack is bounded in time, and while it runs a thread asks `/health` every 50 ms: the bridge's
event loop must keep answering (worst latency under a second). Figures (attack time, worst `/health`
latency, the bridge's RSS before and after) are printed; run with `-s` to see them.
"""

from __future__ import annotations

import json
import socket
import sqlite3
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.bridge_process import CLIENT_KEY, BridgeProcess, write_config
from tests.fakes.openai_upstream import FakeOpenAI, Reply

MAX_BODY = 1024 * 1024
# The worst /health answer time allowed during an attack. Generous on purpose: the faults these tests
# keep fixed stalled the bridge for 10 s to minutes, while a loaded CI machine (2 CPUs, other test
# processes) can add a second or two to a healthy run. The figures themselves are printed, and
# measured properly by scripts/bench.
STALL_BOUND = 5.0
UPSTREAM_KEY = "sk-upstream-echoed-SECRET-4242"


def rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


class HealthProbe:
    """Asks /health on a fresh connection every 50 ms from a thread; keeps the worst latency."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.worst = 0.0
        self.failures: list[str] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.stop.is_set():
            started = time.monotonic()
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=5) as conn:
                    conn.sendall(b"GET /health HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
                    head = conn.recv(4096)
                if not head.startswith(b"HTTP/1.1 200"):
                    self.failures.append(head[:40].decode("latin-1"))
            except OSError as e:
                self.failures.append(repr(e))
            self.worst = max(self.worst, time.monotonic() - started)
            time.sleep(0.05)

    def __enter__(self) -> HealthProbe:
        self.thread.start()
        time.sleep(0.1)
        return self

    def __exit__(self, *exc: object) -> None:
        time.sleep(0.1)
        self.stop.set()
        self.thread.join(10)


@pytest.fixture(scope="module")
def upstream():
    with FakeOpenAI(api_key=UPSTREAM_KEY) as fake:
        yield fake


@pytest.fixture(scope="module")
def bridge(tmp_path_factory, upstream):
    workdir = tmp_path_factory.mktemp("hostile")
    account = {
        "name": "echo",
        "provider": "openai",
        "api_key": UPSTREAM_KEY,
        "base_url": upstream.base_url,
        "models": ["gpt-test"],
        "requests_per_minute": 1000,
    }
    config = write_config(
        workdir / "bridge.toml", [account], database=str(workdir / "bridge.db"), max_body_bytes=MAX_BODY
    )
    with BridgeProcess(workdir, config) as process:
        yield process


def exchange(port: int, raw: bytes, timeout: float = 10) -> bytes:
    """Sends raw bytes, returns everything the bridge answers until it closes (or `timeout`)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as conn:
        conn.sendall(raw)
        received = b""
        try:
            while chunk := conn.recv(65536):
                received += chunk
                if b"\r\n\r\n" in received and _complete(received):
                    break
        except (TimeoutError, ConnectionResetError):
            pass
    return received


def _complete(received: bytes) -> bool:
    head, _, body = received.partition(b"\r\n\r\n")
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return len(body) >= int(line.split(b":")[1])
    return False


def body_of(received: bytes) -> dict:
    return json.loads(received.partition(b"\r\n\r\n")[2])


def many_headers(count: int) -> bytes:
    return b"".join(b"x-h%d: %d\r\n" % (i, i) for i in range(count))


def test_100000_headers_are_431_at_once_and_health_keeps_answering(bridge):
    before = rss_kb(bridge.proc.pid)
    raw = b"GET /v1/models HTTP/1.1\r\nhost: x\r\n" + many_headers(100_000) + b"connection: close\r\n\r\n"
    with HealthProbe(bridge.port) as probe:
        started = time.monotonic()
        answer = exchange(bridge.port, raw)
        took = time.monotonic() - started
    print(
        f"\n100,000 headers ({len(raw)} bytes): {took:.2f}s, /health worst {probe.worst * 1000:.0f}ms, "
        f"RSS {before} -> {rss_kb(bridge.proc.pid)} kB"
    )
    assert answer.startswith(b"HTTP/1.1 431"), answer[:200]
    assert "max_header_count" in body_of(answer)["error"]["message"]
    assert took < 10 and probe.worst < STALL_BOUND and not probe.failures


def test_headers_over_the_limits_are_431_in_the_doors_dialect(bridge):
    body = b'{"model":"gpt-test"}'
    raw = (
        b"POST /v1/messages HTTP/1.1\r\nhost: x\r\n"
        + many_headers(300)
        + b"content-length: %d\r\n\r\n" % len(body)
        + body
    )
    answer = exchange(bridge.port, raw)
    assert answer.startswith(b"HTTP/1.1 431")
    assert body_of(answer)["type"] == "error"  # Anthropic's error shape
    big = b"x-big: " + b"a" * 70_000 + b"\r\n"  # one header over max_header_bytes (64 KiB)
    answer = exchange(bridge.port, b"GET /v1beta/models HTTP/1.1\r\nhost: x\r\n" + big + b"\r\n")
    assert answer.startswith(b"HTTP/1.1 431") and body_of(answer)["error"]["code"] == 431  # Gemini's shape


def lazy_body(total: int, chunk: int = 1024 * 1024):
    piece = b"x" * chunk
    for _ in range(total // chunk):
        yield piece


def test_1gb_upload_without_key_is_401_at_once_and_never_buffered(bridge):
    before = rss_kb(bridge.proc.pid)
    total = 1024 * 1024 * 1024
    with HealthProbe(bridge.port) as probe:
        started = time.monotonic()
        response = httpx.post(
            bridge.base_url + "/v1/chat/completions",
            content=lazy_body(total),
            headers={"content-length": str(total), "content-type": "application/json"},
            timeout=20,
        )
        took = time.monotonic() - started
    after = rss_kb(bridge.proc.pid)
    print(
        f"\n1 GiB upload without key: {response.status_code} in {took:.2f}s, /health worst "
        f"{probe.worst * 1000:.0f}ms, RSS {before} -> {after} kB"
    )
    assert response.status_code == 401 and "no API key" in response.json()["error"]["message"]
    assert took < 10 and probe.worst < STALL_BOUND and not probe.failures
    assert after - before < 50_000  # kB: the body was not kept


def test_huge_declared_length_without_a_body_is_answered_at_once(bridge):
    for key, status in ((b"", b"401"), (b"authorization: Bearer " + CLIENT_KEY.encode() + b"\r\n", b"413")):
        started = time.monotonic()
        answer = exchange(
            bridge.port,
            b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\n" + key + b"content-length: 99999999999\r\n\r\n",
        )
        assert answer.startswith(b"HTTP/1.1 " + status), answer[:200]
        assert time.monotonic() - started < 5
    assert "max_body_bytes" in body_of(answer)["error"]["message"]


def test_chunked_body_past_the_limit_is_413_without_buffering_it(bridge):
    before = rss_kb(bridge.proc.pid)
    started = time.monotonic()
    response = httpx.post(
        bridge.base_url + "/v1/messages",
        content=lazy_body(256 * 1024 * 1024),  # no length: sent chunked
        headers={"x-api-key": CLIENT_KEY, "content-type": "application/json"},
        timeout=20,
    )
    took = time.monotonic() - started
    print(
        f"\nchunked 256 MiB with a key: {response.status_code} in {took:.2f}s, "
        f"RSS {before} -> {rss_kb(bridge.proc.pid)} kB"
    )
    assert response.status_code == 413 and response.json()["type"] == "error"
    assert "max_body_bytes" in response.json()["error"]["message"]
    assert took < 10 and rss_kb(bridge.proc.pid) - before < 50_000


@pytest.mark.parametrize(
    ("path", "headers"),
    [
        ("/v1/chat/completions", {"authorization": f"Bearer {CLIENT_KEY}"}),
        ("/v1/messages", {"x-api-key": CLIENT_KEY}),
        ("/v1beta/models/gpt-test:generateContent", {"x-goog-api-key": CLIENT_KEY}),
    ],
)
def test_deep_nesting_is_400_naming_the_limit_on_every_door(bridge, path, headers):
    for depth in (1_000, 100_000):
        body = b'{"model":"gpt-test","messages":' + b"[" * depth + b"]" * depth + b"}"
        started = time.monotonic()
        response = httpx.post(bridge.base_url + path, content=body, headers=headers, timeout=10)
        assert response.status_code == 400, response.text[:300]
        assert "max_json_depth" in response.text and "200" in response.text
        assert time.monotonic() - started < 5


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/messages", "/v1beta/models/gpt-test:generateContent"])
@pytest.mark.parametrize("header", [b"authorization: Bearer ", b"x-api-key: ", b"x-goog-api-key: "])
def test_a_key_that_is_not_utf8_is_401_on_every_door(bridge, path, header):
    body = b'{"model":"gpt-test","messages":[{"role":"user","content":"hi"}]}'
    raw = (
        f"POST {path} HTTP/1.1\r\nhost: x\r\n".encode()
        + header
        + b"sk-\xff\xfe\x80bad\r\n"
        + b"content-length: %d\r\n\r\n" % len(body)
        + body
    )
    answer = exchange(bridge.port, raw)
    assert answer.startswith(b"HTTP/1.1 401"), answer[:300]


def all_cells(path: Path):
    conn = sqlite3.connect(path)
    tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
    for table in tables:
        for row in conn.execute(f"SELECT * FROM [{table}]"):
            for value in row:
                if isinstance(value, bytes):
                    yield table, value.decode("latin-1")
                elif isinstance(value, str):
                    yield table, value


def test_an_upstream_echoing_its_key_leaks_it_nowhere(bridge, upstream):
    echo = f"Incorrect API key provided: {UPSTREAM_KEY}. You sent Authorization: {UPSTREAM_KEY}"
    upstream.enqueue(Reply(status=400, error_body={"error": {"message": echo, "code": "invalid_api_key"}}))
    upstream.enqueue(Reply(status=500, error_body={"error": {"message": echo}}))
    chat = {"model": "gpt-test", "messages": [{"role": "user", "content": "hi"}]}
    response = httpx.post(
        bridge.base_url + "/v1/chat/completions",
        json=chat,
        headers={"authorization": f"Bearer {CLIENT_KEY}"},
        timeout=20,
    )
    assert response.status_code >= 400
    assert "Incorrect API key provided" in response.text  # the upstream's words do arrive...
    assert UPSTREAM_KEY not in response.text  # ...without the key
    db = Path(bridge.workdir) / "bridge.db"
    deadline = time.time() + 10
    while time.time() < deadline:
        cells = list(all_cells(db)) if db.exists() else []
        if any("Incorrect API key" in text for _, text in cells):
            break
        time.sleep(0.2)
    assert any("Incorrect API key" in text for _, text in cells)  # the scan sees the recorded error
    leaks = [table for table, text in cells if UPSTREAM_KEY in text or CLIENT_KEY in text]
    assert leaks == []
    assert UPSTREAM_KEY not in bridge.output() and CLIENT_KEY not in bridge.output()
