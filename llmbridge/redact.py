"""Removes secrets by structure before anything is logged, recorded or exported.

Structure, not regexes over raw bytes: we know where secrets live (auth headers, `key=` query
parameters, token/key/secret fields of JSON bodies), so we remove exactly those.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

REDACTED = "[redacted]"
SECRET_HEADERS = frozenset({
    "authorization", "proxy-authorization", "x-api-key", "x-goog-api-key", "api-key", "cookie",
    "set-cookie", "x-amz-security-token",
})
SECRET_QUERY = frozenset({"key", "api_key", "access_token", "token"})
# JSON fields whose values are secrets, compared case-insensitively with `_`/`-` removed.
SECRET_FIELDS = frozenset({
    "accesstoken", "refreshtoken", "idtoken", "apikey", "clientsecret", "authorization", "password",
    "secret", "token", "key", "devicecode", "codeverifier", "xapikey", "xgoogapikey",
})


def _norm(name: str) -> str:
    return name.lower().replace("_", "").replace("-", "")


def is_secret_field(name: str) -> bool:
    return _norm(name) in SECRET_FIELDS


def redact_headers(headers: Any) -> dict[str, str]:
    """A plain dict of the headers with secret values replaced."""
    items = headers.items() if hasattr(headers, "items") else headers
    return {k: (REDACTED if k.lower() in SECRET_HEADERS else v) for k, v in items}


def redact_url(url: str) -> str:
    parts = urlsplit(url)
    if not parts.query:
        return url
    query = [(k, REDACTED if k.lower() in SECRET_QUERY else v) for k, v in parse_qsl(parts.query, True)]
    return urlunsplit(parts._replace(query=urlencode(query, safe="[]")))


def redact_json(value: Any) -> Any:
    """A copy of a JSON value with secret fields replaced (the caller's value is not changed)."""
    if isinstance(value, dict):
        return {k: (REDACTED if is_secret_field(k) and isinstance(v, str) and v else redact_json(v))
                for k, v in value.items()}
    if isinstance(value, list):
        return [redact_json(v) for v in value]
    return value
