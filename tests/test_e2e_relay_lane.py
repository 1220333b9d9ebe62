"""End to end: a stream's body written straight to the client's connection (`llmbridge.relay.ClientLane`).

The real bridge (mitmdump, debug console so the lane can be seen in use) against the strict OpenAI
fake, which sends its chunks apart so that most of them take the lane. What the client receives is
parsed with h11, strictly as an HTTP/1.1 client would: the framing from the two writers (mitmproxy's
head and end, the relay's chunks between) must make one valid response, and the connection must stay
usable for the next request.
"""

from __future__ import annotations

import json
import socket
import time

import h11
import pytest

from tests.bridge_process import CLIENT_KEY, BridgeProcess, write_config
from tests.fakes.openai_upstream import FakeOpenAI, text_reply
from tests.test_e2e_edges import rows

LANE_LINE = "goes straight to the client"
TEXT = "one two three four five six seven eight nine ten eleven twelve"


@pytest.fixture(scope="module")
def upstream():
    with FakeOpenAI() as fake:
        fake.default = text_reply(TEXT, pieces=12, delay=0.03)
        yield fake


@pytest.fixture(scope="module")
def bridge(tmp_path_factory, upstream):
    workdir = tmp_path_factory.mktemp("lane")
    account = {
        "name": "oa",
        "provider": "openai",
        "api_key": upstream.api_key,
        "base_url": upstream.base_url,
        "models": ["gpt-test"],
        "requests_per_minute": 10_000,
        "max_concurrent": 50,
    }
    config = write_config(workdir / "bridge.toml", [account], database=str(workdir / "bridge.db"))
    with BridgeProcess(workdir, config, extra_args=["--set", "termlog_verbosity=debug"]) as process:
        yield process


def request(tag: str) -> h11.Request:
    body = json.dumps({"model": "gpt-test", "stream": True, "messages": [{"role": "user", "content": tag}]})
    headers = [
        ("host", "x"),
        ("authorization", f"Bearer {CLIENT_KEY}"),
        ("content-type", "application/json"),
        ("content-length", str(len(body))),
    ]
    return h11.Request(method="POST", target="/v1/chat/completions", headers=headers), body.encode()


def exchange(conn: socket.socket, client: h11.Connection, tag: str) -> tuple[h11.Response, bytes]:
    """One request on the connection, and its response read to the end by h11 (which raises on any
    framing error)."""
    head, body = request(tag)
    conn.sendall(client.send(head) + client.send(h11.Data(data=body)) + client.send(h11.EndOfMessage()))
    response, data = None, b""
    while True:
        event = client.next_event()
        if event is h11.NEED_DATA:
            client.receive_data(conn.recv(65536))
        elif isinstance(event, h11.Response):
            response = event
        elif isinstance(event, h11.Data):
            data += event.data
        elif isinstance(event, h11.EndOfMessage):
            assert response is not None
            return response, data


def streamed_text(body: bytes) -> str:
    parts = []
    for line in body.decode().splitlines():
        if line.startswith("data: {"):
            for choice in json.loads(line[6:])["choices"]:
                parts.append(choice.get("delta", {}).get("content") or "")
    return "".join(parts)


def test_two_streams_on_one_connection_each_arrive_whole_through_the_lane(bridge):
    before = bridge.output().count(LANE_LINE)
    with socket.create_connection(("127.0.0.1", bridge.port), timeout=10) as conn:
        client = h11.Connection(h11.CLIENT)
        for tag in ("lane-first", "lane-second"):
            response, body = exchange(conn, client, tag)
            assert response.status_code == 200
            assert (b"transfer-encoding", b"chunked") in [(k.lower(), v) for k, v in response.headers]
            assert streamed_text(body) == TEXT and body.rstrip().endswith(b"data: [DONE]")
            client.start_next_cycle()  # h11 refuses this unless both sides kept the connection open
    deadline = time.monotonic() + 5
    while bridge.output().count(LANE_LINE) < before + 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert bridge.output().count(LANE_LINE) == before + 2, "the lane was not used"
    for tag in ("lane-first", "lane-second"):
        assert rows(bridge, tag) == [
            {"status": 200, "client_disconnected": 0, "finish_reason": "stop", "error_kind": None}
        ]


def test_a_client_that_leaves_during_a_stream_on_the_lane_stops_the_upstream(bridge, upstream):
    upstream.enqueue(text_reply(TEXT, pieces=12, delay=0.4))
    disconnects = upstream.disconnects
    head, body = request("lane-leaves")
    with socket.create_connection(("127.0.0.1", bridge.port), timeout=10) as conn:
        client = h11.Connection(h11.CLIENT)
        conn.sendall(client.send(head) + client.send(h11.Data(data=body)) + client.send(h11.EndOfMessage()))
        received = b""
        while received.count(b"data: {") < 3:  # the head and a few chunks, some through the lane
            received += conn.recv(65536)
    started = time.monotonic()
    [row] = rows(bridge, "lane-leaves")
    assert row["client_disconnected"] == 1 and row["finish_reason"] is None, row
    while upstream.disconnects == disconnects and time.monotonic() - started < 10:
        time.sleep(0.05)
    assert upstream.disconnects > disconnects, "the upstream request was not closed"
    assert time.monotonic() - started < 10


def test_an_http10_client_takes_no_lane_and_still_gets_its_stream(bridge):
    before = bridge.output().count(LANE_LINE)
    head, body = request("lane-http10")
    raw = b"POST /v1/chat/completions HTTP/1.0\r\n" + b"".join(k + b": " + v + b"\r\n" for k, v in head.headers)
    with socket.create_connection(("127.0.0.1", bridge.port), timeout=10) as conn:
        conn.sendall(raw + b"\r\n" + body)
        received = b""
        while chunk := conn.recv(65536):
            received += chunk
    answer_head, _, answer_body = received.partition(b"\r\n\r\n")
    assert answer_head.startswith(b"HTTP/1.1 200") and b"transfer-encoding" not in answer_head.lower()
    assert streamed_text(answer_body) == TEXT
    assert bridge.output().count(LANE_LINE) == before
