"""End to end: the HTTP edges of the real bridge (issue 10, point 10).

`Connection: close` and HTTP/1.0 on streams, read deadlines for slow clients (slowloris), a client
that half-closes after sending, mitmproxy's own error pages, CONNECT. Every test speaks raw bytes on a
socket, so what is checked is exactly what a client receives.
"""

from __future__ import annotations

import json
import shutil
import socket
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest

from tests.bridge_process import CLIENT_KEY, BridgeProcess, write_config
from tests.fakes.openai_upstream import FakeOpenAI, text_reply

HEADER_TIMEOUT = 1.0
BODY_TIMEOUT = 1.5


@pytest.fixture(scope="module")
def upstream():
    with FakeOpenAI() as fake:
        fake.default = text_reply("hello there, client", pieces=4)
        yield fake


@pytest.fixture(scope="module")
def bridge(tmp_path_factory, upstream):
    workdir = tmp_path_factory.mktemp("edges")
    account = {
        "name": "oa",
        "provider": "openai",
        "api_key": upstream.api_key,
        "base_url": upstream.base_url,
        "models": ["gpt-test"],
        "requests_per_minute": 10_000,
        "max_concurrent": 50,
    }
    config = write_config(
        workdir / "bridge.toml",
        [account],
        database=str(workdir / "bridge.db"),
        client_header_timeout=HEADER_TIMEOUT,
        client_body_timeout=BODY_TIMEOUT,
    )
    with BridgeProcess(workdir, config) as process:
        yield process


def chat(stream: bool, tag: str = "hi") -> bytes:
    return json.dumps({"model": "gpt-test", "stream": stream, "messages": [{"role": "user", "content": tag}]}).encode()


def post(body: bytes, version: str = "HTTP/1.1", extra: str = "", path: str = "/v1/chat/completions") -> bytes:
    head = (
        f"POST {path} {version}\r\nhost: x\r\nauthorization: Bearer {CLIENT_KEY}\r\n"
        f"content-type: application/json\r\ncontent-length: {len(body)}\r\n{extra}\r\n"
    )
    return head.encode() + body


def read_until_closed(conn: socket.socket, limit: float) -> tuple[bytes, bool, float]:
    """Everything received until the bridge closes (True) or `limit` seconds pass (False)."""
    started = time.monotonic()
    received = b""
    conn.settimeout(0.2)
    while time.monotonic() - started < limit:
        try:
            chunk = conn.recv(65536)
        except TimeoutError:
            continue
        except ConnectionResetError:
            return received, True, time.monotonic() - started
        if not chunk:
            return received, True, time.monotonic() - started
        received += chunk
    return received, False, time.monotonic() - started


def connect(bridge: BridgeProcess) -> socket.socket:
    return socket.create_connection(("127.0.0.1", bridge.port), timeout=5)


def head_and_body(received: bytes) -> tuple[str, bytes]:
    head, _, body = received.partition(b"\r\n\r\n")
    return head.decode("latin-1").lower(), body


def rows(bridge: BridgeProcess, tag: str, timeout: float = 10) -> list[dict]:
    db = Path(bridge.workdir) / "bridge.db"
    deadline = time.time() + timeout
    while True:
        conn = sqlite3.connect(db)
        conn.row_factory = sqlite3.Row
        try:
            found = [
                dict(r)
                for r in conn.execute(
                    "SELECT status, client_disconnected, finish_reason, error_kind FROM exchanges "
                    "WHERE request_raw LIKE ?",
                    (f"%{tag}%",),
                )
            ]
        finally:
            conn.close()
        if found or time.time() > deadline:
            return found
        time.sleep(0.1)


def test_connection_close_on_a_stream_closes_once_the_stream_has_ended(bridge):
    with connect(bridge) as conn:
        conn.sendall(post(chat(True), extra="connection: close\r\n"))
        received, closed, took = read_until_closed(conn, 5)
    head, body = head_and_body(received)
    assert head.startswith("http/1.1 200") and "transfer-encoding: chunked" in head
    assert body.endswith(b"0\r\n\r\n") and b"data: [DONE]" in body
    assert closed and took < 5, (closed, took)


def test_an_http10_client_gets_no_chunked_encoding_the_body_ends_with_the_connection(bridge):
    with connect(bridge) as conn:
        conn.sendall(post(chat(True), version="HTTP/1.0"))
        received, closed, took = read_until_closed(conn, 5)
    head, body = head_and_body(received)
    assert head.startswith("http/1.1 200") and "transfer-encoding" not in head and "content-length" not in head
    assert body.startswith(b"data: ") and body.rstrip().endswith(b"data: [DONE]"), body[-200:]
    assert closed and took < 5
    with connect(bridge) as conn:  # a whole answer: delimited by its length
        conn.sendall(post(chat(False), version="HTTP/1.0"))
        received, closed, _ = read_until_closed(conn, 5)
    head, body = head_and_body(received)
    assert head.startswith("http/1.1 200") and "transfer-encoding" not in head and "content-length" in head
    assert json.loads(body)["choices"][0]["message"]["content"] == "hello there, client" and closed


def test_headers_trickled_byte_by_byte_are_408_within_the_header_timeout(bridge):
    request = post(chat(False), extra="x-slow: " + "a" * 200 + "\r\n")
    with connect(bridge) as conn:
        started = time.monotonic()
        answer = b""
        for i in range(60):  # one byte every 0.1 s: never silent, never finished (a slowloris)
            try:
                conn.sendall(request[i : i + 1])
            except (BrokenPipeError, ConnectionResetError):
                break
            time.sleep(0.1)
            conn.settimeout(0.001)
            try:
                answer += conn.recv(65536)
            except (TimeoutError, BlockingIOError):
                pass
            if answer:
                break
        more, closed, _ = read_until_closed(conn, 3)
        took = time.monotonic() - started
    head, body = head_and_body(answer + more)
    assert head.startswith("http/1.1 408"), answer[:200]
    assert "client_header_timeout" in json.loads(body)["error"]["message"]
    assert closed and took < HEADER_TIMEOUT + 4, took


def test_an_idle_connection_is_closed_with_408_after_the_header_timeout(bridge):
    with connect(bridge) as conn:
        conn.sendall(post(chat(False), extra=""))  # one whole exchange, then silence (kept alive)
        time.sleep(0.5)
        received, closed, took = read_until_closed(conn, 5)
    assert received.startswith(b"HTTP/1.1 200") and b"HTTP/1.1 408" in received
    assert closed and took < HEADER_TIMEOUT + 4


def test_a_body_trickled_slowly_is_408_in_the_doors_dialect(bridge):
    body = json.dumps({"model": "gpt-test", "max_tokens": 10, "messages": [{"role": "user", "content": "x" * 400}]})
    request = post(body.encode(), path="/v1/messages", extra=f"x-api-key: {CLIENT_KEY}\r\n")
    head_end = request.index(b"\r\n\r\n") + 4
    with connect(bridge) as conn:
        started = time.monotonic()
        conn.sendall(request[:head_end])
        answer = b""
        for i in range(head_end, len(request)):
            try:
                conn.sendall(request[i : i + 1])
            except (BrokenPipeError, ConnectionResetError):
                break
            conn.settimeout(0.1)
            try:
                answer += conn.recv(65536)
            except TimeoutError:
                pass
            if answer:
                break
        more, closed, _ = read_until_closed(conn, 3)
        took = time.monotonic() - started
    head, payload = head_and_body(answer + more)
    assert head.startswith("http/1.1 408"), (answer + more)[:300]
    error = json.loads(payload)
    assert error["type"] == "error" and "client_body_timeout" in error["error"]["message"]  # Anthropic's shape
    assert closed and took < BODY_TIMEOUT + 4, took


@pytest.mark.parametrize("stream", [True, False])
def test_a_client_that_half_closes_after_sending_gets_its_answer_and_the_row_says_so(bridge, stream):
    tag = f"half-closed-{stream}"
    with connect(bridge) as conn:
        conn.sendall(post(chat(stream, tag)))
        conn.shutdown(socket.SHUT_WR)  # "I have sent everything"; still reading
        received, closed, took = read_until_closed(conn, 5)
    head, body = head_and_body(received)
    assert head.startswith("http/1.1 200") and closed and took < 5
    assert (b"data: [DONE]" in body) if stream else (b"hello there, client" in body)
    assert rows(bridge, tag) == [{"status": 200, "client_disconnected": 0, "finish_reason": "stop", "error_kind": None}]


def test_a_client_that_closes_during_a_stream_is_recorded_as_gone(bridge, upstream):
    """A FIN alone cannot tell "done sending" from "gone" (see the half-close test): a client that
    really left is found out by the next write, which its TCP stack refuses."""
    tag = "leaves-mid-stream"
    upstream.enqueue(text_reply("a slow answer in many pieces", pieces=12, delay=0.2))
    with connect(bridge) as conn:
        conn.sendall(post(chat(True, tag)))
        assert conn.recv(65536).startswith(b"HTTP/1.1 200")
    [row] = rows(bridge, tag)
    assert row["client_disconnected"] == 1 and row["finish_reason"] is None, row


@pytest.mark.parametrize(
    "raw",
    [b"GARBAGE\r\n\r\n", b"GET /health HTTP/1.1\r\nhost: x\r\nbad header\r\n\r\n"],
)
def test_requests_mitmproxy_cannot_parse_get_json_not_its_html_page(bridge, raw):
    with connect(bridge) as conn:
        conn.sendall(raw)
        received, closed, _ = read_until_closed(conn, 3)
    head, body = head_and_body(received)
    assert head.startswith("http/1.1 400") and "application/json" in head and closed
    assert b"mitmproxy" not in received.lower() and b"<html" not in received.lower()
    assert json.loads(body)["error"]["message"]


def test_a_malformed_chunked_body_is_400_in_the_doors_dialect(bridge):
    raw = (
        b"POST /v1beta/models/gpt-test:generateContent HTTP/1.1\r\nhost: x\r\nx-goog-api-key: "
        + CLIENT_KEY.encode()
        + b"\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n"
    )
    with connect(bridge) as conn:
        conn.sendall(raw)
        received, closed, _ = read_until_closed(conn, 3)
    head, body = head_and_body(received)
    assert head.startswith("http/1.1 400") and b"mitmproxy 1" not in received
    assert json.loads(body)["error"]["status"] == "INVALID_ARGUMENT"  # Gemini's shape


def test_connect_is_405_as_documented(bridge):
    with connect(bridge) as conn:
        conn.sendall(b"CONNECT example.com:443 HTTP/1.1\r\nhost: example.com:443\r\n\r\n")
        received, closed, _ = read_until_closed(conn, 3)
    head, body = head_and_body(received)
    assert head.startswith("http/1.1 405") and "allow: get, post" in head and closed
    assert b"mitmproxy" not in received.lower()
    assert "CONNECT is refused" in json.loads(body)["error"]["message"]


def test_the_listening_socket_queues_a_burst_of_connections(bridge) -> None:
    """mitmproxy listens with asyncio's backlog of 100; the bridge widens it (LISTEN_BACKLOG), so 500
    clients connecting at once are queued, not dropped and retried a second later."""
    if shutil.which("ss") is None:
        pytest.skip("ss (iproute2) is not installed: cannot read the listening socket's backlog")
    shown = subprocess.run(
        ["ss", "-ltnH", f"sport = :{bridge.port}"], capture_output=True, text=True, check=True
    ).stdout.split()
    somaxconn = int(Path("/proc/sys/net/core/somaxconn").read_text())
    assert shown[0] == "LISTEN" and int(shown[2]) == min(1024, somaxconn), shown
