"""Classifies Google API failures (google.rpc.Status JSON) into the bridge's error tree.

The bodies look like `{"error": {"code", "message", "status", "details": [...]}}` (streaming
endpoints sometimes wrap that object in a one-element list). The details carry what the pool needs:
an ErrorInfo `reason` (RATE_LIMIT_EXCEEDED, QUOTA_EXHAUSTED, ...), a RetryInfo `retryDelay` and
QuotaFailure violations. The thresholds follow the Gemini CLI's own `googleQuotaErrors.ts`: a wait
longer than 5 minutes or a per-day quota id means the daily quota is gone.

Code Assist and the public Gemini API answer with the same Status bodies; each provider's `errors`
module calls `classify` with its service name (used in the messages) and a `specific` rule for what
is its own (OAuth or API key, Code Assist's account checks), tried before the shared rules.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, Callable

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
    UpstreamError,
    UpstreamTimeout,
    UpstreamUnavailable,
)

TERMINAL_DELAY_SECONDS = 300.0
_TYPE_PREFIX = "type.googleapis.com/google.rpc."
_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|h|m|s)")
_UNITS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}
_RESET_IN_MESSAGE = re.compile(r"reset after ([0-9hms.µun]+)")


def parse_duration(text: str) -> float | None:
    """Seconds in a Go/protobuf duration such as "539.477544ms", "13h19m1.2s" or "0.5s"."""
    text = text.strip().rstrip(".,")
    pos, total = 0, 0.0
    for match in _DURATION_PART.finditer(text):
        if match.start() != pos:
            return None
        total += float(match.group(1)) * _UNITS[match.group(2)]
        pos = match.end()
    return total if pos == len(text) and pos > 0 else None


@dataclass
class GoogleStatus:
    """The parts of a google.rpc.Status that matter for classification."""

    code: int
    message: str = ""
    status: str = ""
    reason: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    retry_delay: float | None = None
    quota_ids: list[str] = field(default_factory=list)
    links: list[str] = field(default_factory=list)


def parse_status(http_status: int, body: bytes | str | Any) -> GoogleStatus:
    """Tolerant reader: a body that is not google.rpc.Status JSON keeps its text as the message."""
    error = _error_object(body)
    if error is None:
        text = body.decode("utf-8", "replace") if isinstance(body, bytes) else str(body)
        return GoogleStatus(code=http_status, message=text.strip()[:500])
    status = GoogleStatus(
        code=int(error.get("code") or http_status),
        message=str(error.get("message", "")),
        status=str(error.get("status", "")),
    )
    for detail in error.get("details") or []:
        if isinstance(detail, dict):
            _read_detail(status, detail)
    return status


def _error_object(body: bytes | str | Any) -> dict[str, Any] | None:
    value = body
    if isinstance(body, (bytes, str)):
        try:
            value = json.loads(body)
        except ValueError:
            return None
    if isinstance(value, list) and value:
        value = value[0]
    error = value.get("error") if isinstance(value, dict) else None
    if isinstance(error, dict):
        return error
    return None


def _read_detail(status: GoogleStatus, detail: dict[str, Any]) -> None:
    kind = str(detail.get("@type", "")).removeprefix(_TYPE_PREFIX)
    if kind == "ErrorInfo":
        status.reason = detail.get("reason") or status.reason
        status.metadata.update({k: str(v) for k, v in (detail.get("metadata") or {}).items()})
    elif kind == "RetryInfo" and isinstance(detail.get("retryDelay"), str):
        status.retry_delay = parse_duration(detail["retryDelay"])
    elif kind == "QuotaFailure":
        status.quota_ids += [str(v.get("quotaId", "")) for v in detail.get("violations") or []]
    elif kind == "Help":
        status.links += [str(link.get("url")) for link in detail.get("links") or [] if link.get("url")]


# A provider's own rule: (HTTP status, parsed Status) -> its error, or None for the shared rules.
Specific = Callable[[int, GoogleStatus], BridgeError | None]


def classify(
    http_status: int,
    body: bytes | str | Any,
    retry_after_header: str | None = None,
    service: str = "Google",
    specific: Specific | None = None,
) -> BridgeError:
    """The bridge error for a failed call to `service` ("Code Assist", "the Gemini API"), with a
    message a person can act on."""
    status = parse_status(http_status, body)
    own = specific(http_status, status) if specific else None
    if own is not None:
        return own
    if http_status == 401:
        return UpstreamAuthError(
            f"Google rejected the access token: {status.message or 'unauthenticated'}", code=status.status or None
        )
    if http_status == 403:
        return _forbidden(status)
    if http_status == 429 or status.status == "RESOURCE_EXHAUSTED":
        return _exhausted(status, retry_after_header, service)
    if http_status == 404:
        return ModelNotFound(
            f"{_capital(service)} does not know this model or it is not available to this account: {status.message}",
            code=status.status or None,
        )
    if 400 <= http_status < 500 and http_status != 499:
        return _bad_request(status, service)
    return _server_side(http_status, status, service)


# 403s that say the account itself cannot be used (anything else is about this request or model).
DEAD_REASONS = frozenset(
    {
        "VALIDATION_REQUIRED",
        "SERVICE_DISABLED",
        "UNSUPPORTED_LOCATION",
        "INELIGIBLE_TIER",
        "CONSUMER_INVALID",
        "USER_PROJECT_DENIED",
    }
)
DEAD_PHRASES = (
    "location is not supported",
    "not eligible",
    "ineligible",
    "account has been disabled",
    "account has been suspended",
    "has not been used in project",
    "is disabled",
    "no longer supported",
)


def _forbidden(status: GoogleStatus) -> BridgeError:
    """AccountUnusable (dead) for the known account-level reasons; PermissionDenied (rotate) else."""
    message, low = status.message, status.message.lower()
    code = status.reason or status.status or None
    if status.reason in DEAD_REASONS or any(phrase in low for phrase in DEAD_PHRASES):
        return AccountUnusable(f"Google refused access for this account: {message}", code=code)
    return PermissionDenied(
        f"Google refused this request for this account (another account may be "
        f"allowed): {message or 'permission denied'}",
        code=code,
    )


def _reset_delay(status: GoogleStatus, retry_after_header: str | None) -> float | None:
    if status.retry_delay is not None:
        return status.retry_delay
    if "quotaResetDelay" in status.metadata:
        return parse_duration(status.metadata["quotaResetDelay"])
    found = _RESET_IN_MESSAGE.search(status.message)
    if found and (delay := parse_duration(found.group(1))) is not None:
        return delay
    if retry_after_header and retry_after_header.strip().isdigit():
        return float(retry_after_header)
    return None


def _exhausted(status: GoogleStatus, retry_after_header: str | None, service: str) -> BridgeError:
    delay = _reset_delay(status, retry_after_header)
    reason = status.reason or status.status or None
    if status.reason in ("MODEL_CAPACITY_EXHAUSTED", "MODEL_CAPACITY_EXCEEDED"):
        return CapacityExhausted(
            f"Google has no capacity for this model right now; try another model or retry later ({status.message})",
            retry_after=delay,
            code=reason,
        )
    if status.reason == "INSUFFICIENT_G1_CREDITS_BALANCE":
        return QuotaExhausted(
            f"The Google One AI credits of this account are used up ({status.message})", retry_after=delay, code=reason
        )
    daily = any("PerDay" in q or "Daily" in q for q in status.quota_ids)
    if status.reason == "QUOTA_EXHAUSTED" or daily or (delay is not None and delay > TERMINAL_DELAY_SECONDS):
        when = f"; it resets in {_human(delay)}" if delay is not None else ""
        return QuotaExhausted(
            f"The {service.removeprefix('the ')} quota of this account is used up{when} ({status.message})",
            retry_after=delay,
            code=reason,
        )
    return RateLimited(
        f"{_capital(service)} rate limit hit; retry in {_human(delay or 1.0)} ({status.message})",
        retry_after=delay,
        code=reason,
    )


def _bad_request(status: GoogleStatus, service: str) -> BridgeError:
    message = status.message or "bad request"
    low = message.lower()
    if "exceeds the maximum number of tokens" in low or "input token count" in low:
        return ContextTooLong(f"The conversation is too long for this model: {message}", code=status.status or None)
    if "location is not supported" in low:
        return AccountUnusable(
            f"Google does not serve this account from its location: {message}", code=status.status or None
        )
    return UpstreamBadRequest(f"{_capital(service)} rejected the request: {message}", code=status.status or None)


def _server_side(http_status: int, status: GoogleStatus, service: str) -> BridgeError:
    message = status.message or f"HTTP {http_status}"
    name, code = _capital(service), status.status or None
    if http_status == 503 or status.status == "UNAVAILABLE":
        return CapacityExhausted(
            f"{name} is overloaded or unavailable; retry shortly ({message})", retry_after=status.retry_delay, code=code
        )
    if http_status == 504 or status.status == "DEADLINE_EXCEEDED":
        return UpstreamTimeout(f"{name} timed out ({message})", code=code)
    if http_status >= 500 or http_status == 499:
        return UpstreamUnavailable(f"{name} failed with HTTP {http_status} ({message})", code=code)
    return UpstreamError(f"{name} answered HTTP {http_status} ({message})", code=code)


def _capital(service: str) -> str:
    """The service name at the start of a sentence ("the Gemini API" -> "The Gemini API")."""
    return service[:1].upper() + service[1:]


def _human(seconds: float | None) -> str:
    if seconds is None:
        return "a while"
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 120:
        return f"{seconds:.1f} s"
    hours, rest = divmod(int(seconds), 3600)
    return f"{hours} h {rest // 60} min" if hours else f"{rest // 60} min"
