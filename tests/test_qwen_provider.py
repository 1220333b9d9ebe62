"""QwenProvider against the strict fake Qwen: Qwen Code's headers in its order, the base URL from
resource_url, ids that follow the conversation, a 401 refreshed, a 401 to a fresh token dead."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from llmbridge.accumulate import StreamAccumulator
from llmbridge.canonical import ChatRequest, ChatResult, Message, TextPart
from llmbridge.config import AccountConfig
from llmbridge.errors import AccountUnusable, ConfigError, QuotaExhausted, UpstreamAuthError
from llmbridge.providers.base import provider_class
from llmbridge.providers.qwen import client
from llmbridge.providers.qwen.provider import QwenProvider
from tests.fakes.qwen import HEADER_ORDER, FakeQwen, Reply, quota_exceeded


@pytest.fixture
def fake():
    with FakeQwen() as server:
        yield server


@pytest.fixture
def creds(fake, tmp_path) -> Path:
    path = tmp_path / "oauth_creds.json"
    fake.write_credentials(path)
    return path


def account(fake: FakeQwen, creds: Path, **kw: Any) -> AccountConfig:
    return AccountConfig(
        name="q1", provider="qwen", credentials=str(creds), base_url=fake.base_url, token_url=fake.token_url, **kw
    )


def chat(*texts: str) -> ChatRequest:
    messages = [
        Message(role="user" if i % 2 == 0 else "assistant", parts=[TextPart(text=t)]) for i, t in enumerate(texts)
    ]
    return ChatRequest(model="coder-model", messages=messages or [Message(role="user", parts=[TextPart(text="hi")])])


async def complete(provider: QwenProvider, request: ChatRequest) -> ChatResult:
    call = await provider.open(request, request.model)
    acc = StreamAccumulator("local", request.model)
    try:
        async for chunk in call.response.aiter_raw():
            acc.feed_all(call.decoder.feed(chunk))
    finally:
        await call.aclose()
    acc.feed_all(call.decoder.close())
    return acc.result()


def with_provider(acc: AccountConfig, body):
    async def go():
        async with httpx.AsyncClient() as http:
            return await body(QwenProvider(acc, http))

    return asyncio.run(go())


def test_registry_and_defaults():
    cls = provider_class("qwen")
    assert cls is QwenProvider and cls.paced_by_default()
    assert cls.default_credentials == "~/.qwen/oauth_creds.json"


def test_request_carries_qwen_codes_headers_in_order(fake, creds):
    fake.enqueue(Reply(deltas=[{"reasoning_content": "hm"}, {"content": "Hi"}, {"content": " there"}]))
    result = with_provider(account(fake, creds), lambda p: complete(p, chat()))
    assert result.text() == "Hi there" and result.reasoning_text() == "hm"
    assert fake.rejections == []
    assert [n.lower() for n in fake.header_orders[-1]] == HEADER_ORDER
    headers = fake.headers[-1]
    assert headers["user-agent"] == client.user_agent() == headers["x-dashscope-useragent"]
    assert headers["user-agent"].startswith(f"QwenCode/{client.CLIENT_VERSION} (")
    assert headers["x-stainless-package-version"] == client.OPENAI_SDK_VERSION


def test_ids_follow_the_conversation(fake, creds):
    fake.default = Reply(deltas=[{"content": "ok"}])

    async def body(provider):
        await complete(provider, chat("first"))
        await complete(provider, chat("first", "ok", "second"))
        await complete(provider, chat("another"))

    with_provider(account(fake, creds), body)
    ids = [r["metadata"] for r in fake.requests]
    assert ids[0]["sessionId"] == ids[1]["sessionId"] != ids[2]["sessionId"]
    assert ids[0]["promptId"].endswith("########1") and ids[1]["promptId"].endswith("########2")


def test_base_url_comes_from_resource_url(fake, tmp_path):
    path = tmp_path / "creds.json"
    fake.write_credentials(path, resource_url="portal.qwen.ai")
    acc = AccountConfig(name="q", provider="qwen", credentials=str(path))
    assert with_provider(acc, lambda p: asyncio.sleep(0, p.base_url)) == "https://portal.qwen.ai/v1"
    fake.write_credentials(path, resource_url="https://example.test/v1")
    assert with_provider(acc, lambda p: asyncio.sleep(0, p.base_url)) == "https://example.test/v1"
    data = json.loads(path.read_text())
    del data["resource_url"]
    path.write_text(json.dumps(data))
    assert with_provider(acc, lambda p: asyncio.sleep(0, p.base_url)).startswith("https://dashscope.aliyuncs.com/")


def test_https_asks_for_brotli_as_node_does():
    assert client.headers("t", https=True)["accept-encoding"] == "br, gzip, deflate"
    assert client.headers("t", https=False)["accept-encoding"] == "gzip, deflate"


def test_stale_token_is_an_auth_error_then_refreshed(fake, creds):
    fake.expire_access_tokens()
    fake.enqueue(Reply(deltas=[{"content": "back"}]))

    async def body(provider):
        with pytest.raises(UpstreamAuthError):
            await provider.open(chat(), "coder-model")
        await provider.refresh_credentials(force=True)
        return await complete(provider, chat())

    assert with_provider(account(fake, creds), body).text() == "back"
    assert len(fake.refresh_requests) == 1


def test_401_to_a_token_just_issued_means_the_free_tier_is_gone(fake, creds):
    fake.discontinued = True

    async def body(provider):
        with pytest.raises(UpstreamAuthError):
            await provider.open(chat(), "coder-model")
        await provider.refresh_credentials(force=True)
        with pytest.raises(AccountUnusable) as caught:
            await provider.open(chat(), "coder-model")
        return caught.value

    error = with_provider(account(fake, creds), body)
    assert "2026-04-15" in error.message and error.attempt is not None and error.attempt.status == 401


def test_quota_error_is_classified(fake, creds):
    fake.enqueue(quota_exceeded())

    async def body(provider):
        with pytest.raises(QuotaExhausted) as caught:
            await provider.open(chat(), "coder-model")
        return caught.value

    assert with_provider(account(fake, creds), body).retry_after > 0


def test_validate_account(tmp_path):
    missing = AccountConfig(name="q", provider="qwen", credentials=str(tmp_path / "none.json"))
    with pytest.raises(ConfigError, match="llmbridge login qwen"):
        QwenProvider.validate_account(missing)
    empty = tmp_path / "empty.json"
    empty.write_text("{}")
    with pytest.raises(ConfigError, match="no Qwen OAuth token"):
        QwenProvider.validate_account(AccountConfig(name="q", provider="qwen", credentials=str(empty)))
    bad = tmp_path / "ok.json"
    bad.write_text('{"access_token": "a", "refresh_token": "r"}')
    with pytest.raises(ConfigError, match="not a Qwen Code release"):
        QwenProvider.validate_account(
            AccountConfig(name="q", provider="qwen", credentials=str(bad), client_version="latest")
        )
