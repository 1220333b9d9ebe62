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
from tests.fakes.openai_upstream import Reply, completion

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


def completion_of(stream: bytes) -> dict | None:
    """The `chat.completion` that OpenAI sends for a non-stream request whose stream would have been
    these SSE bytes (None for a stream that does not end well: neither a finish reason nor [DONE], an
    error, or bytes that are not JSON events). OpenAI always names a whole answer's finish reason:
    "stop" where the stream had none."""
    try:
        chunks = [json.loads(line[6:]) for line in stream.decode().split("\n") if line.startswith("data: {")]
    except ValueError:  # not an event stream of JSON (a broken upstream): it goes as it is
        return None
    done = "stop" if b"data: [DONE]" in stream else None
    finish = next(
        (c["finish_reason"] for chunk in chunks for c in chunk.get("choices", []) if c.get("finish_reason")), done
    )
    if finish is None or any("error" in chunk for chunk in chunks):
        return None
    deltas = [c.get("delta") or {} for chunk in chunks for c in chunk.get("choices", [])]
    usage = next((chunk["usage"] for chunk in chunks if chunk.get("usage")), None)
    whole = completion(Reply(deltas=deltas, finish=finish, usage=usage), chunks[0].get("model", "m"))
    return dict(whole, id=chunks[0].get("id", whole["id"]))


def as_openai_answers(handler):
    """A mock upstream written as a stream, answering a non-stream request as OpenAI does: a 200
    stream that ends well becomes its one `chat.completion` body; anything else goes as it is."""

    async def answering(request: httpx.Request) -> httpx.Response:
        response = handler(request)
        if not isinstance(response, httpx.Response):
            response = await response
        streaming = json.loads(request.content or b"{}").get("stream") is True
        if streaming or response.status_code != 200 or "event-stream" not in response.headers.get("content-type", ""):
            return response
        raw = await response.aread()
        whole = completion_of(raw)
        return streamed(raw) if whole is None else httpx.Response(200, json=whole)

    return answering


def make_bridge(*handlers, **config) -> tuple[Bridge, AccountPool]:
    """A bridge over one `openai` account per handler (a MockTransport handler that answers as a
    stream; non-stream requests get that answer whole, `as_openai_answers`)."""
    providers = []
    for i, handler in enumerate(handlers):
        account = AccountConfig(
            name=f"a{i}", provider="openai", api_key="k", models=["m"], requests_per_minute=1000, max_concurrent=5
        )
        http = httpx.AsyncClient(transport=httpx.MockTransport(as_openai_answers(handler)))
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
