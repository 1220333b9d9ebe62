"""Classifies public Gemini API failures: the shared Google rules (`llmbridge.providers.google.errors`),
with messages naming the Gemini API, plus what is particular to API keys:

* an invalid, expired or blocked key (400 API_KEY_INVALID, 401, 403 API_KEY_* / SERVICE_DISABLED) is
  AccountUnusable: a static key does not get better by retrying or refreshing; check the key.
"""

from __future__ import annotations

from typing import Any

from llmbridge.errors import AccountUnusable, BridgeError
from llmbridge.providers.google import errors as google

SERVICE = "the Gemini API"
KEY_HINT = "check the account's api_key (create one at https://aistudio.google.com/apikey)"
KEY_REASONS = frozenset(
    {
        "API_KEY_INVALID",
        "API_KEY_EXPIRED",
        "API_KEY_SERVICE_BLOCKED",
        "API_KEY_HTTP_REFERRER_BLOCKED",
        "API_KEY_IP_ADDRESS_BLOCKED",
        "API_KEY_ANDROID_APP_BLOCKED",
        "API_KEY_IOS_APP_BLOCKED",
        "SERVICE_DISABLED",
    }
)


def classify(http_status: int, body: bytes | str | Any, retry_after_header: str | None = None) -> BridgeError:
    return google.classify(http_status, body, retry_after_header, service=SERVICE, specific=_key_error)


def _key_error(http_status: int, status: google.GoogleStatus) -> BridgeError | None:
    message = status.message or f"HTTP {http_status}"
    low = message.lower()
    if status.reason in KEY_REASONS or http_status == 401 or "api key not valid" in low or "api key expired" in low:
        return AccountUnusable(
            f"Google rejected this Gemini API key; {KEY_HINT} ({message})", code=status.reason or status.status or None
        )
    return None
