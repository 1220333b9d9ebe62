"""Classifies Code Assist failures: the shared Google rules (`llmbridge.providers.google.errors`),
with messages naming Code Assist, plus the 403s particular to Code Assist accounts:

* VALIDATION_REQUIRED: Google wants the account verified; the message carries the link to open;
* the project's Gemini for Google Cloud API is disabled (enable it, or drop `project`);
* "no longer supported": Google no longer serves this account through the Gemini CLI.

All three are AccountUnusable, as the shared rules would also say; only the advice is particular.
"""

from __future__ import annotations

from typing import Any

from llmbridge.errors import AccountUnusable, BridgeError
from llmbridge.providers.google import errors as google

SERVICE = "Code Assist"
RELOGIN_HINT = (
    'log in again with the Gemini CLI (run `gemini` and choose "Login with Google") '
    "or with `llmbridge login gemini-cli`"
)


def classify(http_status: int, body: bytes | str | Any, retry_after_header: str | None = None) -> BridgeError:
    """The bridge error for a failed Code Assist call, with a message a person can act on."""
    return google.classify(http_status, body, retry_after_header, service=SERVICE, specific=_code_assist)


def _code_assist(http_status: int, status: google.GoogleStatus) -> BridgeError | None:
    if http_status != 403:
        return None
    message, low = status.message, status.message.lower()
    code = status.reason or status.status or None
    if status.reason == "VALIDATION_REQUIRED":
        url = status.metadata.get("validation_link") or next(iter(status.links), None)
        where = f" at {url}" if url else ""
        return AccountUnusable(
            f"Google requires this account to be verified: open{where} in a browser, "
            f"complete the check, then retry ({message})",
            code=status.reason,
        )
    if "has not been used in project" in low or "is disabled" in low or status.reason == "SERVICE_DISABLED":
        return AccountUnusable(
            f"The Google Cloud project of this account does not have the Gemini for "
            f"Google Cloud API enabled; enable it or remove `project` from the account "
            f"({message})",
            code=code,
        )
    if "no longer supported" in low:
        return AccountUnusable(f"Google no longer serves this account through the Gemini CLI: {message}", code=code)
    return None
