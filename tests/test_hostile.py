"""Unit tests: the linear header scan, the depth scan, and redaction by value (issue 10)."""

from __future__ import annotations

import json
import time

import pytest

from llmbridge.errors import UpstreamBadRequest
from llmbridge.hostile import HeadersTooLarge, json_depth, json_too_deep, scan_headers
from llmbridge.redact import (
    MAX_REDACT_DEPTH,
    REDACTED,
    SECRETS,
    TOO_DEEP,
    redact_body,
    redact_headers,
    redact_json,
    redact_text,
    register_secret,
    register_secrets_in,
)


def test_scan_headers_lowercases_joins_repeats_and_keeps_undecodable_bytes():
    fields = [(b"Authorization", b"Bearer k"), (b"X-A", b"1"), (b"x-a", b"2"), (b"x-api-key", b"sk-\xff")]
    headers = scan_headers(fields, 10, 1000)
    assert headers["authorization"] == "Bearer k" and headers["x-a"] == "1, 2"
    assert headers["x-api-key"].encode("utf-8", "surrogateescape") == b"sk-\xff"


@pytest.mark.parametrize(("count", "size"), [(201, 10), (10, 70_000)])
def test_scan_headers_refuses_past_either_limit(count, size):
    fields = [(b"x-h%d" % i, b"v" * (size // count)) for i in range(count)]
    with pytest.raises(HeadersTooLarge) as info:
        scan_headers(fields, 200, 64 * 1024)
    assert info.value.status == 431 and "max_header_count" in info.value.message


def test_scan_headers_is_linear():
    fields = [(b"x-h%d" % i, b"%d" % i) for i in range(100_000)]
    started = time.perf_counter()
    scan_headers(fields, 10**6, 10**9)
    assert time.perf_counter() - started < 1.0


@pytest.mark.parametrize(
    ("text", "depth"),
    [
        (b"1", 0),
        (b"[]", 1),
        (b'{"a":[1,{"b":[]}]}', 4),
        (b'{"a":"[[[[{{{{"}', 1),  # brackets inside strings do not count
        (b'["\\"[[[", "\\\\", [[]]]', 3),  # escaped quotes and backslashes
        (b"[[]][[[]]]", 3),
    ],
)
def test_json_depth(text, depth):
    assert json_depth(text) == depth
    if depth and text.startswith((b"[", b"{")) and b"][" not in text:
        assert json_depth(text) == _parsed_depth(json.loads(text))


def _parsed_depth(value) -> int:
    if isinstance(value, dict):
        return 1 + max((_parsed_depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((_parsed_depth(v) for v in value), default=0)
    return 0


def test_json_too_deep_is_fast_on_hostile_bodies():
    for body in (b"[" * 1_000_000 + b"]" * 1_000_000, b"[1," * 2_000_000, json.dumps({"m": "x" * 10**7}).encode()):
        started = time.perf_counter()
        json_too_deep(body, 200)
        assert time.perf_counter() - started < 1.0
    assert json_too_deep(b"[" * 201 + b"]" * 201, 200) and not json_too_deep(b"[" * 200 + b"]" * 200, 200)


def test_redact_json_does_not_recurse_without_bound():
    value: list = []
    for _ in range(5000):
        value = [value]
    copied = redact_json(value)
    for _ in range(MAX_REDACT_DEPTH + 1):
        copied = copied[0]
    assert copied == TOO_DEEP


@pytest.fixture
def secrets():
    SECRETS.clear()
    yield
    SECRETS.clear()


def test_registered_values_are_redacted_everywhere(secrets):
    key = "sk-upstream-ECHOED-0001/x"
    register_secret(key)
    register_secret("short")  # too short to register: it would mangle ordinary text
    assert redact_text(f"Incorrect API key provided: {key}.") == f"Incorrect API key provided: {REDACTED}."
    assert redact_text("a short note") == "a short note"
    assert redact_json({"error": {"message": f"bad {key}"}}) == {"error": {"message": f"bad {REDACTED}"}}
    assert redact_headers({"x-echo": key}) == {"x-echo": REDACTED}
    assert key.encode() not in redact_body(b'data: {"error": "' + key.encode() + b'"}\n\n')
    assert key.encode() not in redact_body(b"\x00\x01binary " + key.encode())
    assert "sk-upstream-ECHOED-0001%2Fx" not in redact_text("url?k=sk-upstream-ECHOED-0001%2Fx")  # URL-encoded
    assert UpstreamBadRequest(f"upstream said: {key}").message == f"upstream said: {REDACTED}"


def test_tokens_of_credential_data_are_registered(secrets):
    register_secrets_in({"access_token": "ya29.ACCESS-0002", "nested": {"refreshToken": "REFRESH-0003"}, "x": "plain"})
    assert redact_text("ya29.ACCESS-0002 and REFRESH-0003 and plain") == f"{REDACTED} and {REDACTED} and plain"
