"""End to end: one huge conversation must not stall every other client (issue 10, point 6).

300,000 messages used to hold the event loop for 11-17 s and leave 0.8-1.4 GB resident. Now the
message and part counts are checked right after the JSON is parsed (413 naming the setting), and a
large body is parsed on a worker thread. While each request runs, a thread asks `/health` every
50 ms; the worst latency and the bridge's RSS are printed (run with `-s` to see them).
"""

from __future__ import annotations

import json
import time

import httpx
import pytest

from tests.bridge_process import CLIENT_KEY, BridgeProcess, write_config
from tests.fakes.openai_upstream import FakeOpenAI, text_reply
from tests.test_e2e_hostile import STALL_BOUND, HealthProbe, rss_kb

LIMIT = 10_000  # the default max_messages


@pytest.fixture(scope="module")
def upstream():
    with FakeOpenAI() as fake:
        fake.default = text_reply("ok", pieces=1)
        yield fake


@pytest.fixture(scope="module")
def bridge(tmp_path_factory, upstream):
    workdir = tmp_path_factory.mktemp("limits")
    account = {
        "name": "oa",
        "provider": "openai",
        "api_key": upstream.api_key,
        "base_url": upstream.base_url,
        "models": ["gpt-test"],
        "requests_per_minute": 1000,
    }
    config = write_config(workdir / "bridge.toml", [account], database=str(workdir / "bridge.db"))
    with BridgeProcess(workdir, config) as process:
        yield process


def anthropic(count: int) -> tuple[str, dict[str, str], bytes]:
    messages = [{"role": "user" if i % 2 == 0 else "assistant", "content": f"message {i}"} for i in range(count)]
    if count % 2 == 0:
        messages.append({"role": "user", "content": "last"})
    body = {"model": "gpt-test", "max_tokens": 5, "messages": messages}
    return "/v1/messages", {"x-api-key": CLIENT_KEY}, json.dumps(body).encode()


def gemini(count: int) -> tuple[str, dict[str, str], bytes]:
    contents = [{"role": "user" if i % 2 == 0 else "model", "parts": [{"text": f"message {i}"}]} for i in range(count)]
    if count % 2 == 0:
        contents.append({"role": "user", "parts": [{"text": "last"}]})
    path = "/v1beta/models/gpt-test:generateContent"
    return path, {"x-goog-api-key": CLIENT_KEY}, json.dumps({"contents": contents}).encode()


def timed(bridge: BridgeProcess, door, count: int) -> tuple[httpx.Response, float, float, int, int]:
    path, headers, body = door(count)
    before = rss_kb(bridge.proc.pid)
    with HealthProbe(bridge.port) as probe:
        started = time.monotonic()
        response = httpx.post(bridge.base_url + path, content=body, headers=headers, timeout=120)
        took = time.monotonic() - started
    after = rss_kb(bridge.proc.pid)
    print(
        f"\n{door.__name__} {count:,} messages ({len(body):,} bytes): {response.status_code} in {took:.2f}s, "
        f"/health worst {probe.worst * 1000:.0f}ms, RSS {before} -> {after} kB"
    )
    assert not probe.failures, probe.failures
    return response, took, probe.worst, before, after


@pytest.mark.parametrize("door", [anthropic, gemini])
def test_300000_messages_are_413_at_once_naming_the_limit(bridge, door):
    response, took, worst, before, after = timed(bridge, door, 300_000)
    assert response.status_code == 413, response.text[:300]
    assert "max_messages" in response.text and str(LIMIT) in response.text
    assert took < 10 and worst < STALL_BOUND
    assert after - before < 300_000  # kB


@pytest.mark.parametrize("door", [anthropic, gemini])
def test_a_conversation_at_the_limit_is_answered_and_health_keeps_answering(bridge, door):
    response, took, worst, _, _ = timed(bridge, door, LIMIT - 1)
    assert response.status_code == 200, response.text[:300]
    assert worst < STALL_BOUND


def test_too_many_parts_is_413_naming_max_parts(bridge):
    contents = [{"role": "user", "parts": [{"text": "p"}] * 20_000}] * 6
    body = json.dumps({"contents": contents}).encode()
    response = httpx.post(
        bridge.base_url + "/v1beta/models/gpt-test:generateContent",
        content=body,
        headers={"x-goog-api-key": CLIENT_KEY},
        timeout=60,
    )
    assert response.status_code == 413 and response.json()["error"]["status"]
    assert "max_parts" in response.json()["error"]["message"]
