"""The shared Google error classifier, on Code Assist's 429 samples and on hand-written google.rpc.Status
bodies."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

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
    UpstreamTimeout,
    UpstreamUnavailable,
)
from llmbridge.providers.google.errors import classify, parse_duration

SAMPLES = Path(__file__).parents[1] / "replay" / "samples" / "gemini-cli"
ERROR_INFO = "type.googleapis.com/google.rpc.ErrorInfo"


def samples() -> list[dict]:
    entries = json.loads((SAMPLES / "gemini-codeassist-429-errors.json").read_text())
    return [{"error": s["error"]} for s in entries]


@pytest.mark.parametrize(
    "text,seconds",
    [
        ("539.477544ms", 0.539477544),
        ("13h19m1.2s", 13 * 3600 + 19 * 60 + 1.2),
        ("0.5s", 0.5),
        ("19h14m47s", 69287),
        ("0s", 0.0),
        ("2m", 120.0),
        ("1500us", 0.0015),
        ("0.539477544s", 0.539477544),
    ],
)
def test_parse_duration(text, seconds):
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "abc", "5", "5x", "1h abc"])
def test_parse_duration_rejects_garbage(text):
    assert parse_duration(text) is None


def test_rate_limit_sample_is_short_cooldown_from_retry_info():
    error = classify(429, json.dumps(samples()[0]).encode())
    assert type(error) is RateLimited
    assert error.retry_after == pytest.approx(0.539477544)
    assert error.code == "RATE_LIMIT_EXCEEDED"


def test_quota_exhausted_sample_is_terminal_with_reset_from_message():
    error = classify(429, json.dumps(samples()[1]))
    assert isinstance(error, QuotaExhausted)
    assert error.retry_after == pytest.approx(19 * 3600 + 14 * 60 + 47)
    assert "resets in 19 h 14 min" in error.message


def test_g1_credits_sample_is_quota():
    error = classify(429, json.dumps(samples()[2]))
    assert isinstance(error, QuotaExhausted) and error.code == "INSUFFICIENT_G1_CREDITS_BALANCE"


def status(
    code: int,
    reason: str | None = None,
    message: str = "m",
    extra: list | None = None,
    meta: dict | None = None,
    name: str = "X",
) -> bytes:
    details = list(extra or [])
    if reason:
        details.append(
            {"@type": ERROR_INFO, "reason": reason, "domain": "cloudcode-pa.googleapis.com", "metadata": meta or {}}
        )
    error = {"code": code, "message": message, "status": name, "details": details}
    return json.dumps({"error": error}).encode()


def test_long_rate_limit_delay_is_treated_as_quota():
    error = classify(429, status(429, "RATE_LIMIT_EXCEEDED", meta={"quotaResetDelay": "13h19m1.2s"}))
    assert isinstance(error, QuotaExhausted) and error.retry_after == pytest.approx(47941.2)


def test_per_day_quota_violation_is_quota():
    violation = {
        "@type": "type.googleapis.com/google.rpc.QuotaFailure",
        "violations": [{"quotaId": "GenerateRequestsPerDayPerProjectPerModel"}],
    }
    error = classify(429, status(429, extra=[violation]))
    assert isinstance(error, QuotaExhausted)


def test_capacity_and_unknown_429():
    assert isinstance(classify(429, status(429, "MODEL_CAPACITY_EXHAUSTED")), CapacityExhausted)
    plain = classify(429, b"Too Many Requests", retry_after_header="7")
    assert type(plain) is RateLimited and plain.retry_after == 7.0


def test_array_wrapped_error_body():
    body = json.dumps([{"error": {"code": 404, "message": "Requested entity was not found.", "status": "NOT_FOUND"}}])
    error = classify(404, body)
    assert isinstance(error, ModelNotFound) and "Requested entity was not found." in error.message


@pytest.mark.parametrize(
    "message",
    [
        "This client is no longer supported for Gemini Code Assist for individuals.",
        "Cloud Code Private API has not been used in project 123 before or it is disabled.",
        "User location is not supported for the API use.",
        "The account has been suspended.",
    ],
)
def test_forbidden_account_phrases_are_dead(message):
    error = classify(403, status(403, message=message))
    assert isinstance(error, AccountUnusable) and error.message == f"Google refused access for this account: {message}"


@pytest.mark.parametrize(
    "reason", ["UNSUPPORTED_LOCATION", "SERVICE_DISABLED", "INELIGIBLE_TIER", "VALIDATION_REQUIRED"]
)
def test_forbidden_account_reasons_are_dead(reason):
    assert isinstance(classify(403, status(403, reason, message="denied")), AccountUnusable)


def test_other_forbidden_rotates_without_retiring_the_account():
    error = classify(403, status(403, message="The caller does not have permission"))
    assert isinstance(error, PermissionDenied) and not isinstance(error, AccountUnusable)
    assert error.status == 403 and error.action == "rotate" and "does not have permission" in error.message


@pytest.mark.parametrize(
    "code,body,kind",
    [
        (401, status(401, name="UNAUTHENTICATED"), UpstreamAuthError),
        (400, status(400, message='Invalid JSON payload received. Unknown name "foo"'), UpstreamBadRequest),
        (
            400,
            status(
                400, message="The input token count (1200000) exceeds the maximum number of tokens allowed (1048576)."
            ),
            ContextTooLong,
        ),
        (404, status(404), ModelNotFound),
        (500, status(500), UpstreamUnavailable),
        (499, status(499, name="CANCELLED"), UpstreamUnavailable),
        (503, status(503, message="The model is overloaded."), CapacityExhausted),
        (504, status(504), UpstreamTimeout),
        (502, b"<html>bad gateway</html>", UpstreamUnavailable),
    ],
)
def test_status_mapping(code, body, kind):
    assert type(classify(code, body)) is kind


def test_bad_request_keeps_googles_message():
    error = classify(
        400, status(400, message="Please ensure that multiturn requests alternate between user and model.")
    )
    assert "alternate between user and model" in error.message and error.action == "stop"


@pytest.mark.parametrize(
    ("service", "start"),
    [
        ("Google", "Google rate limit hit"),
        ("Code Assist", "Code Assist rate limit hit"),
        ("the Gemini API", "The Gemini API rate limit hit"),
    ],
)
def test_messages_name_the_service(service, start):
    assert classify(429, status(429), service=service).message.startswith(start)
    quota = classify(429, status(429, "QUOTA_EXHAUSTED"), service=service)
    assert quota.message.startswith(f"The {service.removeprefix('the ')} quota of this account is used up")


def test_a_specific_rule_comes_first():
    own = UpstreamAuthError("mine")
    assert classify(429, status(429), specific=lambda code, parsed: own if code == 429 else None) is own
    assert type(classify(404, status(404), specific=lambda code, parsed: None)) is ModelNotFound
