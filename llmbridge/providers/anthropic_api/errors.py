"""Classifies Anthropic API failures (`{"type": "error", "error": {"type", "message"}}`).

400 invalid_request_error   UpstreamBadRequest (ContextTooLong when the prompt is too long;
                            AccountUnusable for a credit balance too low; QuotaExhausted for the
                            organization's own usage limit, until the date the message gives)
401 authentication_error    AccountUnusable: a static key does not get better by retrying
403 permission_error        PermissionDenied (AccountUnusable when the key/org is disabled)
404 not_found_error         ModelNotFound
413 request_too_large       RequestTooLarge
429 rate_limit_error        RateLimited, with the retry-after header
503/529 overloaded_error    CapacityExhausted
other 5xx                   UpstreamUnavailable
"""

from __future__ import annotations

import json
import re
import time
from datetime import datetime, timezone
from typing import Any

from llmbridge.errors import (
    AccountUnusable,
    BridgeError,
    CapacityExhausted,
    ContextTooLong,
    ModelNotFound,
    PermissionDenied,
    QuotaExhausted,
    RateLimited,
    RequestTooLarge,
    UpstreamBadRequest,
    UpstreamTimeout,
    UpstreamUnavailable,
)

# Anthropic's error types and the HTTP status each comes with (used for in-stream error events).
TYPE_STATUS = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "billing_error": 402,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "timeout_error": 504,
    "overloaded_error": 529,
}
DEAD_MARKERS = ("disabled", "revoked", "suspended", "deactivated", "banned")
TOO_LONG_MARKERS = ("prompt is too long", "too many tokens", "context window", "exceeds the maximum")
CREDIT_MARKER = "credit balance is too low"
USAGE_LIMIT_MARKER = "reached your specified api usage limits"
# "You will regain access on 2025-07-01 at 00:00 UTC."
_REGAIN_DATE = re.compile(r"(\d{4}-\d{2}-\d{2})(?:\s+at\s+(\d{1,2}:\d{2}))?")
KEY_HINT = "check the account's api_key (create one at https://console.anthropic.com/settings/keys)"


def parse_error(body: bytes) -> tuple[str, str]:
    """(error type, message) of an Anthropic error body; a body of another shape keeps its text."""
    try:
        value = json.loads(body)
    except ValueError:
        return "", body[:300].decode("utf-8", "replace").strip()
    error = value.get("error") if isinstance(value, dict) else None
    if not isinstance(error, dict):
        return "", body[:300].decode("utf-8", "replace").strip()
    return str(error.get("type") or ""), str(error.get("message") or "")


def retry_seconds(header: str | None) -> float | None:
    try:
        return max(0.0, float(header)) if header else None
    except ValueError:
        return None


def regain_seconds(message: str, now: float | None = None) -> float | None:
    """Seconds until the date (UTC) a usage-limit message says access comes back; None without one."""
    match = _REGAIN_DATE.search(message)
    if not match:
        return None
    try:
        when = datetime.strptime(f"{match.group(1)} {match.group(2) or '00:00'}", "%Y-%m-%d %H:%M")
    except ValueError:
        return None
    return max(0.0, when.replace(tzinfo=timezone.utc).timestamp() - (time.time() if now is None else now))


def classify(status: int, body: bytes, retry_after: str | None = None) -> BridgeError:
    """The bridge error for a failed Anthropic call, with a message a person can act on."""
    kind, message = parse_error(body)
    return classify_parts(status, kind, message or f"HTTP {status}", retry_seconds(retry_after))


def classify_error_object(error: dict[str, Any]) -> BridgeError:
    """An in-stream `error` event's object (no HTTP status: derived from its type)."""
    kind = str(error.get("type") or "api_error")
    return classify_parts(TYPE_STATUS.get(kind, 500), kind, str(error.get("message") or kind), None)


def classify_parts(status: int, kind: str, message: str, delay: float | None) -> BridgeError:
    low = message.lower()
    code = kind or None
    if status == 401:
        return AccountUnusable(f"Anthropic rejected this API key; {KEY_HINT} ({message})", code=code)
    if status == 402 or kind == "billing_error":
        return AccountUnusable(
            f"Anthropic refused this account for billing reasons; check the plan and "
            f"credit balance of the key's organization ({message})",
            code=code,
        )
    if status == 403:
        if any(marker in low for marker in DEAD_MARKERS):
            return AccountUnusable(f"Anthropic refused this API key: {message}", code=code)
        return PermissionDenied(f"Anthropic refused this request for this key: {message}", code=code)
    if status == 404:
        return ModelNotFound(f"Anthropic does not know this model or the key may not use it: {message}", code=code)
    if status == 413:
        return RequestTooLarge(f"the request is too large for Anthropic: {message}", code=code)
    if status == 429:
        return RateLimited(f"Anthropic rate limit hit: {message}", code=code, retry_after=delay)
    if status in (503, 529) or kind == "overloaded_error":
        return CapacityExhausted(f"Anthropic is overloaded; retry shortly ({message})", code=code, retry_after=delay)
    if 400 <= status < 500:
        if CREDIT_MARKER in low:
            return AccountUnusable(
                f"Anthropic refused this account: its credit balance is too low; add "
                f"credits to the key's organization ({message})",
                code=code,
            )
        if USAGE_LIMIT_MARKER in low:
            return QuotaExhausted(
                f"this account reached the API usage limit set for its organization ({message})",
                code=code,
                retry_after=regain_seconds(message),
            )
        if any(marker in low for marker in TOO_LONG_MARKERS):
            return ContextTooLong(f"the conversation is too long for this model: {message}", code=code)
        return UpstreamBadRequest(f"Anthropic rejected the request: {message}", code=code)
    if status == 504 or kind == "timeout_error":
        return UpstreamTimeout(f"Anthropic timed out ({message})", code=code)
    return UpstreamUnavailable(f"Anthropic failed with HTTP {status} ({message})", code=code)
