"""Anthropic error bodies -> the bridge's error classes."""

from __future__ import annotations

import json

import pytest

from llmbridge import errors as e
from llmbridge.providers.anthropic_api.errors import classify


def body(kind: str, message: str) -> bytes:
    return json.dumps({"type": "error", "error": {"type": kind, "message": message}}).encode()


@pytest.mark.parametrize(("status", "kind", "message", "cls"), [
    (400, "invalid_request_error", "messages: roles must alternate", e.UpstreamBadRequest),
    (400, "invalid_request_error", "prompt is too long: 210000 tokens > 200000 maximum", e.ContextTooLong),
    (401, "authentication_error", "invalid x-api-key", e.UpstreamAuthError),
    (402, "billing_error", "credit balance too low", e.AccountUnusable),
    (403, "permission_error", "Your API key does not have permission to use the specified resource",
     e.PermissionDenied),
    (403, "permission_error", "This API key has been disabled", e.AccountUnusable),
    (404, "not_found_error", "model: claude-nope", e.ModelNotFound),
    (413, "request_too_large", "Request exceeds the maximum allowed number of bytes", e.RequestTooLarge),
    (429, "rate_limit_error", "Number of request tokens has exceeded your per-minute rate limit", e.RateLimited),
    (529, "overloaded_error", "Overloaded", e.CapacityExhausted),
    (503, "api_error", "unavailable", e.CapacityExhausted),
    (500, "api_error", "Internal server error", e.UpstreamUnavailable),
    (504, "timeout_error", "timed out", e.UpstreamTimeout),
])
def test_classes(status, kind, message, cls):
    error = classify(status, body(kind, message))
    assert type(error) is cls
    assert message in error.message and error.code == kind


def test_retry_after_header():
    error = classify(429, body("rate_limit_error", "slow"), "12")
    assert isinstance(error, e.RateLimited) and error.retry_after == 12.0
    assert classify(429, body("rate_limit_error", "slow"), "soon").retry_after is None


def test_non_json_body_keeps_text():
    error = classify(502, b"<html>Bad gateway</html>")
    assert isinstance(error, e.UpstreamUnavailable) and "Bad gateway" in error.message
