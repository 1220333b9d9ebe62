"""redact_body's fast path: a body whose keys name no secret field is returned as it is, without the
per-line parse; whatever the body, the answer is the one the full parse gives."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from llmbridge import redact
from llmbridge.redact import SECRETS, redact_body, register_secret

KEYS = st.sampled_from(
    ["content", "model", "usage", "prompt_tokens", "api_key", "Access-Token", "key", "token", "x", ":token", 'a"b']
)
PIECES = [*'ab :"\\\n{}/', "sk-fast-path-secret", "é", "\u2028", "token"]
TEXT = st.lists(st.sampled_from(PIECES), max_size=12).map("".join)
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | TEXT,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(KEYS, children, max_size=3),
    max_leaves=12,
)


@pytest.fixture(autouse=True)
def one_registered_secret():
    register_secret("sk-fast-path-secret")
    yield
    SECRETS.clear()


def slow_redact_body(raw: bytes, monkeypatch: pytest.MonkeyPatch) -> bytes:
    with monkeypatch.context() as patched:
        patched.setattr(redact, "_may_name_secret_fields", lambda text: True)
        return redact_body(raw)


def framings(value: object) -> list[bytes]:
    compact = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    spaced = json.dumps(value, ensure_ascii=True)
    sse = f"data: {compact}\n\ndata: {spaced}\n\ndata: [DONE]\n\n"
    return [compact.encode(), spaced.encode(), sse.encode(), f"{compact}\n{spaced}\n".encode()]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(JSON)
def test_the_fast_path_answers_as_the_full_parse_does(monkeypatch, value):
    for raw in framings(value):
        assert redact_body(raw) == slow_redact_body(raw, monkeypatch), raw


def test_a_body_naming_no_secret_field_comes_back_as_the_same_bytes(monkeypatch):
    raw = b'data: {"choices":[{"delta":{"content":"say \\"token\\": yes\\n"}}],"usage":{"prompt_tokens":3}}\n\n'
    calls = []
    monkeypatch.setattr(redact, "_redact_json_text", lambda text: calls.append(text))
    assert redact_body(raw) is raw or redact_body(raw) == raw
    assert calls == []  # never parsed


@pytest.mark.parametrize(
    "raw",
    [
        b'{"api_key":"v"}',
        b'data: {"x":{"access-token":"v"}}\n\n',
        b'{"k\\u0065y":"v"}',  # a key spelled with an escape
        b'{"content":"sk\\u002dfast-path-secret"}',  # a registered secret spelled with an escape
        b'[{"Key" : "v"}]',
    ],
)
def test_secret_fields_and_disguised_secrets_are_still_replaced(raw):
    assert b"[redacted]" in redact_body(raw)
