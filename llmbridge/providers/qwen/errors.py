"""Classifies failed Qwen (portal.qwen.ai / DashScope compatible-mode) answers.

Qwen answers errors in OpenAI's shape, `{"error": {"code", "message", "type"}}` (DashScope's native
shape, `{"code", "message", "request_id"}` at the top level, is read too):

* 401 "invalid access token or token expired": the token is stale (refresh once and retry);
* 429 "Free allocated quota exceeded." (code `insufficient_quota`), or 403/429 `insufficient_quota` /
  `quota_exceeded`: the account's daily free quota is used up; it resets at 00:00 Beijing time
  (UTC+8). Since the free tier ended (2026-04-15) Qwen Code reads this answer as that end;
* 429 `rate_limit_exceeded`: 60 requests a minute; `Retry-After`, else a minute;
* an answer saying the free tier is discontinued: the account is dead, said in plain words;
* 400 with an input-length complaint: the conversation is too long; other 400s: our request;
* 404: the model; 5xx: Qwen itself (503: overloaded).
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
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
    UpstreamAuthError,
    UpstreamBadRequest,
    UpstreamUnavailable,
)

SERVICE = "Qwen"
BEIJING = timezone(timedelta(hours=8))
RATE_LIMIT_WINDOW = 60.0  # Qwen OAuth allows 60 requests a minute
QUOTA_CODES = ("insufficient_quota", "quota_exceeded")
FREE_QUOTA_MESSAGE = "free allocated quota exceeded"
DISCONTINUED_MARKERS = ("discontinued", "free tier has ended", "no longer available")
TOO_LONG_MARKERS = ("input length", "maximum context length", "context length", "too many tokens")
DISCONTINUED_ADVICE = (
    "Qwen ended the Qwen OAuth free tier on 2026-04-15, so this account can no longer serve requests; "
    "remove it, or use a Qwen API key (Model Studio / Coding Plan) through an `openai` account"
)


def classify(status: int, body: bytes, retry_after: str | None = None, now: datetime | None = None) -> BridgeError:
    """The bridge error for a failed Qwen answer, with a message a person can act on."""
    code, message = error_fields(status, body)
    low = f"{code} {message}".lower()
    if any(marker in low for marker in DISCONTINUED_MARKERS) and ("free" in low or "oauth" in low):
        return AccountUnusable(f"{DISCONTINUED_ADVICE} (Qwen said: {message})", code=code or "free_tier_discontinued")
    if status == 401:
        return UpstreamAuthError(f"Qwen rejected the access token: {message}", code=code or None)
    if code in QUOTA_CODES or FREE_QUOTA_MESSAGE in low:
        return _quota(message, code, now)
    if status == 429:
        return RateLimited(
            f"Qwen rate limited this account (60 requests a minute): {message}",
            code=code or "rate_limit_exceeded",
            retry_after=_seconds(retry_after) or RATE_LIMIT_WINDOW,
        )
    if status == 403:
        return PermissionDenied(f"Qwen refused this request for this account: {message}", code=code or None)
    if status == 404:
        return ModelNotFound(f"Qwen does not know the model: {message}", code=code or None)
    if status in (400, 413, 422):
        if any(marker in low for marker in TOO_LONG_MARKERS):
            return ContextTooLong(f"the conversation is too long for this Qwen model: {message}", code=code or None)
        return UpstreamBadRequest(f"Qwen rejected the request: {message}", code=code or None)
    if status in (503, 529):
        return CapacityExhausted(f"Qwen is overloaded: {message}", code=code or None, retry_after=_seconds(retry_after))
    return UpstreamUnavailable(f"Qwen failed with HTTP {status}: {message}", code=code or None)


def _quota(message: str, code: str, now: datetime | None) -> QuotaExhausted:
    reset = next_beijing_midnight(now or datetime.now(timezone.utc))
    wait = (reset - (now or datetime.now(timezone.utc))).total_seconds()
    return QuotaExhausted(
        f"this Qwen account's daily free quota is used up ({message}); it resets at "
        f"{reset.strftime('%Y-%m-%d %H:%M')} UTC (00:00 Beijing time). If it is still refused after that, "
        f"{DISCONTINUED_ADVICE}",
        code=code or "insufficient_quota",
        retry_after=max(wait, 1.0),
    )


def next_beijing_midnight(now: datetime) -> datetime:
    """The next 00:00 in Beijing (UTC+8), in UTC: when Qwen's daily quota resets."""
    local = now.astimezone(BEIJING)
    midnight = (local + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    return midnight.astimezone(timezone.utc)


def error_fields(status: int, body: bytes) -> tuple[str, str]:
    """(code, message) of an error body in OpenAI's or DashScope's shape; the raw text otherwise."""
    try:
        parsed: Any = json.loads(body)
    except ValueError:
        parsed = None
    error = parsed.get("error") if isinstance(parsed, dict) else None
    if isinstance(error, str):
        error = {"message": error}
    if not isinstance(error, dict):
        error = parsed if isinstance(parsed, dict) else {}
    code = str(error.get("code") or error.get("type") or "")
    text = body[:300].decode(errors="replace").strip()
    message = str(error.get("message") or text or f"HTTP {status}")
    return code, message


def _seconds(value: str | None) -> float | None:
    try:
        return max(float(value), 0.0) if value else None
    except ValueError:
        return None
