"""Kiro error bodies -> the bridge's error tree (samples: replay/samples/kiro/kiro-error-bodies.txt).

Kiro answers errors as JSON `{"message", "reason", "__type"}` (any of them may be missing or null) or,
for token problems, as plain text. The `reason` code decides first, then `__type`, then the status.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, Mapping

from llmbridge.errors import (
    AccountUnusable,
    BridgeError,
    CapacityExhausted,
    ContextTooLong,
    ModelNotFound,
    QuotaExhausted,
    RateLimited,
    UpstreamAuthError,
    UpstreamBadRequest,
    UpstreamError,
    UpstreamTimeout,
    UpstreamUnavailable,
)

SUSPENDED_HINT = (
    "Kiro has suspended this account. Kiro flags accounts whose credentials are used through "
    "third-party proxies (kirodotdev/Kiro#8276); contact Kiro support to unlock it. Upstream said: "
)

QUOTA_REASONS = frozenset({"MONTHLY_REQUEST_COUNT", "OVERAGE_REQUEST_LIMIT_EXCEEDED"})


def seconds_until_next_month(now: datetime | None = None) -> float:
    """Seconds from `now` (UTC) to 00:00 UTC on the 1st of the next month (Kiro's quota reset)."""
    now = now or datetime.now(UTC)
    year, month = (now.year + 1, 1) if now.month == 12 else (now.year, now.month + 1)
    return max(0.0, (datetime(year, month, 1, tzinfo=UTC) - now).total_seconds())


def parse_retry_after(headers: Mapping[str, str] | None) -> float | None:
    if not headers:
        return None
    value = next((v for k, v in headers.items() if k.lower() == "retry-after"), None)
    if value is None:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - time.time())


def parse_body(body: bytes | str) -> tuple[str, str | None, str | None]:
    """(message, reason, __type short name) from an error body, JSON or plain text."""
    text = body.decode("utf-8", "replace") if isinstance(body, (bytes, bytearray)) else body
    text = text.strip()
    try:
        data: Any = json.loads(text) if text else None
    except json.JSONDecodeError:
        data = None
    if not isinstance(data, dict):
        return text, None, None
    message = data.get("message") or data.get("Message") or text
    reason = data.get("reason") or None
    type_name = data.get("__type") or None
    if isinstance(type_name, str):
        type_name = type_name.rsplit("#", 1)[-1]
    return str(message), (str(reason) if reason else None), type_name


def classify(status: int, body: bytes | str, headers: Mapping[str, str] | None = None) -> BridgeError:
    """The BridgeError for a failed HTTP response (status, body and headers as received)."""
    message, reason, type_name = parse_body(body)
    retry_after = parse_retry_after(headers)
    lower = message.lower()
    code = reason or type_name
    shown = f"Kiro: {message}" + (f" ({reason})" if reason else "")

    if reason in QUOTA_REASONS or type_name == "ServiceQuotaExceededException" or status == 402:
        return QuotaExhausted(shown, retry_after=seconds_until_next_month(), code=code)
    if reason == "CONTENT_LENGTH_EXCEEDS_THRESHOLD" or "input is too long" in lower:
        return ContextTooLong(shown, code=code)
    if reason == "INVALID_MODEL_ID":
        return ModelNotFound(shown, code=code)
    if reason == "INSUFFICIENT_MODEL_CAPACITY":
        return CapacityExhausted(shown, retry_after=retry_after, code=code)
    if type_name == "ThrottlingException" or status == 429:
        return RateLimited(shown, retry_after=retry_after, code=code)
    if "temporarily is suspended" in lower or "locked your account" in lower:
        return AccountUnusable(SUSPENDED_HINT + message, code=code or "ACCOUNT_SUSPENDED")
    if status == 401 or (
        status == 403 and ("bearer token" in lower or "token" in lower or "expired" in lower or "unauthorized" in lower)
    ):
        return UpstreamAuthError(shown, code=code, status=status)
    if status == 403:
        # AccessDeniedException (FEATURE_NOT_SUPPORTED, missing profile, ...): not this request's
        # fault and not fixed by a refresh; another account may serve it.
        return UpstreamError(shown, code=code, status=403)
    if status == 400 or status == 413 or status == 422:
        # "Improperly formed request." / REQUEST_BODY_INVALID / ValidationException: our translation
        # was rejected; retrying on another account would fail the same way.
        return UpstreamBadRequest(shown, code=code)
    if status == 504:
        return UpstreamTimeout(shown, code=code)
    if status == 503:
        return CapacityExhausted(shown, retry_after=retry_after, code=code)
    return UpstreamUnavailable(f"Kiro answered HTTP {status}: {message[:500]}", code=code, retry_after=retry_after)


def classify_exception_frame(exception_type: str, payload: bytes) -> BridgeError:
    """A mid-stream `:message-type: exception` frame, classified like the matching HTTP error."""
    message, reason, _ = parse_body(payload)
    short = exception_type.rsplit("#", 1)[-1]
    status = {
        "ThrottlingException": 429,
        "ValidationException": 400,
        "ServiceQuotaExceededException": 402,
        "AccessDeniedException": 403,
        "ResourceNotFoundException": 400,
    }.get(short, 500)
    body = json.dumps({"message": message or short, "reason": reason, "__type": short})
    return classify(status, body)
