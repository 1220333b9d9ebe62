"""Code Assist failures: the 403s particular to Code Assist accounts, and messages naming Code Assist
(the shared Google classifier: test_google_errors.py)."""

from __future__ import annotations

import json

import pytest

from llmbridge.errors import AccountUnusable, PermissionDenied, QuotaExhausted, RateLimited, UpstreamAuthError
from llmbridge.providers.gemini_cli.errors import classify
from tests.fakes.code_assist import rpc_error

ERROR_INFO = "type.googleapis.com/google.rpc.ErrorInfo"


def forbidden(
    message: str = "m", reason: str | None = None, meta: dict | None = None, extra: list | None = None
) -> bytes:
    details = list(extra or [])
    if reason:
        details.append({"@type": ERROR_INFO, "reason": reason, "metadata": meta or {}})
    return json.dumps(rpc_error(403, message, "PERMISSION_DENIED", details)).encode()


def test_validation_required_names_the_link():
    help_link = {
        "@type": "type.googleapis.com/google.rpc.Help",
        "links": [{"description": "verify", "url": "https://accounts.google.com/verify?x=1"}],
    }
    error = classify(403, forbidden(reason="VALIDATION_REQUIRED", extra=[help_link]))
    assert isinstance(error, AccountUnusable) and "https://accounts.google.com/verify?x=1" in error.message
    meta = classify(403, forbidden(reason="VALIDATION_REQUIRED", meta={"validation_link": "https://v.example"}))
    assert "https://v.example" in meta.message


@pytest.mark.parametrize(
    "message,needle",
    [
        ("This client is no longer supported for Gemini Code Assist for individuals.", "no longer serves"),
        ("Cloud Code Private API has not been used in project 123 before or it is disabled.", "enable it"),
        ("User location is not supported for the API use.", "refused access"),
    ],
)
def test_forbidden_variants_are_account_unusable(message, needle):
    error = classify(403, forbidden(message))
    assert isinstance(error, AccountUnusable) and needle in error.message


def test_service_disabled_names_the_gemini_for_google_cloud_api():
    error = classify(403, forbidden("denied", reason="SERVICE_DISABLED"))
    assert isinstance(error, AccountUnusable) and "Gemini for Google Cloud API" in error.message


def test_other_forbidden_rotates():
    assert type(classify(403, forbidden("The caller does not have permission"))) is PermissionDenied


def test_401_is_a_rejected_access_token():
    error = classify(401, json.dumps(rpc_error(401, "bad token", "UNAUTHENTICATED")))
    assert isinstance(error, UpstreamAuthError) and error.message.startswith("Google rejected the access token")


def test_messages_name_code_assist():
    rate = classify(429, json.dumps(rpc_error(429, "slow", "RESOURCE_EXHAUSTED")))
    assert isinstance(rate, RateLimited) and rate.message.startswith("Code Assist rate limit hit")
    quota = classify(
        429,
        json.dumps(rpc_error(429, "gone", "RESOURCE_EXHAUSTED", [{"@type": ERROR_INFO, "reason": "QUOTA_EXHAUSTED"}])),
    )
    assert isinstance(quota, QuotaExhausted) and quota.message.startswith("The Code Assist quota of this account")
