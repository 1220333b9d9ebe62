"""Public Gemini API SSE (bare GenerateContentResponse chunks) -> canonical events; error classes."""

from __future__ import annotations

import json
import random

import pytest

from llmbridge import errors as e
from llmbridge.accumulate import StreamAccumulator
from llmbridge.canonical import ResponseMeta, StreamError
from llmbridge.providers.gemini_api.errors import GeminiAPIDecoder, classify
from tests.fakes.gemini_api import chunk, status_reply, text_reply, tool_reply


def sse(chunks: list[dict]) -> bytes:
    return b"".join(b"data: " + json.dumps(c).encode() + b"\r\n\r\n" for c in chunks)


def decode(data: bytes, seed: int) -> list:
    rng = random.Random(seed)
    decoder = GeminiAPIDecoder()
    events, pos = [], 0
    while pos < len(data):
        step = rng.randint(1, 30)
        events += decoder.feed(data[pos:pos + step])
        pos += step
    return events + decoder.close()


@pytest.mark.parametrize("seed", range(5))
def test_bare_chunks_text_thought_usage(seed):
    events = decode(sse(text_reply("Grüß ", "dich ✓", thought="thinking…").chunks), seed)
    assert ResponseMeta(response_id="resp-fake-1", model="gemini-2.5-flash") in events
    acc = StreamAccumulator("x", "m")
    acc.feed_all(events)
    done = acc.result()
    assert done.text() == "Grüß dich ✓" and done.reasoning_text() == "thinking…"
    assert done.finish_reason == "stop" and done.usage is not None
    assert (done.usage.input_tokens, done.usage.output_tokens, done.usage.reasoning_tokens) == (12, 8, 2)


@pytest.mark.parametrize("seed", range(3))
def test_function_call(seed):
    acc = StreamAccumulator("x", "m")
    acc.feed_all(decode(sse(tool_reply("get", {"q": "ä"}, call_id="c9").chunks), seed))
    done = acc.result()
    assert [(c.id, c.name, c.arguments) for c in done.tool_calls()] == [("c9", "get", {"q": "ä"})]
    assert done.finish_reason == "tool_calls"


def test_envelope_still_accepted():
    events = decode(sse([{"response": chunk({"text": "x"}, finish="STOP"), "traceId": "t1"}]), 0)
    assert ResponseMeta(response_id="t1", model="gemini-2.5-flash") in events


def test_in_stream_error_names_the_api():
    events = decode(sse([chunk({"text": "x"}), {"error": {"code": 503, "message": "overloaded",
                                                          "status": "UNAVAILABLE"}}]), 0)
    error = events[-1]
    assert isinstance(error, StreamError) and error.kind == "overloaded" and "Code Assist" not in error.message


def test_missing_finish_is_a_cut():
    events = decode(sse([chunk({"text": "x"})]), 0)
    assert isinstance(events[-1], StreamError) and events[-1].status == 502


KEY_INFO = [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID"}]
DAILY = [{"@type": "type.googleapis.com/google.rpc.QuotaFailure",
          "violations": [{"quotaId": "GenerateRequestsPerDayPerProjectPerModel-FreeTier"}]},
         {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "3600s"}]
MINUTE = [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "13s"}]


@pytest.mark.parametrize(("code", "status", "message", "details", "cls"), [
    (400, "INVALID_ARGUMENT", "API key not valid. Please pass a valid API key.", KEY_INFO, e.AccountUnusable),
    (403, "PERMISSION_DENIED", "Generative Language API has not been used", [
        {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "SERVICE_DISABLED"}], e.AccountUnusable),
    (401, "UNAUTHENTICATED", "API keys are not supported", [], e.AccountUnusable),
    (400, "INVALID_ARGUMENT", "Invalid JSON payload received", [], e.UpstreamBadRequest),
    (400, "INVALID_ARGUMENT", "The input token count (2000000) exceeds the maximum number of tokens allowed",
     [], e.ContextTooLong),
    (400, "FAILED_PRECONDITION", "User location is not supported for the API use.", [], e.AccountUnusable),
    (403, "PERMISSION_DENIED", "You do not have permission to access tuned model", [], e.PermissionDenied),
    (404, "NOT_FOUND", "models/gemini-9 is not found", [], e.ModelNotFound),
    (429, "RESOURCE_EXHAUSTED", "You exceeded your current quota", DAILY, e.QuotaExhausted),
    (429, "RESOURCE_EXHAUSTED", "Resource has been exhausted", MINUTE, e.RateLimited),
    (503, "UNAVAILABLE", "The model is overloaded. Please try again later.", [], e.CapacityExhausted),
    (500, "INTERNAL", "An internal error has occurred", [], e.UpstreamUnavailable),
])
def test_classify(code, status, message, details, cls):
    reply = status_reply(code, status, message, details)
    error = classify(code, json.dumps(reply.error_body).encode())
    assert type(error) is cls, error
    assert message in error.message and "Code Assist" not in error.message
    if cls is e.AccountUnusable and "key" in message.lower():
        assert "api_key" in error.message


def test_rate_limit_delay():
    error = classify(429, json.dumps(status_reply(429, "RESOURCE_EXHAUSTED", "slow", MINUTE).error_body))
    assert error.retry_after == 13.0
