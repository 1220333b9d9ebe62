"""Removes secrets before anything is logged, recorded, exported or sent to a client.

By structure: we know where secrets live (auth headers, `key=` query parameters, token/key/secret
fields of JSON bodies), so we remove exactly those. And by value: every secret the bridge itself holds
(client API keys, accounts' API keys and client secrets, OAuth access and refresh tokens as they are
loaded and refreshed) is registered with `register_secret`, and each function here also replaces any
occurrence of a registered value wherever it sits, such as an upstream error that echoes the key.
"""

from __future__ import annotations

import json
import re
import threading
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

REDACTED = "[redacted]"
SECRET_HEADERS = frozenset(
    {
        "authorization",
        "proxy-authorization",
        "x-api-key",
        "x-goog-api-key",
        "api-key",
        "cookie",
        "set-cookie",
        "x-amz-security-token",
    }
)
# Any header whose name contains one of these is treated as a secret too (x-csrf-token, x-auth-...).
SECRET_HEADER_WORDS = ("token", "secret", "api-key", "apikey", "password", "authorization", "x-auth")
SECRET_QUERY = frozenset(
    {
        "key",
        "api_key",
        "apikey",
        "access_token",
        "token",
        "refresh_token",
        "id_token",
        "client_secret",
        "x-amz-security-token",
        "x-amz-signature",
        "sig",
        "signature",
        "password",
    }
)
# JSON fields whose values are secrets, compared case-insensitively with `_`/`-` removed.
SECRET_FIELDS = frozenset(
    {
        "accesstoken",
        "refreshtoken",
        "idtoken",
        "apikey",
        "clientsecret",
        "authorization",
        "password",
        "secret",
        "token",
        "key",
        "devicecode",
        "codeverifier",
        "xapikey",
        "xgoogapikey",
        "secretaccesskey",
        "awssecretaccesskey",
        "sessiontoken",
        "awssessiontoken",
        "bearertoken",
        "privatekey",
        "clientassertion",
    }
)
# Token endpoints of the providers' OAuth / SSO flows: their traffic is credential refresh, and is
# never recorded (see `is_credential_url`).
CREDENTIAL_URL_PATTERNS = (
    re.compile(r"^https://oauth2\.googleapis\.com/"),
    re.compile(r"^https://[^/]*\.amazonaws\.com/(token|oidc|device_authorization|client/register)"),
    re.compile(r"^https://oidc\.[^/]+/"),
    re.compile(r"/oauth2?/(token|device)"),
    re.compile(r"/(refreshToken|token/refresh|api/v1/oauth2/token)"),
)
_URL_IN_TEXT = re.compile(r"https?://[^\s'\"<>]+")
_BEARER_IN_TEXT = re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]{8,}")


# Values shorter than this are not registered: replacing every "abc" in every text would mangle it.
MIN_SECRET_LENGTH = 8
# redact_json copies at most this deep; anything deeper is replaced (bodies the bridge parses are
# limited to `max_json_depth` anyway; this keeps a deep upstream body from exhausting the stack).
MAX_REDACT_DEPTH = 256
TOO_DEEP = "[redacted: nested too deep]"


class SecretValues:
    """The secret values the bridge holds, replaced wherever they appear. Thread-safe: the recorder's
    thread reads while the event loop registers refreshed tokens."""

    def __init__(self) -> None:
        self._values: set[str] = set()
        self._lock = threading.Lock()
        self._pattern: re.Pattern[str] | None = None
        self._bytes_pattern: re.Pattern[bytes] | None = None

    def add(self, value: object) -> None:
        if not isinstance(value, str):
            return
        value = value.strip()
        if len(value) < MIN_SECRET_LENGTH:
            return
        forms = {value, quote(value, safe=""), json.dumps(value)[1:-1]}  # as sent, URL-encoded, JSON-escaped
        with self._lock:
            if forms <= self._values:
                return
            self._values |= {f for f in forms if len(f) >= MIN_SECRET_LENGTH}
            ordered = sorted(self._values, key=len, reverse=True)  # the longest form first
            self._pattern = re.compile("|".join(re.escape(v) for v in ordered))
            encoded = (v.encode("utf-8", "surrogateescape") for v in ordered)
            self._bytes_pattern = re.compile(b"|".join(re.escape(v) for v in encoded))

    def clear(self) -> None:
        with self._lock:
            self._values.clear()
            self._pattern = self._bytes_pattern = None

    def __len__(self) -> int:
        return len(self._values)

    def sub(self, text: str) -> str:
        pattern = self._pattern
        return pattern.sub(REDACTED, text) if pattern is not None and text else text

    def sub_bytes(self, data: bytes) -> bytes:
        pattern = self._bytes_pattern
        return pattern.sub(REDACTED.encode(), data) if pattern is not None and data else data


SECRETS = SecretValues()


def register_secret(value: object) -> None:
    """Replace `value` (a key or token the bridge holds) wherever it appears from now on."""
    SECRETS.add(value)


def register_secrets_in(data: Any, depth: int = 0) -> None:
    """Register the values of every secret field of a JSON value (a credential file, a token answer)."""
    if depth > 16:
        return
    if isinstance(data, dict):
        for k, v in data.items():
            if is_secret_field(str(k)):
                register_secret(v)
            register_secrets_in(v, depth + 1)
    elif isinstance(data, list):
        for v in data:
            register_secrets_in(v, depth + 1)


def redact_secrets(text: str) -> str:
    """`text` with every registered secret value replaced (nothing else changed)."""
    return SECRETS.sub(text)


def _norm(name: str) -> str:
    return name.lower().replace("_", "").replace("-", "")


def is_secret_field(name: str) -> bool:
    return _norm(name) in SECRET_FIELDS


def redact_headers(headers: Any) -> dict[str, str]:
    """A plain dict of the headers with secret values replaced."""
    items = headers.items() if hasattr(headers, "items") else headers
    return {k: (REDACTED if is_secret_header(k) else redact_secrets(v)) for k, v in items}


def is_secret_header(name: str) -> bool:
    lowered = name.lower()
    return lowered in SECRET_HEADERS or any(word in lowered for word in SECRET_HEADER_WORDS)


def redact_url(url: str) -> str:
    url = redact_secrets(url)
    parts = urlsplit(url)
    if parts.password:  # https://user:secret@host/
        parts = parts._replace(
            netloc=f"{parts.username}:{REDACTED}@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
        )
    if not parts.query:
        return urlunsplit(parts)
    query = [(k, REDACTED if k.lower() in SECRET_QUERY else v) for k, v in parse_qsl(parts.query, True)]
    return urlunsplit(parts._replace(query=urlencode(query, safe="[]")))


def redact_json(value: Any, _depth: int = 0) -> Any:
    """A copy of a JSON value with secret fields and registered secret values replaced (the caller's
    value is not changed). At most MAX_REDACT_DEPTH levels deep: deeper values are replaced."""
    if _depth > MAX_REDACT_DEPTH:
        return TOO_DEEP
    if isinstance(value, dict):
        return {
            redact_secrets(k): (
                REDACTED if is_secret_field(k) and isinstance(v, str) and v else redact_json(v, _depth + 1)
            )
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [redact_json(v, _depth + 1) for v in value]
    if isinstance(value, str):
        return redact_secrets(value)
    return value


def redact_text(text: str) -> str:
    """Free text such as an error message: URLs in it lose their secret query parameters, and
    `Bearer <token>` loses the token, and registered secret values are replaced. (Error messages of
    HTTP libraries quote the failing URL.)"""
    text = redact_secrets(text)
    text = _URL_IN_TEXT.sub(lambda m: redact_url(m.group(0)), text)
    return _BEARER_IN_TEXT.sub(lambda m: f"{m.group(1)} {REDACTED}", text)


def is_credential_url(url: str) -> bool:
    """True for OAuth / SSO token endpoints: credential refresh traffic, which is never recorded."""
    return any(pattern.search(url) for pattern in CREDENTIAL_URL_PATTERNS)


def redact_body(raw: bytes) -> bytes:
    """Raw HTTP body bytes with secret JSON fields replaced, where the body is JSON, or SSE / NDJSON
    lines of JSON. Anything else (binary event streams) is returned unchanged; bodies that hold no
    secret come back byte for byte, so recorded upstream bytes stay exact for replay. Registered
    secret values are replaced in any body, binary or not."""
    raw = SECRETS.sub_bytes(raw)
    try:
        text = raw.decode()
    except UnicodeDecodeError:
        return raw
    if not _may_name_secret_fields(text):
        return raw  # what parsing would find: no field to replace, and no secret value left
    whole = _redact_json_text(text)
    if whole is not None:
        return whole.encode()
    lines = text.split("\n")
    changed = False
    for i, line in enumerate(lines):
        prefix, _, rest = line.partition("data:") if line.startswith("data:") else ("", "", line)
        redacted = _redact_json_text(rest)
        if redacted is not None and redacted != rest:
            lines[i] = f"{prefix}{'data: ' if line.startswith('data:') else ''}{redacted}"
            changed = True
    return "\n".join(lines).encode() if changed else raw


# A JSON string without escapes followed by a colon: an object's key. Scanning a whole body (JSON, or
# SSE / NDJSON lines of it) with this finds every key whose name holds no backslash and does not
# begin with a colon, which takes in every secret field name (escapes that could spell one are
# caught by `_DISGUISING_ESCAPE`); a match that is not a key only sends the body the slow way.
# (Allowing escapes inside the match makes the scan three times slower.)
_JSON_KEY = re.compile(r'"([^"\\]*)"\s*:')
_DISGUISING_ESCAPE = re.compile(r'\\[^nrt"\\]')


def _may_name_secret_fields(text: str) -> bool:
    """False when parsing the body's JSON could change nothing: no key is a secret field, and no
    escape could decode to a registered secret value (those written plainly are replaced already).
    The per-line parse and copy cost far more than this scan, on the recorder's thread."""
    if _DISGUISING_ESCAPE.search(text):
        return True
    return any(_norm(key) in SECRET_FIELDS for key in set(_JSON_KEY.findall(text)))


def _redact_json_text(text: str) -> str | None:
    """The text with secret fields replaced if it is a JSON object or array, else None.
    Unchanged JSON comes back as the same text."""
    stripped = text.strip()
    if not stripped or stripped[0] not in "[{":
        return None
    try:
        value = json.loads(stripped)
    except (ValueError, RecursionError):
        return None
    redacted = redact_json(value)
    return text if redacted == value else json.dumps(redacted, ensure_ascii=False)
