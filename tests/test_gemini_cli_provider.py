"""GeminiCodeAssistProvider against the strict fake Code Assist server: discovery, open(), 401, 429."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx
import pytest

from llmbridge.accumulate import StreamAccumulator
from llmbridge.canonical import ChatRequest, ChatResult, Message, Reasoning, TextPart, Tool, ToolResultPart
from llmbridge.config import AccountConfig
from llmbridge.errors import (
    AccountUnusable,
    ConfigError,
    InvalidRequest,
    ModelNotFound,
    RateLimited,
    UpstreamAuthError,
    UpstreamBadRequest,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from llmbridge.providers.base import provider_class
from llmbridge.providers.gemini_cli.provider import GeminiCodeAssistProvider
from llmbridge.tokens import estimate_system_and_tools
from tests.fakes.code_assist import (
    FakeCodeAssist,
    cut_reply,
    error_reply,
    midstream_error_reply,
    text_reply,
    tool_call_reply,
)

SAMPLES = Path(__file__).parents[1] / "replay" / "samples" / "gemini-cli"


@pytest.fixture
def fake():
    with FakeCodeAssist() as server:
        yield server


@pytest.fixture
def creds(fake, tmp_path) -> Path:
    path = tmp_path / "oauth_creds.json"
    fake.write_credentials(path)
    return path


def account(fake: FakeCodeAssist, creds: Path, **kw) -> AccountConfig:
    return AccountConfig(
        name="g1", provider="gemini-cli", credentials=str(creds), base_url=fake.base_url, token_url=fake.token_url, **kw
    )


def chat(*messages: Message, model: str = "gemini-2.5-pro", **kw) -> ChatRequest:
    default = [Message(role="user", parts=[TextPart(text="hi")])]
    return ChatRequest(model=model, messages=list(messages) or default, **kw)


async def complete(provider: GeminiCodeAssistProvider, request: ChatRequest) -> ChatResult:
    provider.check_request(request)
    call = await provider.open(request, provider.upstream_model(request.model))
    acc = StreamAccumulator("local", request.model)
    try:
        async for chunk in call.response.aiter_raw():
            call.attempt.response_body += chunk
            acc.feed_all(call.decoder.feed(chunk))
    finally:
        await call.aclose()
    acc.feed_all(call.decoder.close())
    return acc.result()


def with_provider(acc: AccountConfig, body, transport: httpx.AsyncBaseTransport | None = None):
    async def go():
        async with httpx.AsyncClient(transport=transport) as http:
            provider = GeminiCodeAssistProvider(acc, http)
            provider.onboard_poll_interval = 0.01
            return await body(provider)

    return asyncio.run(go())


def test_registry_resolves_the_provider():
    assert provider_class("gemini-cli") is GeminiCodeAssistProvider


def test_success_sends_the_cli_request_and_records_the_attempt(fake, creds):
    fake.enqueue(text_reply("ignored"), text_reply("Hel", "lo!", thoughts=("let me think",), signature="sig-A"))

    async def body(provider):
        request = chat(passthrough_headers={"x-stainless-os": "Linux"})
        call = await provider.open(request, "gemini-2.5-pro")
        await call.aclose()
        return call.attempt, await complete(provider, chat())

    attempt, result = with_provider(account(fake, creds), body)
    sent = fake.calls(":streamGenerateContent")[0]
    assert sent.path == "/v1internal:streamGenerateContent?alt=sse"
    # Gemini CLI 0.61.0's headers, names, values and order; Node's fetch puts host after
    # x-goog-api-client, h11 (under httpx) always writes it first (a documented drift entry)
    assert list(sent.headers) == [
        "host",
        "accept",
        "accept-encoding",
        "authorization",
        "content-length",
        "content-type",
        "user-agent",
        "x-goog-api-client",
        "connection",
    ]
    assert sent.headers["accept"] == "*/*"
    assert sent.headers["accept-encoding"] == "gzip, deflate, br"
    agent = sent.headers["user-agent"]
    assert agent.startswith("GeminiCLI-tui/0.61.0/gemini-2.5-pro (")
    assert agent.endswith("; terminal) google-api-nodejs-client/10.9.0")
    assert sent.headers["x-goog-api-client"].startswith("gl-node/")
    assert sent.headers["connection"] == "keep-alive"
    assert sent.body["project"] == "fake-project-0001"
    assert attempt.status == 200 and attempt.url.endswith(":streamGenerateContent?alt=sse")
    assert attempt.request_headers["authorization"] == "[redacted]"
    assert json.loads(attempt.request_body)["request"]["contents"] == [{"role": "user", "parts": [{"text": "hi"}]}]
    assert result.text() == "Hello!" and result.reasoning_text() == "let me think"
    assert result.parts[0].provider_metadata == {"gemini": {"thought_signature": "sig-A"}}


def test_project_discovery_with_onboarding_polls_and_cache(fake, creds):
    fake.onboarded = False
    fake.onboard_polls = 3

    async def body(provider):
        first = await complete(provider, chat())
        second = await complete(provider, chat())
        return first, second

    first, second = with_provider(account(fake, creds), body)
    assert first.text() and second.text()
    assert len(fake.calls(":loadCodeAssist")) == 1  # cached in memory afterwards
    onboard = fake.calls(":onboardUser")
    assert len(onboard) == 1 and onboard[0].body == {
        "tierId": "free-tier",
        "metadata": {"ideType": "IDE_UNSPECIFIED", "platform": "PLATFORM_UNSPECIFIED", "pluginType": "GEMINI"},
    }
    polls = [r for r in fake.requests if r.method == "GET"]
    assert len(polls) == 3 and polls[0].path.startswith("/v1internal/operations/")
    assert all(b["project"] == "fake-project-0001" for b in fake.generate_requests)


def test_configured_project_skips_discovery(fake, creds):
    with_provider(account(fake, creds, project="fake-project-0001"), lambda p: complete(p, chat()))
    assert not fake.calls(":loadCodeAssist")


def test_ineligible_account_is_unusable_with_googles_reason(fake, creds):
    fake.ineligible_tiers = [
        {
            "reasonCode": "INELIGIBLE_ACCOUNT",
            "tierId": "free-tier",
            "reasonMessage": "This client is no longer supported for Gemini Code Assist for individuals.",
        }
    ]
    with pytest.raises(AccountUnusable) as info:
        with_provider(account(fake, creds), lambda p: complete(p, chat()))
    assert "no longer supported" in info.value.message


def test_401_then_forced_refresh_then_retry(fake, creds):
    fake.revoke_access_tokens()

    async def body(provider):
        with pytest.raises(UpstreamAuthError) as info:
            await provider.open(chat(), "gemini-2.5-pro")
        await provider.refresh_credentials(force=True)
        return info.value, await complete(provider, chat())

    error, result = with_provider(account(fake, creds, project="fake-project-0001"), body)
    assert error.attempt.status == 401 and b"UNAUTHENTICATED" in error.attempt.response_body
    assert result.text() == "Hello from the fake Code Assist."
    assert fake.refresh_count == 1
    assert json.loads(creds.read_text())["access_token"] in fake.access_tokens


def test_five_concurrent_401s_cause_one_refresh(fake, creds):
    fake.revoke_access_tokens()
    fake.token_delay = 0.1

    async def one(provider):
        try:
            await provider.open(chat(), "gemini-2.5-pro")
        except UpstreamAuthError:
            await provider.refresh_credentials(force=True)
        call = await provider.open(chat(), "gemini-2.5-pro")
        await call.aclose()

    async def body(provider):
        await asyncio.gather(*(one(provider) for _ in range(5)))

    with_provider(account(fake, creds, project="fake-project-0001"), body)
    assert fake.refresh_count == 1


def test_expired_token_is_refreshed_before_the_request(fake, tmp_path):
    path = tmp_path / "c.json"
    fake.write_credentials(path, expired=True)
    fake.revoke_access_tokens()  # the expired token really is dead
    with_provider(account(fake, path, project="fake-project-0001"), lambda p: complete(p, chat()))
    assert fake.refresh_count == 1 and fake.requests[0].path == "/token"


def test_429_is_classified_with_retry_delay_and_attempt(fake, creds):
    sample = json.loads((SAMPLES / "gemini-codeassist-429-errors.json").read_text())[0]
    fake.enqueue(error_reply(429, {"error": sample["error"]}))

    with pytest.raises(RateLimited) as info:
        with_provider(account(fake, creds), lambda p: p.open(chat(), "gemini-2.5-pro"))
    error = info.value
    assert error.retry_after == pytest.approx(0.539477544)
    assert error.attempt.status == 429 and b"RATE_LIMIT_EXCEEDED" in error.attempt.response_body
    assert error.attempt.error_kind == "rate_limited"


def test_unknown_model_upstream_is_model_not_found(fake, creds):
    with pytest.raises(ModelNotFound):
        with_provider(account(fake, creds), lambda p: p.open(chat(), "gemini-9-ultra"))


def test_tool_round_trip_on_gemini3_passes_the_strict_server(fake, creds):
    fake.enqueue(
        tool_call_reply("read_file", {"path": "a.py"}, signature="sig-call"),
        tool_call_reply("read_file", {"path": "b.py"}),
        text_reply("done"),
    )
    tools = [
        Tool(
            name="read_file",
            parameters={"type": "object", "additionalProperties": False, "properties": {"path": {"type": "string"}}},
        )
    ]

    async def body(provider):
        history = [Message(role="user", parts=[TextPart(text="read a.py")])]
        for _ in range(3):
            result = await complete(provider, chat(*history, model="gemini-3-pro-preview", tools=tools))
            history.append(Message(role="assistant", parts=result.parts))
            calls = result.tool_calls()
            if not calls:
                return result
            history.append(
                Message(
                    role="user",
                    parts=[ToolResultPart(tool_call_id=c.id, content=[TextPart(text="content")]) for c in calls],
                )
            )

    result = with_provider(account(fake, creds), body)
    assert result.text() == "done"
    last = fake.generate_requests[-1]["request"]["contents"]
    assert last[1]["parts"][0]["thoughtSignature"] == "sig-call"  # the real signature, echoed
    assert last[3]["parts"][0]["thoughtSignature"] == "skip_thought_signature_validator"
    assert last[2]["parts"][0]["functionResponse"]["name"] == "read_file"


def test_strict_server_rejects_unsigned_gemini3_calls(fake, creds):
    bad = {
        "model": "gemini-3-pro-preview",
        "project": "fake-project-0001",
        "request": {
            "contents": [
                {"role": "user", "parts": [{"text": "x"}]},
                {"role": "model", "parts": [{"functionCall": {"name": "f", "args": {}}}]},
                {"role": "user", "parts": [{"functionResponse": {"name": "f", "response": {"output": ""}}}]},
            ]
        },
    }
    problem = fake.check_generate(bad)
    assert problem and problem[0] == 400 and "thought_signature" in problem[1]["error"]["message"]
    assert fake.check_generate({**bad, "extra": 1})[1]["error"]["message"].startswith(
        'Invalid JSON payload received. Unknown name "extra"'
    )


def test_bad_request_from_upstream_stops(fake, creds):
    fake.enqueue(error_reply(400, "Invalid JSON payload received. Unknown name \"foo\" at 'request'"))
    with pytest.raises(UpstreamBadRequest) as info:
        with_provider(account(fake, creds), lambda p: p.open(chat(), "gemini-2.5-pro"))
    assert "Unknown name" in info.value.message and info.value.action == "stop"


def test_cut_stream_and_midstream_error(fake, creds):
    fake.enqueue(
        cut_reply("par", "tial"), midstream_error_reply("a", code=503, message="overloaded", status="UNAVAILABLE")
    )

    async def body(provider):
        return await complete(provider, chat()), await complete(provider, chat())

    cut, failed = with_provider(account(fake, creds), body)
    assert cut.text() == "partial" and cut.error and "cut" in cut.error.message
    assert failed.error and failed.error.status == 503


def test_count_tokens(fake, creds):
    total = with_provider(account(fake, creds), lambda p: p.count_tokens(chat(), "gemini-2.5-pro"))
    assert isinstance(total, int) and total > 0
    assert fake.calls(":countTokens")[0].body["request"]["model"] == "models/gemini-2.5-pro"


def test_count_tokens_adds_system_and_tools(fake, creds):
    tool = Tool(
        name="lookup",
        description="Look a word up in the dictionary " * 20,
        parameters={"type": "object", "properties": {"word": {"type": "string"}}},
    )
    bare = with_provider(account(fake, creds), lambda p: p.count_tokens(chat(), "gemini-2.5-pro"))
    full = chat(system=[TextPart(text="You are a careful assistant. " * 40)], tools=[tool])
    counted = with_provider(account(fake, creds), lambda p: p.count_tokens(full, "gemini-2.5-pro"))
    assert counted == bare + estimate_system_and_tools(full) and counted > bare + 400


def test_connect_error_is_unavailable(creds):
    acc = AccountConfig(
        name="g", provider="gemini-cli", credentials=str(creds), base_url="http://127.0.0.1:9", project="p"
    )
    with pytest.raises(UpstreamUnavailable) as info:
        with_provider(acc, lambda p: p.open(chat(), "gemini-2.5-pro"))
    assert info.value.attempt is not None and info.value.attempt.status is None


def test_timeout_is_upstream_timeout(creds):
    def hang(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("slow", request=request)

    acc = AccountConfig(name="g", provider="gemini-cli", credentials=str(creds), project="p")
    with pytest.raises(UpstreamTimeout):
        with_provider(acc, lambda p: p.open(chat(), "gemini-2.5-pro"), httpx.MockTransport(hang))


def test_models_and_restriction(fake, creds):
    async def listing(provider):
        return provider

    provider = with_provider(account(fake, creds), listing)
    ids = [m.id for m in provider.models()]
    assert "gemini-2.5-pro" in ids and "gemini-3-pro-preview" in ids and "pro" not in ids
    assert provider.upstream_model("gemini-3.5-flash") == "gemini-3-flash"
    assert provider.upstream_model("gpt-4o") is None
    restricted = with_provider(account(fake, creds, models=["gemini-2.5-flash"]), listing)
    assert [m.id for m in restricted.models()] == ["gemini-2.5-flash"]
    assert restricted.upstream_model("gemini-2.5-pro") is None


def test_check_request_judges_a_pinned_model_by_its_bare_name(fake, creds):
    async def check(provider):
        provider.check_request(chat(model="gemini-cli/gemini-2.5-flash", reasoning=Reasoning(effort="none")))
        with pytest.raises(InvalidRequest) as info:
            provider.check_request(chat(model="gemini-cli/gemma-4-31b-it", reasoning=Reasoning(effort="high")))
        return info.value.param

    assert with_provider(account(fake, creds), check) == "reasoning_effort"


def test_validate_account(tmp_path, creds, fake):
    GeminiCodeAssistProvider.validate_account(account(fake, creds))
    with pytest.raises(ConfigError, match="not found"):
        GeminiCodeAssistProvider.validate_account(account(fake, tmp_path / "missing.json"))
    (tmp_path / "empty.json").write_text("{}")
    with pytest.raises(ConfigError, match="no Google OAuth token"):
        GeminiCodeAssistProvider.validate_account(account(fake, tmp_path / "empty.json"))
