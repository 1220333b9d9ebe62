"""Public Gemini API failures: the API key's own errors, and Google's shared classes named for this API
(the shared classifier: test_google_errors.py)."""

from __future__ import annotations

import json

import pytest

from llmbridge import errors as e
from llmbridge.canonical import StreamError
from llmbridge.providers.gemini_api.errors import classify
from llmbridge.providers.google.decoder import GeminiDecoder
from tests.fakes.gemini_api import chunk, status_reply


def test_in_stream_error_names_the_api():
    decoder = GeminiDecoder(classify)
    error = {"error": {"code": 503, "message": "overloaded", "status": "UNAVAILABLE"}}
    data = b"".join(b"data: " + json.dumps(c).encode() + b"\r\n\r\n" for c in (chunk({"text": "x"}), error))
    events = decoder.feed(data) + decoder.close()
    error_event = events[-1]
    assert isinstance(error_event, StreamError) and error_event.kind == "overloaded"
    assert error_event.message.startswith("The Gemini API is overloaded") and "Code Assist" not in error_event.message


KEY_INFO = [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID"}]
DAILY = [
    {
        "@type": "type.googleapis.com/google.rpc.QuotaFailure",
        "violations": [{"quotaId": "GenerateRequestsPerDayPerProjectPerModel-FreeTier"}],
    },
    {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "3600s"},
]
MINUTE = [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "13s"}]


@pytest.mark.parametrize(
    ("code", "status", "message", "details", "cls"),
    [
        (400, "INVALID_ARGUMENT", "API key not valid. Please pass a valid API key.", KEY_INFO, e.AccountUnusable),
        (
            403,
            "PERMISSION_DENIED",
            "Generative Language API has not been used",
            [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "SERVICE_DISABLED"}],
            e.AccountUnusable,
        ),
        (401, "UNAUTHENTICATED", "API keys are not supported", [], e.AccountUnusable),
        (400, "INVALID_ARGUMENT", "Invalid JSON payload received", [], e.UpstreamBadRequest),
        (
            400,
            "INVALID_ARGUMENT",
            "The input token count (2000000) exceeds the maximum number of tokens allowed",
            [],
            e.ContextTooLong,
        ),
        (400, "FAILED_PRECONDITION", "User location is not supported for the API use.", [], e.AccountUnusable),
        (
            403,
            "PERMISSION_DENIED",
            "Generative Language API has not been used in project 1 before or it is disabled",
            [],
            e.AccountUnusable,
        ),
        (403, "PERMISSION_DENIED", "You do not have permission to access tuned model", [], e.PermissionDenied),
        (404, "NOT_FOUND", "models/gemini-9 is not found", [], e.ModelNotFound),
        (429, "RESOURCE_EXHAUSTED", "You exceeded your current quota", DAILY, e.QuotaExhausted),
        (429, "RESOURCE_EXHAUSTED", "Resource has been exhausted", MINUTE, e.RateLimited),
        (503, "UNAVAILABLE", "The model is overloaded. Please try again later.", [], e.CapacityExhausted),
        (500, "INTERNAL", "An internal error has occurred", [], e.UpstreamUnavailable),
    ],
)
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


@pytest.mark.parametrize(
    ("code", "status", "details", "start"),
    [
        (429, "RESOURCE_EXHAUSTED", MINUTE, "The Gemini API rate limit hit"),
        (429, "RESOURCE_EXHAUSTED", DAILY, "The Gemini API quota of this account is used up"),
        (404, "NOT_FOUND", [], "The Gemini API does not know this model"),
        (400, "INVALID_ARGUMENT", [], "The Gemini API rejected the request"),
        (504, "DEADLINE_EXCEEDED", [], "The Gemini API timed out"),
    ],
)
def test_messages_name_this_api(code, status, details, start):
    error = classify(code, json.dumps(status_reply(code, status, "m", details).error_body))
    assert error.message.startswith(start), error.message
