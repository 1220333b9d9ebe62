"""End to end: the `x-llmbridge-overhead-ms` header measures the bridge's own time, not the upstream's.

A slow fake upstream (its head late, its chunks spaced) makes the exchange last well over half a
second; the header must leave that wait out. The bounds are generous (a loaded machine is slow): a
header that counted the upstream's time would be over 600 ms and fail them.
"""

from __future__ import annotations

import httpx
import pytest

from llmbridge.answer import OVERHEAD_HEADER
from tests.bridge_process import CLIENT_KEY, BridgeProcess, write_config
from tests.fakes.openai_upstream import FakeOpenAI, text_reply

UPSTREAM_HEAD_DELAY = 0.4
UPSTREAM_CHUNK_GAP = 0.1
# What the upstream alone takes: its head, then three chunks a gap apart (the first chunk follows at
# once for the peek, which the stream's header counts up to; the whole answer waits for all of them).
UPSTREAM_SECONDS = UPSTREAM_HEAD_DELAY + 2 * UPSTREAM_CHUNK_GAP
OWN_TIME_BOUND_MS = 300


@pytest.fixture
def upstream():
    with FakeOpenAI() as fake:
        yield fake


@pytest.fixture
def bridge(tmp_path, upstream):
    account = {
        "name": "up1",
        "provider": "openai",
        "api_key": upstream.api_key,
        "base_url": upstream.base_url,
        "models": ["gpt-test"],
    }
    config = write_config(tmp_path / "bridge.toml", [account], record=True, database=str(tmp_path / "rec.db"))
    with BridgeProcess(tmp_path, config) as process:
        yield process


def post(bridge: BridgeProcess, stream: bool) -> tuple[httpx.Response, float, bytes]:
    payload = {"model": "gpt-test", "messages": [{"role": "user", "content": "hi"}], "stream": stream}
    with httpx.Client(trust_env=False, timeout=20) as client:
        with client.stream(
            "POST",
            bridge.base_url + "/v1/chat/completions",
            json=payload,
            headers={"authorization": f"Bearer {CLIENT_KEY}"},
        ) as response:
            body = response.read()
            return response, response.elapsed.total_seconds(), body


def slow_reply():
    return text_reply("abcdefghi", pieces=3, header_delay=UPSTREAM_HEAD_DELAY, delay=UPSTREAM_CHUNK_GAP)


def test_a_whole_answer_reports_its_time_without_the_upstreams(bridge, upstream):
    upstream.enqueue(slow_reply())
    response, seconds, body = post(bridge, stream=False)
    assert response.status_code == 200 and b"abcdefghi" in body
    assert seconds >= UPSTREAM_SECONDS
    overhead = float(response.headers[OVERHEAD_HEADER])
    assert 0 < overhead < OWN_TIME_BOUND_MS, overhead


def test_a_stream_reports_its_time_to_the_first_content_without_the_upstreams(bridge, upstream):
    upstream.enqueue(slow_reply())
    response, seconds, body = post(bridge, stream=True)
    assert response.status_code == 200 and b"[DONE]" in body
    assert seconds >= UPSTREAM_HEAD_DELAY
    overhead = float(response.headers[OVERHEAD_HEADER])
    assert 0 < overhead < OWN_TIME_BOUND_MS, overhead


def test_the_header_is_on_every_answer_of_a_busy_bridge(bridge, upstream):
    for _ in range(5):
        upstream.enqueue(text_reply("quick"))
    overheads = []
    for _ in range(5):
        response, _, _ = post(bridge, stream=False)
        assert response.status_code == 200
        overheads.append(float(response.headers[OVERHEAD_HEADER]))
    assert all(0 < value < OWN_TIME_BOUND_MS for value in overheads), overheads
