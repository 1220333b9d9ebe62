"""End to end: the OpenAI and Anthropic SDKs -> real mitmdump bridge -> strict fake Qwen (chat
completions + OAuth token endpoint). The shared client suites (tests/e2e_backends.py) cover the
Anthropic, Gemini and Responses doors over qwen too; this file covers what is Qwen's own."""

from __future__ import annotations

import json
import time

import anthropic
import openai
import pytest

from tests.bridge_process import CLIENT_KEY, BridgeProcess, write_config
from tests.fakes.qwen import FakeQwen, Reply, cumulative_reply, insufficient_quota, quota_exceeded, usage

pytestmark = [pytest.mark.timeout(90)]
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Weather for a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
    }
]


@pytest.fixture
def qwen():
    with FakeQwen() as fake:
        yield fake


@pytest.fixture
def creds(tmp_path, qwen):
    path = tmp_path / "oauth_creds.json"
    qwen.write_credentials(path)
    return path


@pytest.fixture
def bridge(tmp_path, qwen, creds):
    account = {
        "name": "qwen1",
        "provider": "qwen",
        "credentials": str(creds),
        "base_url": qwen.base_url,
        "token_url": qwen.token_url,
        "requests_per_minute": 1000,
        "max_concurrent": 10,
    }
    with BridgeProcess(tmp_path, write_config(tmp_path / "bridge.toml", [account], record=False)) as process:
        yield process


def oai(bridge) -> openai.OpenAI:
    return openai.OpenAI(base_url=bridge.base_url + "/v1", api_key=CLIENT_KEY, max_retries=0, timeout=30)


def ask(bridge, text: str = "hi", **kw):
    return oai(bridge).chat.completions.create(model="coder-model", messages=[{"role": "user", "content": text}], **kw)


def test_models_list_offers_qwen_codes_model(bridge):
    assert "coder-model" in {m.id for m in oai(bridge).models.list().data}


def test_streaming_cumulative_content_and_reasoning(bridge, qwen):
    reply = cumulative_reply("<think>weigh", " it</think>\n\nHel", "lo!", reasoning="First, ")
    reply.usage = usage(30, 8, cached=16)
    qwen.enqueue(reply)
    chunks = list(ask(bridge, stream=True, stream_options={"include_usage": True}))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    reasoning = "".join(getattr(c.choices[0].delta, "reasoning_content", None) or "" for c in chunks if c.choices)
    assert text == "Hello!" and reasoning == "First, weigh it"
    assert chunks[-1].usage.prompt_tokens == 30 and chunks[-1].usage.prompt_tokens_details.cached_tokens == 16
    assert qwen.rejections == []  # headers, order, extras and cache markers as Qwen Code sends them


def test_non_streaming_tool_call_then_tool_result(bridge, qwen):
    qwen.enqueue(
        Reply(
            deltas=[
                {"tool_calls": [{"index": 0, "id": "call_9", "type": "function", "function": {"name": "get_weather"}}]},
                {"tool_calls": [{"index": 0, "function": {"arguments": '{"city": '}}]},
                {"tool_calls": [{"index": 0, "function": {"arguments": '"Oslo"}'}}]},
            ],
            finish="tool_calls",
        )
    )
    client = oai(bridge)
    messages = [{"role": "system", "content": "Use tools."}, {"role": "user", "content": "weather in Oslo?"}]
    first = client.chat.completions.create(model="coder-model", messages=messages, tools=TOOLS)
    call = first.choices[0].message.tool_calls[0]
    assert first.choices[0].finish_reason == "tool_calls"
    assert (call.id, call.function.name, json.loads(call.function.arguments)) == (
        "call_9",
        "get_weather",
        {"city": "Oslo"},
    )
    qwen.enqueue(Reply(deltas=[{"content": "Cold."}]))
    messages += [
        first.choices[0].message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": "call_9", "content": "-5C"},
    ]
    second = client.chat.completions.create(model="coder-model", messages=messages, tools=TOOLS)
    assert second.choices[0].message.content == "Cold."
    assert qwen.rejections == []
    sent = qwen.requests[-1]
    assert sent["messages"][-1]["role"] == "tool" and sent["tools"][-1]["cache_control"] == {"type": "ephemeral"}
    assert sent["metadata"]["sessionId"] == qwen.requests[-2]["metadata"]["sessionId"]  # one conversation


def test_quota_reaches_the_client_as_429_with_the_reset(bridge, qwen):
    qwen.enqueue(quota_exceeded())
    with pytest.raises(openai.RateLimitError) as info:
        ask(bridge)
    assert "Beijing" in str(info.value)
    retry_after = float(info.value.response.headers["retry-after"])
    assert 60 < retry_after <= 24 * 3600


def test_quota_error_in_the_anthropic_dialect(bridge, qwen):
    qwen.enqueue(insufficient_quota())
    client = anthropic.Anthropic(base_url=bridge.base_url, api_key=CLIENT_KEY, max_retries=0, timeout=30)
    with pytest.raises(anthropic.RateLimitError) as info:
        client.messages.create(model="coder-model", max_tokens=100, messages=[{"role": "user", "content": "x"}])
    assert info.value.body["type"] == "error" and "quota" in info.value.body["error"]["message"]


def test_stale_token_is_refreshed_and_the_rotation_persisted(bridge, qwen, creds):
    before = json.loads(creds.read_text())
    qwen.expire_access_tokens()
    qwen.enqueue(Reply(deltas=[{"content": "after refresh"}]))
    assert ask(bridge).choices[0].message.content == "after refresh"
    stored = json.loads(creds.read_text())
    assert len(qwen.refresh_requests) == 1 and stored["refresh_token"] != before["refresh_token"]
    assert stored["access_token"] in qwen.access_tokens and creds.stat().st_mode & 0o777 == 0o600


def test_dead_refresh_token_takes_the_account_out(bridge, qwen, creds):
    qwen.expire_access_tokens()
    qwen.dead_refresh = True
    with pytest.raises(openai.APIStatusError) as info:
        ask(bridge)
    assert info.value.status_code == 503 and "log in again" in str(info.value)
    calls = len(qwen.requests)
    with pytest.raises(openai.APIStatusError):
        ask(bridge)
    assert len(qwen.requests) == calls  # dead: no further upstream call


def test_discontinued_free_tier_says_so_and_stops(bridge, qwen):
    qwen.discontinued = True  # every chat request 401s, even with a token just issued
    with pytest.raises(openai.APIStatusError) as info:
        ask(bridge)
    assert info.value.status_code == 503 and "2026-04-15" in str(info.value)
    assert len(qwen.refresh_requests) == 1  # refreshed once, then judged
    time.sleep(0.1)
    calls = len(qwen.requests)
    with pytest.raises(openai.APIStatusError):
        ask(bridge)
    assert len(qwen.requests) == calls
