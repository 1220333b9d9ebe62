"""Qwen failures classified, each with its reset and a message that says what to do."""

from __future__ import annotations

import json
from datetime import datetime, timezone

from llmbridge.errors import (
    AccountUnusable,
    CapacityExhausted,
    ContextTooLong,
    ModelNotFound,
    PermissionDenied,
    QuotaExhausted,
    RateLimited,
    UpstreamAuthError,
    UpstreamBadRequest,
    UpstreamUnavailable,
)
from llmbridge.providers.qwen.errors import classify, next_beijing_midnight

NOW = datetime(2026, 3, 1, 10, 0, tzinfo=timezone.utc)  # 18:00 in Beijing


def body(code: str, message: str) -> bytes:
    return json.dumps({"error": {"code": code, "message": message, "type": code}}).encode()


def test_free_quota_resets_at_beijing_midnight():
    error = classify(429, body("insufficient_quota", "Free allocated quota exceeded."), now=NOW)
    assert isinstance(error, QuotaExhausted)
    assert error.retry_after == 6 * 3600  # 16:00 UTC is 00:00 in Beijing
    assert "00:00 Beijing time" in error.message and "2026-03-01 16:00 UTC" in error.message
    assert "free tier" in error.message  # says what it means if it does not come back


def test_quota_message_without_code_and_403_insufficient_quota():
    assert isinstance(
        classify(429, b'{"error": {"message": "Free allocated quota exceeded."}}', now=NOW), QuotaExhausted
    )
    assert isinstance(classify(403, body("insufficient_quota", "quota used"), now=NOW), QuotaExhausted)
    assert isinstance(classify(429, body("quota_exceeded", "daily"), now=NOW), QuotaExhausted)


def test_rate_limit_uses_retry_after_else_a_minute():
    error = classify(429, body("rate_limit_exceeded", "Requests rate limit exceeded"), "7")
    assert type(error) is RateLimited and error.retry_after == 7
    assert classify(429, body("rate_limit_exceeded", "slow"), None).retry_after == 60


def test_discontinued_free_tier_is_dead_in_plain_words():
    message = "Qwen OAuth free tier has been discontinued as of 2026-04-15."
    error = classify(403, body("access_denied", message))
    assert isinstance(error, AccountUnusable)
    assert "ended the Qwen OAuth free tier on 2026-04-15" in error.message and "API key" in error.message


def test_auth_and_request_errors():
    assert isinstance(
        classify(401, body("invalid_api_key", "invalid access token or token expired")), UpstreamAuthError
    )
    assert isinstance(classify(404, body("model_not_found", "no such model")), ModelNotFound)
    assert isinstance(classify(400, body("invalid_parameter_error", "bad tools")), UpstreamBadRequest)
    too_long = classify(400, body("invalid_parameter_error", "Range of input length should be [1, 129024]"))
    assert isinstance(too_long, ContextTooLong)
    assert isinstance(classify(403, body("access_denied", "model not allowed")), PermissionDenied)


def test_server_side_failures_and_dashscope_shape():
    assert isinstance(classify(503, body("overloaded", "busy"), "3"), CapacityExhausted)
    native = json.dumps({"code": "InternalError", "message": "oops", "request_id": "r"}).encode()
    error = classify(500, native)
    assert isinstance(error, UpstreamUnavailable) and "oops" in error.message
    assert "HTTP 502" in classify(502, b"<html>bad gateway</html>").message


def test_next_beijing_midnight_after_midnight_utc_is_the_same_utc_day():
    assert next_beijing_midnight(datetime(2026, 3, 1, 17, 0, tzinfo=timezone.utc)) == datetime(
        2026, 3, 2, 16, 0, tzinfo=timezone.utc
    )
