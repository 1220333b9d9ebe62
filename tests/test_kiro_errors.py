"""Every sample Kiro error body classified; models; parameter checks."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from llmbridge.canonical import ChatRequest, Message, ResponseFormat, TextPart, Tool, ToolChoice
from llmbridge.config import AccountConfig
from llmbridge.errors import (
    AccountUnusable,
    CapacityExhausted,
    ContextTooLong,
    InvalidRequest,
    ModelNotFound,
    QuotaExhausted,
    RateLimited,
    UpstreamAuthError,
    UpstreamBadRequest,
    UpstreamUnavailable,
)
from llmbridge.providers.kiro.errors import classify, classify_exception_frame, seconds_until_next_month
from llmbridge.providers.kiro.provider import KiroProvider

SAMPLES = Path(__file__).parents[1] / "replay" / "samples" / "kiro" / "kiro-error-bodies.txt"
EXPECTED = [
    UpstreamBadRequest,
    UpstreamBadRequest,
    UpstreamBadRequest,
    ModelNotFound,
    ContextTooLong,
    ContextTooLong,
    CapacityExhausted,
    QuotaExhausted,
    QuotaExhausted,
    RateLimited,
    UpstreamAuthError,
    AccountUnusable,
]


def sample_lines() -> list[tuple[int, str]]:
    lines = [line for line in SAMPLES.read_text().splitlines() if line and not line.startswith("#")]
    return [(int(line[:3]), line[4:]) for line in lines]


def test_every_sample_body_classified() -> None:
    samples = sample_lines()
    assert len(samples) == len(EXPECTED)
    for (status, body), expected in zip(samples, EXPECTED, strict=True):
        error = classify(status, body.encode(), {"Retry-After": "7"})
        assert type(error) is expected, (status, body, error)


def test_details() -> None:
    bad = classify(400, b'{"message":"Improperly formed request.","reason":null}')
    assert bad.action == "stop" and bad.status == 400
    limited = classify(429, b'{"message":"slow down","reason":"USER_REQUEST_RATE_EXCEEDED"}', {"retry-after": "3"})
    assert limited.retry_after == 3 and limited.code == "USER_REQUEST_RATE_EXCEEDED"
    capacity = classify(429, b'{"message":"busy","reason":"INSUFFICIENT_MODEL_CAPACITY"}', {"Retry-After": "5"})
    assert isinstance(capacity, CapacityExhausted) and capacity.retry_after == 5
    quota = classify(402, b'{"message":"You have reached the limit.","reason":"MONTHLY_REQUEST_COUNT"}')
    assert abs(quota.retry_after - seconds_until_next_month()) < 5
    suspended = classify(403, b"Your User ID (x) temporarily is suspended. We've locked your account.")
    assert "suspended" in suspended.message and "third-party proxies" in suspended.message
    assert suspended.action == "dead"
    assert isinstance(
        classify(403, b'{"message":"The bearer token included in the request is invalid."}'),
        UpstreamAuthError,
    )
    assert isinstance(classify(401, b""), UpstreamAuthError)
    assert isinstance(classify(500, b"oops"), UpstreamUnavailable)
    assert isinstance(classify(400, b'{"message":"x","__type":"a#ServiceQuotaExceededException"}'), QuotaExhausted)


def test_seconds_until_next_month() -> None:
    assert seconds_until_next_month(datetime(2026, 12, 31, 23, 0, tzinfo=UTC)) == 3600
    assert seconds_until_next_month(datetime(2026, 2, 28, 0, 0, tzinfo=UTC)) == 86400


def test_exception_frames() -> None:
    assert isinstance(classify_exception_frame("ThrottlingException", b'{"message":"x"}'), RateLimited)
    assert isinstance(
        classify_exception_frame(
            "ValidationException",
            b'{"message":"Input is too long.","reason":"CONTENT_LENGTH_EXCEEDS_THRESHOLD"}',
        ),
        ContextTooLong,
    )
    assert isinstance(classify_exception_frame("InternalServerException", b'{"message":"x"}'), UpstreamUnavailable)


@pytest.fixture
def provider(tmp_path: Path) -> KiroProvider:
    path = tmp_path / "kiro-auth-token.json"
    path.write_text(
        '{"accessToken":"a","refreshToken":"r","expiresAt":"2099-01-01T00:00:00.000Z",'
        '"authMethod":"social","profileArn":"arn:x","region":"us-east-1"}'
    )
    account = AccountConfig(name="k", provider="kiro", credentials=str(path))
    return KiroProvider(account, httpx.AsyncClient())


@pytest.mark.parametrize(
    "name, kiro_id",
    [
        ("claude-sonnet-4-5", "claude-sonnet-4.5"),
        ("claude-sonnet-4-5-20250929", "claude-sonnet-4.5"),
        ("claude-sonnet-4.5", "claude-sonnet-4.5"),
        ("claude-opus-4-5", "claude-opus-4.5"),
        ("claude-haiku-4-5", "claude-haiku-4.5"),
        ("claude-sonnet-4", "claude-sonnet-4"),
        ("claude-sonnet-4-20250514", "claude-sonnet-4"),
        ("gpt-4o", None),
        ("claude-3-opus", None),
        ("", None),
    ],
)
def test_models(provider: KiroProvider, name: str, kiro_id: str | None) -> None:
    assert provider.upstream_model(name) == kiro_id


def test_model_list_and_restriction(provider: KiroProvider) -> None:
    ids = [m.id for m in provider.models()]
    assert "claude-sonnet-4-5" in ids and "claude-sonnet-4-5-20250929" in ids and "claude-opus-4-5" in ids
    assert all(m.provider == "kiro" for m in provider.models())
    provider.account = provider.account.model_copy(update={"models": ["claude-haiku-4.5"]})
    assert [m.id for m in provider.models()] == ["claude-haiku-4-5", "claude-haiku-4-5-20251001"]
    assert provider.upstream_model("claude-sonnet-4-5") is None
    assert provider.upstream_model("claude-haiku-4-5") == "claude-haiku-4.5"


def req(**kwargs) -> ChatRequest:
    return ChatRequest(model="claude-sonnet-4-5", messages=[Message(role="user", parts=[TextPart(text="x")])], **kwargs)


@pytest.mark.parametrize(
    "kwargs, param",
    [
        ({"stop": ["END"]}, "stop"),
        ({"presence_penalty": 0.5}, "presence_penalty"),
        ({"frequency_penalty": -1}, "frequency_penalty"),
        ({"tools": [Tool(name="a")], "tool_choice": ToolChoice(mode="required")}, "tool_choice"),
        ({"tools": [Tool(name="a")], "tool_choice": ToolChoice(mode="tool", name="a")}, "tool_choice"),
    ],
)
def test_refused_parameters(provider: KiroProvider, kwargs, param) -> None:
    with pytest.raises(InvalidRequest) as info:
        provider.check_request(req(**kwargs))
    assert info.value.param == param


def test_ignored_parameters(provider: KiroProvider) -> None:
    provider.check_request(
        req(
            temperature=0.2,
            top_p=0.9,
            top_k=5,
            seed=1,
            max_tokens=10,
            presence_penalty=0,
            frequency_penalty=0,
            parallel_tool_calls=False,
            response_format=ResponseFormat(type="text"),
        )
    )


def test_structured_output_is_accepted(provider: KiroProvider) -> None:
    """Kiro has no JSON mode; the request builder turns it into an instruction (test_kiro_request)."""
    provider.check_request(req(response_format=ResponseFormat(type="json_schema", json_schema={"type": "object"})))
    provider.check_request(req(response_format=ResponseFormat(type="json_object")))
