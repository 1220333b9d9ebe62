"""Anthropic error bodies -> the bridge's error classes."""

from __future__ import annotations

import json
import time
from datetime import datetime, timezone

import pytest

from llmbridge import errors as e
from llmbridge.providers.anthropic_api.errors import classify, classify_error_object


def body(kind: str, message: str) -> bytes:
    return json.dumps({"type": "error", "error": {"type": kind, "message": message}}).encode()


@pytest.mark.parametrize(
    ("status", "kind", "message", "cls"),
    [
        (400, "invalid_request_error", "messages: roles must alternate", e.UpstreamBadRequest),
        (400, "invalid_request_error", "prompt is too long: 210000 tokens > 200000 maximum", e.ContextTooLong),
        (401, "authentication_error", "invalid x-api-key", e.AccountUnusable),
        (402, "billing_error", "credit balance too low", e.AccountUnusable),
        (
            403,
            "permission_error",
            "Your API key does not have permission to use the specified resource",
            e.PermissionDenied,
        ),
        (403, "permission_error", "This API key has been disabled", e.AccountUnusable),
        (404, "not_found_error", "model: claude-nope", e.ModelNotFound),
        (413, "request_too_large", "Request exceeds the maximum allowed number of bytes", e.RequestTooLarge),
        (429, "rate_limit_error", "Number of request tokens has exceeded your per-minute rate limit", e.RateLimited),
        (529, "overloaded_error", "Overloaded", e.CapacityExhausted),
        (503, "api_error", "unavailable", e.CapacityExhausted),
        (500, "api_error", "Internal server error", e.UpstreamUnavailable),
        (504, "timeout_error", "timed out", e.UpstreamTimeout),
    ],
)
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


def test_bad_key_takes_the_account_out_instead_of_refreshing():
    error = classify(401, body("authentication_error", "invalid x-api-key"))
    assert type(error) is e.AccountUnusable and error.action == "dead"
    assert "api_key" in error.message and "invalid x-api-key" in error.message


def test_low_credit_balance_is_account_unusable():
    message = (
        "Your credit balance is too low to access the Anthropic API. Please go to Plans & Billing "
        "to upgrade or purchase credits."
    )
    error = classify(400, body("invalid_request_error", message))
    assert type(error) is e.AccountUnusable and message in error.message


def test_usage_limit_is_quota_exhausted_until_the_date_given():
    message = "You have reached your specified API usage limits. You will regain access on 2030-01-02 at 00:00 UTC."
    error = classify(400, body("invalid_request_error", message))
    assert type(error) is e.QuotaExhausted and message in error.message
    assert error.retry_after is not None
    assert abs(error.retry_after - (datetime(2030, 1, 2, tzinfo=timezone.utc).timestamp() - time.time())) < 60
    undated = classify(400, body("invalid_request_error", "You have reached your specified API usage limits."))
    assert type(undated) is e.QuotaExhausted and undated.retry_after is None


def test_in_stream_credit_error_is_account_unusable():
    error = classify_error_object(
        {"type": "invalid_request_error", "message": "Your credit balance is too low to access the Anthropic API."}
    )
    assert type(error) is e.AccountUnusable
