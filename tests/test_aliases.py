"""Aliases, pins and client-key allow-lists (`llmbridge.aliases`), alone and through the bridge."""

from __future__ import annotations

import asyncio
import json
import tomllib
from types import SimpleNamespace

import httpx
import pytest

from llmbridge.aliases import Routing
from llmbridge.bridge import Bridge, IncomingRequest
from llmbridge.canonical import ModelInfo
from llmbridge.config import AccountConfig, BridgeConfig, ClientKey
from llmbridge.errors import InvalidRequest, ModelNotFound
from llmbridge.pool import AccountPool
from llmbridge.providers.openai_api.provider import OpenAIProvider
from llmbridge.rules import NotAllowed
from tests.bridge_kit import answer, as_openai_answers, streamed, text_stream


class StubProvider:
    """What the pool and the routing read of a provider."""

    def __init__(self, name: str, kind: str, models: list[str]) -> None:
        self.account = SimpleNamespace(name=name)
        self.name = kind
        self._models = models

    def models(self) -> list[ModelInfo]:
        return [ModelInfo(id=m, provider=self.name) for m in self._models]

    def upstream_model(self, model: str) -> str | None:
        return model if model in self._models else None


ACCOUNTS = [
    ("work", "gemini-cli", ["gemini-2.5-pro"]),
    ("home", "gemini-cli", ["gemini-2.5-pro"]),
    ("kiro-1", "kiro", ["claude-sonnet-4-5"]),
    ("vllm", "openai", ["qwen", "openai/gpt-oss-20b"]),
]
CONFIG = """
api_keys = [
  { key = "k-all", label = "all" },
  { key = "k-kiro", label = "kiro-only", providers = ["kiro"] },
  { key = "k-fast", label = "fast-only", models = ["fast", "gemini-*"] },
]
[models."fast"]
target = "kiro/claude-sonnet-4-5"
description = "Claude, quickly"
force = { temperature = 0.2 }
[models."pro"]
target = "gemini-2.5-pro"
defaults = { max_tokens = 2048, reasoning_effort = "high" }
[models."on-work"]
target = "work/gemini-2.5-pro"
[models."nowhere"]
target = "no-such-model"
"""


def setup() -> tuple[Routing, AccountPool]:
    config = BridgeConfig.model_validate(tomllib.loads(CONFIG + accounts_toml()))
    pool = AccountPool([StubProvider(*a) for a in ACCOUNTS], "fill-first")  # type: ignore[misc]
    return Routing.from_config(config, config.client_keys(), pool), pool


def accounts_toml() -> str:
    return "".join(f'\n[[accounts]]\nname = "{n}"\nprovider = "{k}"\n' for n, k, _ in ACCOUNTS)


@pytest.mark.parametrize(
    ("model", "pins", "expected_model", "expected_pins", "alias"),
    [
        ("gemini-2.5-pro", [], "gemini-2.5-pro", [], False),
        ("kiro/claude-sonnet-4-5", [], "kiro/claude-sonnet-4-5", [], False),  # the pool pins the provider
        ("work/gemini-2.5-pro", [], "gemini-2.5-pro", ["work"], False),  # an account name pins the account
        ("openai/gpt-oss-20b", [], "openai/gpt-oss-20b", [], False),  # a provider kind: left to the pool
        ("fast", [], "kiro/claude-sonnet-4-5", [], True),
        ("pro", ["home"], "gemini-2.5-pro", ["home"], True),
        ("on-work", [], "gemini-2.5-pro", ["work"], True),
        ("unknown", ["kiro"], "unknown", ["kiro"], False),
    ],
)
def test_plan_resolution(model, pins, expected_model, expected_pins, alias):
    routing, _ = setup()
    plan = routing.plan(model, "all", pins)
    assert (plan.model, plan.pins, plan.alias is not None, plan.requested) == (
        expected_model,
        expected_pins,
        alias,
        model,
    )


@pytest.mark.parametrize(
    ("target", "pin", "rest"),
    [
        ("/kiro/v1/chat/completions", "kiro", "/v1/chat/completions"),
        (
            "/work/v1beta/models/gemini-2.5-pro:generateContent?alt=sse",
            "work",
            "/v1beta/models/gemini-2.5-pro:generateContent?alt=sse",
        ),
        ("/gemini-cli/v1/messages", "gemini-cli", "/v1/messages"),  # a provider kind without an account is still a name
        ("/v1/chat/completions", None, "/v1/chat/completions"),
        ("/nobody/v1/chat/completions", None, "/nobody/v1/chat/completions"),
        ("/kiro/health", None, "/kiro/health"),
        ("/kiro", None, "/kiro"),
    ],
)
def test_path_prefix(target, pin, rest):
    routing, _ = setup()
    assert routing.split_path(target) == (pin, rest)


def test_header_pins():
    routing, _ = setup()
    assert routing.pins(None, {"x-llmbridge-provider": "kiro"}) == ["kiro"]
    assert routing.pins("work", {"x-llmbridge-provider": "gemini-cli"}) == ["work", "gemini-cli"]
    assert routing.pins("work", {}) == ["work"]
    with pytest.raises(InvalidRequest, match="'kiroo' is not an account name or provider"):
        routing.pins(None, {"x-llmbridge-provider": "kiroo"})


@pytest.mark.parametrize(
    ("model", "key", "pins", "accounts"),
    [
        ("gemini-2.5-pro", "all", [], ["work", "home"]),
        ("gemini-2.5-pro", "all", ["home"], ["home"]),
        ("gemini-2.5-pro", "all", ["gemini-cli"], ["work", "home"]),
        ("gemini-2.5-pro", "all", ["work", "gemini-cli"], ["work"]),
        ("on-work", "all", [], ["work"]),
        ("fast", "kiro-only", [], ["kiro-1"]),
        ("fast", "fast-only", [], ["kiro-1"]),
        ("pro", "fast-only", [], ["work", "home"]),  # its target matches gemini-*
    ],
)
def test_admitted_accounts(model, key, pins, accounts):
    routing, pool = setup()
    plan = routing.plan(model, key, pins)
    admitted = routing.admitted(pool.candidates(plan.model), plan, "/v1/models")
    assert [c.state.name for c in admitted] == accounts


@pytest.mark.parametrize(
    ("model", "key", "pins", "error", "message"),
    [
        ("gemini-2.5-pro", "kiro-only", [], NotAllowed, "may not use the providers that serve"),
        ("gemini-2.5-pro", "kiro-only", ["work"], NotAllowed, "may not use provider 'work'"),
        ("qwen", "fast-only", [], NotAllowed, "may not use model 'qwen'"),
        ("claude-sonnet-4-5", "fast-only", [], NotAllowed, "may not use model"),
        ("gemini-2.5-pro", "all", ["kiro"], ModelNotFound, "is not served by 'kiro'"),
    ],
)
def test_refusals(model, key, pins, error, message):
    routing, pool = setup()
    with pytest.raises(error, match=message) as caught:
        plan = routing.plan(model, key, pins)
        routing.admitted(pool.candidates(plan.model), plan, "/v1/models")
    assert caught.value.status == (403 if error is NotAllowed else 404)


def test_listing_has_aliases_and_only_what_the_key_may_use():
    routing, pool = setup()
    everything = {m.id: m for m in routing.models(pool, "all")}
    assert {"fast", "pro", "on-work", "gemini-2.5-pro", "gemini-cli/gemini-2.5-pro", "kiro/claude-sonnet-4-5"} <= set(
        everything
    )
    assert "nowhere" not in everything  # its target is served by no account
    assert everything["fast"].provider == "kiro" and everything["fast"].display_name == "Claude, quickly"
    kiro_only = {m.id for m in routing.models(pool, "kiro-only")}
    assert kiro_only == {"claude-sonnet-4-5", "kiro/claude-sonnet-4-5", "fast"}
    fast_only = {m.id for m in routing.models(pool, "fast-only")}
    assert fast_only == {"fast", "gemini-2.5-pro", "gemini-cli/gemini-2.5-pro", "pro", "on-work"}
    pinned = {m.id for m in routing.models(pool, "all", ["vllm"])}
    assert pinned == {"qwen", "openai/qwen", "openai/gpt-oss-20b", "openai/openai/gpt-oss-20b"}


def test_alias_parameters_defaults_and_force():
    from llmbridge.canonical import ChatRequest, Message, TextPart

    routing, _ = setup()
    client = ChatRequest(model="pro", messages=[Message(role="user", parts=[TextPart(text="hi")])], max_tokens=10)
    base, notes = routing.plan("pro", None).base_request(client)
    assert (base.model, base.max_tokens, base.reasoning.effort if base.reasoning else None) == (
        "gemini-2.5-pro",
        10,
        "high",
    )
    assert client.model == "pro" and client.reasoning is None  # the client's request is untouched
    fast, _ = routing.plan("fast", None).base_request(client.model_copy(update={"model": "fast", "temperature": 1.5}))
    assert fast.temperature == 0.2
    same, none = routing.plan("gemini-2.5-pro", None).base_request(
        client.model_copy(update={"model": "gemini-2.5-pro"})
    )
    assert none == [] and same.model == "gemini-2.5-pro"


# --- through the bridge (in process, OpenAI-compatible upstreams on httpx mock transports) -------------

KEYS = [
    ClientKey(key="k-all", label="all"),
    ClientKey(key="k-a1", label="a1-only", providers=["a1"]),
    ClientKey(key="k-m", label="m-only", models=["m"]),
]


def two_account_bridge(**config):
    seen: dict[str, list[dict]] = {"a0": [], "a1": []}
    providers = []
    for name in seen:

        def handler(request: httpx.Request, name: str = name) -> httpx.Response:
            body = json.loads(request.content)
            seen[name].append(body)
            return streamed(
                b"data: "
                + json.dumps(
                    {"id": "u", "model": "upstream-name", "choices": [{"index": 0, "delta": {"content": name}}]}
                ).encode()
                + b"\n\n"
                + text_stream("")
            )

        account = AccountConfig(
            name=name, provider="openai", api_key="k", models=["m", "n"], requests_per_minute=1000, max_concurrent=5
        )
        providers.append(
            OpenAIProvider(account, httpx.AsyncClient(transport=httpx.MockTransport(as_openai_answers(handler))))
        )
    pool = AccountPool(providers, "fill-first")
    records: list = []

    async def on_exchange(record):
        records.append(record)

    accounts = [{"name": n, "provider": "openai", "api_key": "k", "models": ["m", "n"]} for n in seen]
    bridge = Bridge(BridgeConfig.model_validate({"accounts": accounts, **config}), pool, KEYS, on_exchange)
    return bridge, seen, records


def chat(path="/v1/chat/completions", key="k-all", model="m", headers=None, **body):
    payload = {"model": model, "messages": [{"role": "user", "content": "hi"}], **body}
    return IncomingRequest(
        "POST", path, {"authorization": f"Bearer {key}", **(headers or {})}, json.dumps(payload).encode()
    )


def test_pins_through_the_bridge():
    async def run():
        bridge, seen, _ = two_account_bridge()
        results = [
            await answer(bridge, chat()),
            await answer(bridge, chat(path="/a1/v1/chat/completions")),
            await answer(bridge, chat(headers={"x-llmbridge-provider": "a1"})),
            await answer(bridge, chat(model="a1/m")),
            await answer(bridge, chat(path="/a0/v1/chat/completions", headers={"x-llmbridge-provider": "a1"})),
            await answer(bridge, chat(headers={"x-llmbridge-provider": "nope"})),
        ]
        return results, {k: len(v) for k, v in seen.items()}

    results, counts = asyncio.run(run())
    texts = [
        json.loads(body)["choices"][0]["message"]["content"] if status == 200 else status for status, body in results
    ]
    assert texts == ["a0", "a1", "a1", "a1", 404, 400]
    assert counts == {"a0": 1, "a1": 3}


def test_allow_lists_through_the_bridge():
    async def run():
        bridge, seen, records = two_account_bridge()
        return [
            await answer(bridge, chat(key="k-a1")),
            await answer(bridge, chat(key="k-a1", path="/a0/v1/chat/completions")),
            await answer(bridge, chat(key="k-m", model="n")),
            await answer(bridge, chat(key="k-m")),
        ], records

    results, records = asyncio.run(run())
    assert [status for status, _ in results] == [200, 403, 403, 200]
    assert json.loads(results[0][1])["choices"][0]["message"]["content"] == "a1"
    error = json.loads(results[2][1])["error"]
    assert error["type"] == "permission_error" and "may not use model 'n'" in error["message"]
    assert records[2].status == 403 and records[2].key_label == "m-only"


def test_alias_listed_answered_under_its_name_and_recorded_as_sent():
    async def run():
        bridge, seen, records = two_account_bridge(
            models={"quick": {"target": "a1/n", "force": {"temperature": 0.1}}},
            system_prompt=[{"mode": "append", "text": "Be brief.", "providers": ["a1"]}],
        )
        listing = await bridge.handle(IncomingRequest("GET", "/v1/models", {"authorization": "Bearer k-all"}, b""))
        one = await bridge.handle(IncomingRequest("GET", "/v1/models/quick", {"authorization": "Bearer k-all"}, b""))
        result = await answer(bridge, chat(model="quick", temperature=0.9))
        streamed_result = await answer(bridge, chat(model="quick", stream=True))
        return listing, one, result, streamed_result, seen, records

    listing, one, (status, body), (_, stream_body), seen, records = asyncio.run(run())
    assert "quick" in [m["id"] for m in json.loads(listing.body)["data"]]
    assert json.loads(one.body)["id"] == "quick"
    assert status == 200 and json.loads(body)["model"] == "quick"  # not the upstream's "upstream-name"
    assert b'"model": "quick"' in stream_body or b'"model":"quick"' in stream_body
    assert b"upstream-name" not in stream_body
    sent = seen["a1"][0]
    assert sent["model"] == "n" and sent["temperature"] == 0.1
    assert sent["messages"][0] == {"role": "system", "content": "Be brief."}
    record = records[0]
    assert record.model_requested == "quick" and json.loads(record.request_raw)["temperature"] == 0.9
    assert record.request_canonical["system"] == [{"type": "text", "text": "Be brief.", "provider_metadata": {}}]
    assert record.request_canonical["rules_applied"] == [
        "model 'quick' -> 'n'",
        "models.quick: temperature 0.9 -> 0.1 (forced)",
        "system_prompt[0]: append",
    ]


def test_an_unreadable_prompt_file_fails_the_request_and_reaches_no_upstream(tmp_path):
    async def run():
        bridge, seen, _ = two_account_bridge(
            system_prompt=[{"mode": "overwrite", "file": str(tmp_path / "missing.md")}]
        )
        return await answer(bridge, chat()), seen

    (status, body), seen = asyncio.run(run())
    assert status == 500 and "missing.md cannot be read" in json.loads(body)["error"]["message"]
    assert seen == {"a0": [], "a1": []}


def test_token_counts_see_the_request_as_the_account_would_receive_it():
    def count(**config):
        async def run():
            bridge, _, _ = two_account_bridge(**config)
            body = {"model": "m", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]}
            incoming = IncomingRequest(
                "POST", "/v1/messages/count_tokens", {"x-api-key": "k-all"}, json.dumps(body).encode()
            )
            response = await bridge.handle(incoming)
            return json.loads(response.body)["input_tokens"]

        return asyncio.run(run())

    long_prompt = "Answer in the house style. " * 50
    assert count(system_prompt=[{"mode": "append", "text": long_prompt}]) > count() + 100


def test_rules_and_aliases_are_rebuilt_from_a_new_config_without_a_restart():
    async def run():
        bridge, seen, _ = two_account_bridge()
        first = await answer(bridge, chat(model="quick"))
        config = BridgeConfig.model_validate(
            {
                "accounts": [{"name": n, "provider": "openai", "api_key": "k", "models": ["m", "n"]} for n in seen],
                "models": {"quick": {"target": "a1/n"}},
                "system_prompt": [{"mode": "overwrite", "text": "new rules"}],
            }
        )
        bridge.use_rules(config, [ClientKey(key="k-all", label="all")])
        second = await answer(bridge, chat(model="quick"))
        return first, second, seen

    (first_status, _), (second_status, body), seen = asyncio.run(run())
    assert first_status == 404 and second_status == 200 and json.loads(body)["model"] == "quick"
    assert seen["a1"][0]["messages"][0] == {"role": "system", "content": "new rules"}
