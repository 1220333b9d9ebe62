"""A bridge without mitmproxy for tests: OpenAI-compatible upstreams as httpx MockTransports behind the
real `openai` provider, so everything from the client request to the pool's state runs for real."""

from __future__ import annotations

import json

import httpx

from llmbridge.answer import BufferedSink, DeferredAnswer
from llmbridge.bridge import Bridge, IncomingRequest
from llmbridge.config import AccountConfig, BridgeConfig, ClientKey
from llmbridge.pool import AccountPool
from llmbridge.providers.openai_api.provider import OpenAIProvider
from llmbridge.responses import LocalResponse

KEY = "sk-test"


def sse(*chunks: dict) -> bytes:
    return b"".join(b"data: " + json.dumps(c).encode() + b"\n\n" for c in chunks) + b"data: [DONE]\n\n"


def text_stream(text: str) -> bytes:
    return sse(
        {"id": "u", "model": "m", "choices": [{"index": 0, "delta": {"content": text}}]},
        {"id": "u", "model": "m", "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
    )


def streamed(data: bytes, status: int = 200) -> httpx.Response:
    """A response whose body arrives as a stream, as the real upstreams' do."""

    async def body():
        yield data

    return httpx.Response(status, content=body(), headers={"content-type": "text/event-stream"})


def make_bridge(*handlers, **config) -> tuple[Bridge, AccountPool]:
    providers = []
    for i, handler in enumerate(handlers):
        account = AccountConfig(
            name=f"a{i}", provider="openai", api_key="k", models=["m"], requests_per_minute=1000, max_concurrent=5
        )
        http = httpx.AsyncClient(transport=httpx.MockTransport(handler))
        providers.append(OpenAIProvider(account, http))
    pool = AccountPool(providers, "fill-first")
    records = []

    async def on_exchange(record):
        records.append(record)

    bridge = Bridge(BridgeConfig(**config), pool, [ClientKey(key=KEY, label="t")], on_exchange)
    bridge.records = records  # type: ignore[attr-defined]
    return bridge, pool


def chat_request(stream: bool = False) -> IncomingRequest:
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": stream}
    return IncomingRequest(
        "POST", "/v1/chat/completions", {"authorization": f"Bearer {KEY}"}, json.dumps(body).encode()
    )


async def answer(bridge: Bridge, request: IncomingRequest) -> tuple[int, bytes]:
    outcome = await bridge.handle(request)
    if isinstance(outcome, DeferredAnswer):  # a stream: the relay would wait for it to open
        outcome = await outcome.task
    if isinstance(outcome, LocalResponse):
        return outcome.status, outcome.body
    sink = BufferedSink()
    await outcome.run(sink)
    return sink.status, bytes(sink.body)
