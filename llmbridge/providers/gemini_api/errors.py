"""Classifies public Gemini API failures (google.rpc.Status JSON).

The Code Assist classifier (`gemini_cli.errors`) reads the same Status bodies (rate limits, daily
quotas with RetryInfo / QuotaFailure, capacity, context length, location); this module adds what is
particular to API keys and words the messages for this API:

* an invalid, expired or blocked key (400 API_KEY_INVALID, 401, 403 API_KEY_* / SERVICE_DISABLED) is
  AccountUnusable: a static key does not get better by retrying or refreshing; check the key.
"""

from __future__ import annotations

from typing import Any

from llmbridge.canonical import StreamError, StreamEvent
from llmbridge.errors import AccountUnusable, BridgeError
from llmbridge.providers.gemini_cli.decoder import CodeAssistDecoder
from llmbridge.providers.gemini_cli.errors import classify as classify_code_assist
from llmbridge.providers.gemini_cli.errors import parse_status

KEY_HINT = "check the account's api_key (create one at https://aistudio.google.com/apikey)"
KEY_REASONS = frozenset({"API_KEY_INVALID", "API_KEY_EXPIRED", "API_KEY_SERVICE_BLOCKED",
                         "API_KEY_HTTP_REFERRER_BLOCKED", "API_KEY_IP_ADDRESS_BLOCKED",
                         "API_KEY_ANDROID_APP_BLOCKED", "API_KEY_IOS_APP_BLOCKED", "SERVICE_DISABLED"})


def classify(http_status: int, body: bytes | str | Any, retry_after: str | None = None) -> BridgeError:
    status = parse_status(http_status, body)
    message = status.message or f"HTTP {http_status}"
    low = message.lower()
    if status.reason in KEY_REASONS or http_status == 401 or "api key not valid" in low \
            or "api key expired" in low:
        return AccountUnusable(f"Google rejected this Gemini API key; {KEY_HINT} ({message})",
                               code=status.reason or status.status or None)
    return reworded(classify_code_assist(http_status, body, retry_after))


def reworded(error: BridgeError) -> BridgeError:
    """The same classified error, naming this API instead of Code Assist."""
    text = error.message.replace("The Code Assist", "The Gemini API").replace("Code Assist", "the Gemini API")
    text = text[:1].upper() + text[1:]
    return type(error)(text, param=error.param, retry_after=error.retry_after, code=error.code,
                       status=error.status)


class GeminiAPIDecoder(CodeAssistDecoder):
    """The Code Assist decoder reads bare GenerateContentResponse chunks as well as its envelope;
    only in-stream errors are classified with this API's wording."""

    def _error(self, envelope: dict[str, Any]) -> list[StreamEvent]:
        self.failed = True
        error = envelope["error"] if isinstance(envelope["error"], dict) else {"message": str(envelope["error"])}
        classified = classify(int(error.get("code") or 500), {"error": error})
        return [StreamError(kind=classified.kind, message=classified.message, status=classified.status)]
