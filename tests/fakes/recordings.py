"""Builds `ExchangeRecord`s the way the bridge fills them, for the recorder's tests."""

from __future__ import annotations

import json
import time

from llmbridge.canonical import (
    ChatRequest,
    ChatResult,
    ImagePart,
    Message,
    ReasoningPart,
    TextPart,
    ToolCallPart,
    ToolResultPart,
    Usage,
)
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


# A 1x1 PNG, as a client would send it (base64).
PNG_BASE64 = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR4nGNg+M/AwB8ABQICAaHiodQAAAAASUVORK5CYII="
HOSTILE = "<script>document.title='pwned'</script><img src=x onerror=\"document.title='pwned'\">"


def lighthouse_conversation(started: float) -> list[ExchangeRecord]:
    """Two turns of one conversation with everything the exchange screen shows: Markdown, hostile HTML
    in the prompt, an image, thinking, a tool call and its result; the request stored as the bridge
    stores it (`exclude_none`, so every part keeps its type)."""
    first_prompt = f"Tell me about the **lighthouses** of Brittany. {HOSTILE}"
    first_answer = "Two *lighthouses* guard the coast:\n\n- Phare d'Eckmühl\n- Phare du Créac'h"
    history = [user(first_prompt)]
    first = exchange(history, first_answer, started=started, duration_ms=13.74053955078125)
    history = [
        *history,
        assistant(first_answer),
        Message(
            role="user",
            parts=[TextPart(text="Here is a photo. Is it foggy?"), ImagePart(media_type="image/png", data=PNG_BASE64)],
        ),
        Message(
            role="assistant",
            parts=[
                ReasoningPart(text="The user asks about fog: call the weather tool.", signature="sig-1"),
                ToolCallPart(id="call_1", name="get_weather", arguments={"city": "Brest"}),
            ],
        ),
        Message(
            role="user",
            parts=[ToolResultPart(tool_call_id="call_1", name="get_weather", content=[TextPart(text="fog, 12 C")])],
        ),
    ]
    usage = Usage(input_tokens=120, output_tokens=12, cached_tokens=100, reasoning_tokens=5, estimated=True)
    second = exchange(history, "Foggy: the lighthouse beams matter today.", started=started + 1, usage=usage)
    for record, messages in ((first, history[:1]), (second, history)):
        request = ChatRequest(model="test-model", system=[TextPart(text=SYSTEM)], messages=messages)
        record.request_canonical = request.model_dump(mode="json", exclude_none=True)
    second.attempts.insert(0, _refused_attempt(started + 1))
    return [first, second]


def _refused_attempt(started: float) -> AttemptRecord:
    """An attempt an account's rate limit refused (the exchange then failed over)."""
    attempt = AttemptRecord(
        account="acct-limited",
        provider="fake",
        url="https://upstream.test/v1/chat",
        request_headers={"content-type": "application/json"},
        request_body={"model": "test-model"},
        status=429,
        response_headers={"retry-after": "30"},
        response_body=bytearray(b'{"error": "slow down"}'),
        ttfb_ms=5.0,
        duration_ms=6.0,
        error_kind="rate_limited",
        error_message="slow down",
    )
    attempt.started = started
    return attempt
