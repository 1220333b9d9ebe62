"""Health probes and background credential refresh, against an OpenAI-compatible upstream made of
an httpx transport: who is probed, what a probe's outcome does to the account, tokens refreshed
before they expire."""

from __future__ import annotations

import asyncio
import time

import httpx

from llmbridge.config import AccountConfig
from llmbridge.errors import AccountUnusable, FirstTokenTimeout, RateLimited
from llmbridge.pool import AccountPool
from llmbridge.probes import HealthProber
from llmbridge.providers.openai_api.provider import OpenAIProvider


class Upstream:
    """`GET /models` that accepts the key once `fixed`; counts the calls."""

    def __init__(self) -> None:
        self.fixed = False
        self.listings = 0

    def __call__(self, request: httpx.Request) -> httpx.Response:
        assert request.method == "GET" and request.url.path == "/v1/models"
        self.listings += 1
        if not self.fixed:
            return httpx.Response(401, json={"error": {"message": "Incorrect API key provided"}})
        return httpx.Response(200, json={"object": "list", "data": [{"id": "m", "object": "model"}]})


class Refreshing(OpenAIProvider):
    """An account whose credentials refresh counts itself, and can be refused."""

    refreshes = 0
    refused = False

    async def refresh_credentials(self, force: bool = False) -> None:
        self.refreshes += 1
        if self.refused:
            raise AccountUnusable("the refresh token was revoked; log in again")


def pool_of(upstream: Upstream, names: tuple[str, ...] = ("a",)) -> AccountPool:
    http = httpx.AsyncClient(transport=httpx.MockTransport(upstream))
    accounts = [
        AccountConfig(name=n, provider="openai", api_key="k", base_url="http://up/v1", models=["m"]) for n in names
    ]
    return AccountPool([Refreshing(account, http) for account in accounts])


def rounds(prober: HealthProber, count: int, gap: float = 0.03) -> None:
    async def run() -> None:
        for _ in range(count):
            await prober.round()
            await asyncio.sleep(gap)

    asyncio.run(run())


def test_a_dead_account_is_probed_each_interval_and_comes_back_when_healthy() -> None:
    upstream = Upstream()
    pool = pool_of(upstream)
    state = pool.states[0]
    pool.report(state, AccountUnusable("the upstream rejected this API key"))
    prober = HealthProber(lambda: pool, interval=0.02)

    rounds(prober, 3)
    assert upstream.listings >= 1 and state.dead_reason is not None
    assert state.probe_result is not None and state.probe_result.startswith("account_unusable")

    upstream.fixed = True
    rounds(prober, 3)
    assert state.state(time.time()) == "healthy" and state.probe_result == "ok" and state.probed_at is not None
    assert pool.status_report()[0]["last_probe"]["result"] == "ok"  # type: ignore[index]


def test_a_rate_limit_is_not_probed_but_a_first_token_timeout_is() -> None:
    upstream = Upstream()
    upstream.fixed = True
    pool = pool_of(upstream, ("limited", "stuck"))
    limited, stuck = pool.states
    pool.report(limited, RateLimited("slow down", retry_after=600))
    pool.report(stuck, FirstTokenTimeout("no first token within 60 s", retry_after=600))

    rounds(HealthProber(lambda: pool, interval=0.02), 3)
    assert limited.probed_at is None and limited.state(time.time()) == "cooling"
    assert stuck.probe_result == "ok" and stuck.state(time.time()) == "healthy"


def test_probes_off_leaves_a_dead_account_alone() -> None:
    upstream = Upstream()
    pool = pool_of(upstream)
    pool.report(pool.states[0], AccountUnusable("revoked"))
    rounds(HealthProber(lambda: pool, interval=0), 3)
    assert upstream.listings == 0 and pool.states[0].dead_reason == "revoked"


def test_credentials_are_refreshed_in_the_background_and_a_refused_refresh_kills_the_account() -> None:
    pool = pool_of(Upstream(), ("a", "b"))
    a, b = pool.states
    assert isinstance(a.provider, Refreshing) and isinstance(b.provider, Refreshing)
    b.provider.refused = True
    prober = HealthProber(lambda: pool, interval=0)
    rounds(prober, 2)
    assert a.provider.refreshes == 1  # once per CREDENTIAL_CHECK, not once per round
    assert b.dead_reason is not None and "log in again" in b.dead_reason
