"""Builds `ExchangeRecord`s the way the bridge fills them, for the recorder's tests."""

from __future__ import annotations

import json
import time

from llmbridge.canonical import ChatRequest, ChatResult, Message, TextPart, Usage
from llmbridge.exchange import AttemptRecord, ExchangeRecord

SYSTEM = "You are a terse assistant."


def user(text: str) -> Message:
    return Message(role="user", parts=[TextPart(text=text)])


def assistant(text: str) -> Message:
    return Message(role="assistant", parts=[TextPart(text=text)])


def exchange(
    history: list[Message],
    answer: str = "ok",
    *,
    model: str = "test-model",
    account: str = "acct-1",
    provider: str = "fake",
    started: float | None = None,
    status: int = 200,
    ttfb_ms: float = 12.0,
    duration_ms: float = 40.0,
    usage: Usage | None = None,
    stream: bool = False,
    system: str = SYSTEM,
    upstream_body: bytes | None = None,
) -> ExchangeRecord:
    """A finished exchange: a request with `history`, answered with `answer` by one attempt."""
    request = ChatRequest(
        model=model, system=[TextPart(text=system)] if system else [], messages=history, stream=stream
    )
    usage = usage or Usage(input_tokens=10 * len(history), output_tokens=len(answer.split()))
    result = ChatResult(id=f"resp-{len(history)}", model=model + "-served", parts=[TextPart(text=answer)], usage=usage)
    body = (
        upstream_body
        if upstream_body is not None
        else (b'data: {"choices":[{"delta":{"content":' + json.dumps(answer).encode() + b"}}]}\n\n")
    )
    attempt = AttemptRecord(
        account=account,
        provider=provider,
        url="https://upstream.test/v1/chat",
        request_headers={"content-type": "application/json"},
        request_body={"model": model, "n": len(history)},
        status=status,
        response_headers={"content-type": "text/event-stream"},
        response_body=bytearray(body),
        ttfb_ms=ttfb_ms - 2,
        duration_ms=duration_ms - 2,
    )
    record = ExchangeRecord(
        client_format="openai",
        endpoint="POST /v1/chat/completions",
        key_label="key1",
        request_raw={"model": model, "messages": [{"role": m.role, "content": m.text()} for m in history]},
        request_canonical=request.model_dump(mode="json", exclude_defaults=True),
        model_requested=model,
        model_served=model + "-served",
        provider=provider,
        account=account,
        stream=stream,
        attempts=[attempt],
        status=status,
        ttfb_ms=ttfb_ms,
        duration_ms=duration_ms,
        finish_reason="stop",
        usage=usage.model_dump(),
        result=result.model_dump(mode="json"),
    )
    if started is not None:
        record.started = started
        attempt.started = started
    return record


def conversation(turns: int, started: float | None = None) -> list[ExchangeRecord]:
    """`turns` exchanges of one conversation; each re-sends the whole history, as stateless clients do."""
    history: list[Message] = []
    records = []
    base = time.time() if started is None else started
    for turn in range(turns):
        history = [*history, user(f"question {turn}")]
        answer = f"answer {turn}"
        records.append(exchange(history, answer, started=base + turn))
        history = [*history, assistant(answer)]
    return records
