"""End to end: the official openai SDK -> real mitmdump bridge -> fake OpenAI-compatible upstream."""

from __future__ import annotations

import openai
import pytest

from tests.bridge_process import CLIENT_KEY, BridgeProcess, write_config
from tests.fakes.openai_upstream import FakeOpenAI, Reply, text_reply


@pytest.fixture
def upstream():
    with FakeOpenAI() as fake:
        yield fake


@pytest.fixture
def bridge(tmp_path, upstream):
    config = write_config(
        tmp_path / "bridge.toml",
        [
            {
                "name": "up1",
                "provider": "openai",
                "api_key": upstream.api_key,
                "base_url": upstream.base_url,
                "models": ["gpt-test"],
                "requests_per_minute": 1000,
                "max_concurrent": 50,
            },
        ],
        record=False,
    )
    with BridgeProcess(tmp_path, config) as process:
        yield process


def client(bridge: BridgeProcess, key: str = CLIENT_KEY) -> openai.OpenAI:
    return openai.OpenAI(base_url=bridge.base_url + "/v1", api_key=key, max_retries=0, timeout=20)


def test_non_stream_text(bridge, upstream):
    upstream.enqueue(text_reply("Hello there, friend"))
    reply = client(bridge).chat.completions.create(model="gpt-test", messages=[{"role": "user", "content": "hi"}])
    assert reply.choices[0].message.content == "Hello there, friend"
    assert reply.choices[0].finish_reason == "stop"
    assert reply.usage.prompt_tokens == 11 and reply.usage.completion_tokens == 7
    sent = upstream.requests[-1]
    # a non-stream request goes upstream non-stream, as the official SDK sends it
    assert sent == {"model": "gpt-test", "messages": [{"role": "user", "content": "hi"}]}
    assert upstream.headers[-1]["accept"] == "application/json"


def test_stream_text_with_usage(bridge, upstream):
    upstream.enqueue(text_reply("abcdefghi", pieces=3))
    stream = client(bridge).chat.completions.create(
        model="gpt-test",
        messages=[{"role": "user", "content": "hi"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "abcdefghi"
    assert chunks[-1].usage.total_tokens == 18


def test_wrong_key_is_401_in_openai_shape(bridge):
    with pytest.raises(openai.AuthenticationError) as info:
        client(bridge, "sk-wrong").chat.completions.create(model="gpt-test", messages=[])
    assert "invalid API key" in str(info.value)


def test_unknown_model_is_404(bridge):
    with pytest.raises(openai.NotFoundError) as info:
        client(bridge).chat.completions.create(model="nope", messages=[{"role": "user", "content": "x"}])
    assert "/v1/models" in str(info.value)


def test_models_lists_bare_and_pinned(bridge):
    ids = {m.id for m in client(bridge).models.list()}
    assert {"gpt-test", "openai/gpt-test"} <= ids


def test_upstream_429_maps_to_429_with_retry_after(bridge, upstream):
    upstream.enqueue(
        Reply(
            status=429,
            error_body={"error": {"message": "slow down", "code": "rate_limit"}},
            headers={"retry-after": "7"},
        )
    )
    with pytest.raises(openai.RateLimitError) as info:
        client(bridge).chat.completions.create(model="gpt-test", messages=[{"role": "user", "content": "x"}])
    assert info.value.response.headers["retry-after"] == "7"


def test_local_server_without_api_key(tmp_path):
    """An `openai` account pointed at a local server may leave out api_key: no Authorization is sent."""
    with FakeOpenAI(api_key=None) as keyless:
        config = write_config(
            tmp_path / "bridge.toml",
            [
                {"name": "local", "provider": "openai", "base_url": keyless.base_url, "models": ["local-model"]},
            ],
            record=False,
        )
        with BridgeProcess(tmp_path, config) as bridge:
            keyless.enqueue(text_reply("no key needed"))
            reply = client(bridge).chat.completions.create(
                model="local-model", messages=[{"role": "user", "content": "hi"}]
            )
            assert reply.choices[0].message.content == "no key needed"
            assert "authorization" not in keyless.headers[-1]


def test_openai_itself_still_needs_an_api_key(tmp_path):
    from tests.bridge_process import run_bridge_expecting_failure

    config = write_config(tmp_path / "bridge.toml", [{"name": "oa", "provider": "openai"}])
    code, output = run_bridge_expecting_failure(tmp_path, config)
    assert code != 0 and "needs 'api_key' for https://api.openai.com/v1" in output
