"""The kiro provider through open() against the strict fake Kiro."""

from __future__ import annotations

import asyncio
import json
import re
import socket
import uuid
from pathlib import Path

import httpx
import pytest

from llmbridge.accumulate import StreamAccumulator
from llmbridge.canonical import (
    ChatRequest,
    ChatResult,
    ImagePart,
    Message,
    Reasoning,
    TextPart,
    Tool,
    ToolResultPart,
)
from llmbridge.config import AccountConfig
from llmbridge.errors import (
    AccountUnusable,
    ConfigError,
    ModelNotFound,
    RateLimited,
    UpstreamAuthError,
    UpstreamBadRequest,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from llmbridge.providers.base import provider_class
from llmbridge.providers.kiro.credentials import expiry_in
from llmbridge.providers.kiro.provider import KiroProvider
from llmbridge.providers.kiro.request import shorten_tool_name
from llmbridge.redact import REDACTED
from tests.fakes.kiro import (
    ContextUsage,
    Delay,
    FakeKiro,
    HttpError,
    Metering,
    StreamException,
    Text,
    ToolUse,
)

LONG_TOOL = "mcp__filesystem_server__" + "read_multiple_files_with_metadata_" * 2
TOOLS = [
    Tool(
        name="Write",
        description="Write a file",
        parameters={"type": "object", "properties": {"path": {"type": "string"}}},
    ),
    Tool(name=LONG_TOOL, description="Read files"),
]


def user(*parts) -> Message:
    return Message(role="user", parts=[TextPart(text=p) if isinstance(p, str) else p for p in parts])


def assistant(*parts) -> Message:
    return Message(role="assistant", parts=[TextPart(text=p) if isinstance(p, str) else p for p in parts])


def make(fake: FakeKiro, tmp_path: Path, **token) -> tuple[AccountConfig, Path]:
    path = fake.write_token_file(tmp_path / "kiro-auth-token.json", **token)
    acct = AccountConfig(
        name="kiro-1",
        provider="kiro",
        credentials=str(path),
        base_url=fake.base_url,
        token_url=fake.social_refresh_url if fake.auth_method == "social" else fake.idc_token_url,
    )
    return acct, path


async def drain(provider: KiroProvider, request: ChatRequest, chunk_delay: bool = False) -> ChatResult:
    call = await provider.open(request, provider.upstream_model(request.model) or request.model)
    acc = StreamAccumulator("id", request.model)
    try:
        async for data in call.response.aiter_raw():
            call.attempt.response_body.extend(data)
            acc.feed_all(call.decoder.feed(data))
        acc.feed_all(call.decoder.close())
    finally:
        await call.aclose()
    return acc.result()


def run(fake: FakeKiro, tmp_path: Path, fn, **token):
    acct, _ = make(fake, tmp_path, **token)

    async def main():
        async with httpx.AsyncClient(timeout=httpx.Timeout(5.0)) as http:
            return await fn(KiroProvider(acct, http))

    return asyncio.run(main())


def test_registry_loads_provider() -> None:
    assert provider_class("kiro") is KiroProvider
    assert KiroProvider.default_credentials == "~/.aws/sso/cache/kiro-auth-token.json"


def test_multi_turn_tool_conversation(tmp_path: Path) -> None:
    short = shorten_tool_name(LONG_TOOL)
    with FakeKiro() as fake:
        fake.enqueue(
            Text("I'll write "),
            Text("it."),
            ToolUse("Write", "tu_1", ['{"path"', ': "a.txt"}']),
            ContextUsage(2.0),
            Metering(0.03),
        )
        fake.enqueue(Text("Now reading."), ToolUse(short, "tu_2", ['{"paths": ["a.txt"]}']))
        fake.enqueue(Text("Done."))
        messages = [user("write a.txt")]

        async def conversation(provider: KiroProvider) -> list[ChatResult]:
            results = []
            for tool_id, output in (("tu_1", "written"), ("tu_2", "contents"), (None, None)):
                result = await drain(
                    provider,
                    ChatRequest(
                        model="claude-sonnet-4-5",
                        messages=list(messages),
                        tools=TOOLS,
                        system=[TextPart(text="SYS")],
                    ),
                )
                results.append(result)
                if tool_id:
                    messages.append(assistant(*result.parts))
                    messages.append(user(ToolResultPart(tool_call_id=tool_id, content=[TextPart(text=output)])))
            return results

        first, second, third = run(fake, tmp_path, conversation)
        assert [r.rejection for r in fake.requests] == [None, None, None], [r.rejection for r in fake.requests]
        assert first.text() == "I'll write it." and first.finish_reason == "tool_calls"
        assert first.tool_calls()[0].arguments == {"path": "a.txt"}
        assert first.usage.estimated and first.usage.input_tokens > 0
        assert second.tool_calls()[0].name == LONG_TOOL  # mapped back
        assert third.text() == "Done." and third.finish_reason == "stop"
        body = fake.requests[2].body["conversationState"]
        assert len(body["history"]) == 4
        assert body["history"][0]["userInputMessage"]["content"].startswith("SYS\n\nwrite a.txt")
        assert body["history"][3]["assistantResponseMessage"]["toolUses"][0]["name"] == short
        assert (
            body["currentMessage"]["userInputMessage"]["userInputMessageContext"]["toolResults"][0]["toolUseId"]
            == "tu_2"
        )
        assert fake.requests[0].body["profileArn"] == fake.profile_arn


def test_headers(tmp_path: Path) -> None:
    with FakeKiro() as fake:

        async def two(provider: KiroProvider):
            await drain(provider, ChatRequest(model="claude-sonnet-4-5", messages=[user("a")]))
            call = await provider.open(ChatRequest(model="claude-haiku-4-5", messages=[user("b")]), "claude-haiku-4.5")
            await call.aclose()
            return call.attempt

        attempt = run(fake, tmp_path, two)
        h1, h2 = (r.headers for r in fake.requests)
        assert h1["authorization"] == "Bearer kiro-access-0"
        assert h1["content-type"] == "application/json" and h1["accept-encoding"] == "identity"
        assert h1["amz-sdk-request"] == "attempt=1; max=3"
        assert h1["x-amzn-codewhisperer-optout"] == "true" and h1["x-amzn-kiro-agent-mode"] == "vibe"
        assert uuid.UUID(h1["amz-sdk-invocation-id"]).version == 4
        assert h1["amz-sdk-invocation-id"] != h2["amz-sdk-invocation-id"]
        machine = re.search(r"KiroIDE-[\d.]+-([0-9a-f]{64})$", h1["x-amz-user-agent"]).group(1)
        assert h1["user-agent"].endswith(machine) and h2["x-amz-user-agent"] == h1["x-amz-user-agent"]
        assert "api/codewhispererstreaming#" in h1["user-agent"]
        assert (
            fake.requests[1].body["conversationState"]["currentMessage"]["userInputMessage"]["modelId"]
            == "claude-haiku-4.5"
        )
        assert attempt.status == 200 and attempt.request_headers["Authorization"] == REDACTED
        assert attempt.url == f"{fake.base_url}/generateAssistantResponse"
        assert json.loads(attempt.request_body)["conversationState"]["currentMessage"]


def test_stale_token_then_forced_refresh(tmp_path: Path) -> None:
    with FakeKiro() as fake:

        async def flow(provider: KiroProvider):
            fake.expire_access_token()
            with pytest.raises(UpstreamAuthError) as info:
                await provider.open(ChatRequest(model="claude-sonnet-4-5", messages=[user("a")]), "claude-sonnet-4.5")
            assert info.value.attempt.status == 403
            assert b"bearer token" in bytes(info.value.attempt.response_body)
            await asyncio.gather(provider.refresh_credentials(force=True), provider.refresh_credentials(force=True))
            await provider.refresh_credentials(force=True)  # rejected token already replaced: no refresh
            return await drain(provider, ChatRequest(model="claude-sonnet-4-5", messages=[user("a")]))

        result = run(fake, tmp_path, flow)
        assert result.text() == "Hello from the fake Kiro."
        assert fake.refresh_count == 1
        assert fake.requests[-1].headers["authorization"] == "Bearer kiro-access-1"


def test_expiring_token_refreshed_before_request_once(tmp_path: Path) -> None:
    with FakeKiro(refresh_delay=0.1) as fake:

        async def many(provider: KiroProvider):
            req = ChatRequest(model="claude-sonnet-4-5", messages=[user("a")])
            return await asyncio.gather(*[drain(provider, req) for _ in range(5)])

        results = run(fake, tmp_path, many, expires_at=expiry_in(300))
        assert all(r.text() == "Hello from the fake Kiro." for r in results)
        assert fake.refresh_count == 1


def test_idc_account_without_profile_arn(tmp_path: Path) -> None:
    with FakeKiro(auth_method="idc") as fake:
        result = run(fake, tmp_path, lambda p: drain(p, ChatRequest(model="claude-opus-4-5", messages=[user("a")])))
        assert result.text() and "profileArn" not in fake.requests[0].body


@pytest.mark.parametrize(
    "error, expected, retry_after",
    [
        (
            HttpError(429, {"message": "slow down", "reason": "USER_REQUEST_RATE_EXCEEDED"}, {"Retry-After": "3"}),
            RateLimited,
            3.0,
        ),
        (
            HttpError(403, "Your User ID (1) temporarily is suspended. We've locked your account."),
            AccountUnusable,
            None,
        ),
        (HttpError(500, {"message": "internal"}), UpstreamUnavailable, None),
    ],
)
def test_http_errors_classified_with_attempt(tmp_path: Path, error, expected, retry_after) -> None:
    with FakeKiro() as fake:
        fake.enqueue(error)

        async def flow(provider: KiroProvider):
            with pytest.raises(expected) as info:
                await provider.open(ChatRequest(model="claude-sonnet-4-5", messages=[user("a")]), "claude-sonnet-4.5")
            return info.value

        err = run(fake, tmp_path, flow)
        assert err.retry_after == retry_after
        assert err.attempt.status == error.status and err.attempt.response_body
        assert err.attempt.error_kind == err.kind


def test_unknown_model_upstream(tmp_path: Path) -> None:
    with FakeKiro() as fake:

        async def flow(provider: KiroProvider):
            assert provider.upstream_model("claude-imaginary-9") is None
            with pytest.raises(ModelNotFound):
                await provider.open(ChatRequest(model="x", messages=[user("a")]), "claude-imaginary-9")

        run(fake, tmp_path, flow)


def test_improperly_formed_is_bad_request(tmp_path: Path) -> None:
    with FakeKiro() as fake:
        fake.enqueue(HttpError(400, {"message": "Improperly formed request.", "reason": None}))

        async def flow(provider: KiroProvider):
            with pytest.raises(UpstreamBadRequest) as info:
                await provider.open(ChatRequest(model="claude-sonnet-4-5", messages=[user("a")]), "claude-sonnet-4.5")
            assert info.value.action == "stop"

        run(fake, tmp_path, flow)


def test_connect_error_and_timeout(tmp_path: Path) -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        dead_port = closed.getsockname()[1]
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)  # accepts connections (kernel backlog) but never answers
    try:
        with FakeKiro() as fake:
            path = fake.write_token_file(tmp_path / "t.json")

            async def flow():
                async with httpx.AsyncClient(timeout=httpx.Timeout(0.3)) as http:
                    req = ChatRequest(model="claude-sonnet-4-5", messages=[user("a")])
                    dead = AccountConfig(
                        name="d",
                        provider="kiro",
                        credentials=str(path),
                        base_url=f"http://127.0.0.1:{dead_port}",
                    )
                    with pytest.raises(UpstreamUnavailable) as info:
                        await KiroProvider(dead, http).open(req, "claude-sonnet-4.5")
                    assert info.value.attempt is not None
                    slow = dead.model_copy(update={"base_url": f"http://127.0.0.1:{silent.getsockname()[1]}"})
                    with pytest.raises(UpstreamTimeout):
                        await KiroProvider(slow, http).open(req, "claude-sonnet-4.5")

            asyncio.run(flow())
    finally:
        silent.close()


def test_thinking_end_to_end(tmp_path: Path) -> None:
    with FakeKiro() as fake:
        fake.enqueue(Text("<think"), Text("ing>Let me see"), Delay(0.01), Text(".</thi"), Text("nking>\n\nHi!"))
        result = run(
            fake,
            tmp_path,
            lambda p: drain(
                p,
                ChatRequest(
                    model="claude-sonnet-4-5",
                    messages=[user("hello")],
                    reasoning=Reasoning(budget_tokens=4000),
                ),
            ),
        )
        assert result.reasoning_text() == "Let me see." and result.text() == "Hi!"
        content = fake.requests[0].body["conversationState"]["currentMessage"]["userInputMessage"]["content"]
        assert content.startswith("<thinking_mode>enabled</thinking_mode><max_thinking_length>4000<")


def test_exception_mid_stream(tmp_path: Path) -> None:
    with FakeKiro() as fake:
        fake.enqueue(Text("par"), StreamException("ThrottlingException", "slow"))
        result = run(fake, tmp_path, lambda p: drain(p, ChatRequest(model="claude-sonnet-4-5", messages=[user("a")])))
        assert result.text() == "par" and result.error.kind == "rate_limited"


def test_image_request_accepted(tmp_path: Path) -> None:
    import base64

    png = base64.b64encode(b"\x89PNG fake").decode()
    with FakeKiro() as fake:
        run(
            fake,
            tmp_path,
            lambda p: drain(p, ChatRequest(model="claude-sonnet-4-5", messages=[user(ImagePart(data=png), "what?")])),
        )
        assert fake.requests[0].rejection is None
        assert fake.requests[0].body["conversationState"]["currentMessage"]["userInputMessage"]["images"]


def test_fake_rejects_bad_structures() -> None:
    from tests.fakes.kiro import validate_body

    good = {
        "conversationState": {
            "chatTriggerType": "MANUAL",
            "conversationId": "c",
            "currentMessage": {"userInputMessage": {"content": "x", "modelId": "m"}},
        }
    }
    assert validate_body(good, needs_profile_arn=False) is None
    cases = {
        "system": {**good["conversationState"], "system": "s"},
        "unknown": {**good["conversationState"], "foo": 1},
        "null": {**good["conversationState"], "agentContinuationId": None},
        "odd history": {**good["conversationState"], "history": [{"userInputMessage": {"content": "a"}}]},
        "two users": {
            **good["conversationState"],
            "history": [{"userInputMessage": {"content": "a"}}, {"userInputMessage": {"content": "b"}}],
        },
        "empty content": {
            **good["conversationState"],
            "currentMessage": {"userInputMessage": {"content": ""}},
        },
        "orphan result": {
            **good["conversationState"],
            "currentMessage": {
                "userInputMessage": {
                    "content": "x",
                    "userInputMessageContext": {
                        "toolResults": [{"toolUseId": "t", "status": "success", "content": [{"text": "r"}]}]
                    },
                }
            },
        },
        "long name": {
            **good["conversationState"],
            "currentMessage": {
                "userInputMessage": {
                    "content": "x",
                    "userInputMessageContext": {
                        "tools": [
                            {
                                "toolSpecification": {
                                    "name": "n" * 65,
                                    "description": "d",
                                    "inputSchema": {"json": {}},
                                }
                            }
                        ]
                    },
                }
            },
        },
        "empty description": {
            **good["conversationState"],
            "currentMessage": {
                "userInputMessage": {
                    "content": "x",
                    "userInputMessageContext": {
                        "tools": [
                            {
                                "toolSpecification": {
                                    "name": "n",
                                    "description": "",
                                    "inputSchema": {"json": {}},
                                }
                            }
                        ]
                    },
                }
            },
        },
    }
    for name, state in cases.items():
        assert validate_body({"conversationState": state}, needs_profile_arn=False), name
    assert validate_body(good, needs_profile_arn=True) == "profileArn missing (social login)"
    assert validate_body({**good, "extra": 1}, needs_profile_arn=False)
    dup_state = {
        **good["conversationState"],
        "history": [
            {"userInputMessage": {"content": "a"}},
            {
                "assistantResponseMessage": {
                    "content": "b",
                    "toolUses": [{"toolUseId": "t", "name": "n", "input": {}}],
                }
            },
            {
                "userInputMessage": {
                    "content": "c",
                    "userInputMessageContext": {
                        "toolResults": [
                            {"toolUseId": "t", "status": "success", "content": [{"text": "r"}]},
                            {"toolUseId": "t", "status": "success", "content": [{"text": "r"}]},
                        ]
                    },
                }
            },
            {"assistantResponseMessage": {"content": "d"}},
        ],
    }
    assert "duplicate" in validate_body({"conversationState": dup_state}, needs_profile_arn=False)


# --- ListAvailableModels -------------------------------------------------------------------------------


def test_a_listing_becomes_the_catalog() -> None:
    from llmbridge.providers.kiro import models

    catalog = models.from_listing(
        {
            "models": [
                {"modelId": "claude-sonnet-4.5", "tokenLimits": {"maxInputTokens": 400_000}},
                {"modelId": "claude-opus-4.7", "modelName": "Claude Opus 4.7"},
                {"modelId": "deepseek-3.2"},
                {"modelId": "auto"},
                {"modelName": "no id"},
                "junk",
            ]
        }
    )
    assert [(m.kiro_id, m.name, m.aliases) for m in catalog] == [
        ("claude-sonnet-4.5", "claude-sonnet-4-5", ("claude-sonnet-4-5-20250929",)),
        ("claude-opus-4.7", "claude-opus-4-7", ()),
        ("deepseek-3.2", "deepseek-3.2", ()),
    ]
    assert catalog[0].context_window == 400_000 and catalog[1].display_name == "Claude Opus 4.7 (Kiro)"
    assert models.kiro_model_id("claude-opus-4-7", catalog) == "claude-opus-4.7"
    assert models.kiro_model_id("claude-opus-4-7") is None  # not in the built-in list
    assert models.from_listing({"models": None}) == () and models.from_listing([]) == ()


def test_client_version_names_the_kiro_release_in_both_user_agents(tmp_path: Path) -> None:
    with FakeKiro() as fake:
        acct, _ = make(fake, tmp_path)
        acct = acct.model_copy(update={"client_version": "0.12.1"})

        async def main() -> None:
            async with httpx.AsyncClient(timeout=httpx.Timeout(5.0)) as http:
                await drain(KiroProvider(acct, http), ChatRequest(model="claude-sonnet-4-5", messages=[user("a")]))

        fake.enqueue(Text("ok"))
        asyncio.run(main())
        headers = fake.requests[0].headers
        assert re.search(r"KiroIDE-0\.12\.1-[0-9a-f]{64}$", headers["x-amz-user-agent"])
        assert "KiroIDE-0.12.1-" in headers["user-agent"]
        with pytest.raises(ConfigError, match="client_version 'latest'"):
            KiroProvider.validate_account(acct.model_copy(update={"client_version": "latest"}))
