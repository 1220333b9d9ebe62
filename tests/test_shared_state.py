"""The Redis-backed shared pool state (`llmbridge.shared_state`) against a real redis-server started
by the test: several `SharedState`s stand for several bridge processes."""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import Any, Awaitable, Callable

import httpx
import pytest

from llmbridge import shared_state
from llmbridge.config import AccountConfig
from llmbridge.errors import RateLimited
from llmbridge.pool import AccountPool, AccountState
from llmbridge.pool_state import AccountSnapshot
from llmbridge.providers.openai_api.provider import OpenAIProvider
from llmbridge.shared_state import SharedState, redact_url
from tests.scaleout_kit import RedisServer


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory):
    with RedisServer(tmp_path_factory.mktemp("redis")) as server:
        yield server


@pytest.fixture
def url(redis_server: RedisServer) -> str:
    import redis

    redis.Redis.from_url(redis_server.url).flushdb()  # each test starts with an empty store
    return redis_server.url


def account_state(name: str = "a", **pacing: Any) -> AccountState:
    account = AccountConfig(name=name, provider="openai", api_key="k", models=["m"], **pacing)
    return AccountState(OpenAIProvider(account, httpx.AsyncClient()))


def run(test: Callable[..., Awaitable[None]], *args: Any) -> None:
    asyncio.run(test(*args))


async def processes(url: str, count: int) -> list[SharedState]:
    states = [SharedState(url) for _ in range(count)]
    for state in states:
        await state.start()
    return states


async def close(*states: SharedState) -> None:
    for state in states:
        await state.aclose()
        state.close()


def test_concurrency_slots_are_shared_and_given_back(url: str) -> None:
    async def scenario() -> None:
        one, two = await processes(url, 2)
        account = account_state(max_concurrent=1)
        assert (await one.claim(account, time.time()))[0] == 0
        wait, _ = await two.claim(account, time.time())
        assert wait > 0  # the other process holds the only slot
        one.release("a")
        await asyncio.sleep(0.1)  # the release is written in the background
        assert (await two.claim(account, time.time()))[0] == 0
        await close(one, two)

    run(scenario)


def test_requests_per_minute_and_daily_count_span_processes(url: str) -> None:
    async def scenario() -> None:
        one, two = await processes(url, 2)
        account = account_state(requests_per_minute=2, max_concurrent=10)
        now = time.time()
        assert await one.claim(account, now) == (0.0, 1)
        assert await two.claim(account, now) == (0.0, 2)
        wait, today = await one.claim(account, now)
        assert 50 < wait <= 60 and today == 2  # until the first start leaves the minute
        await close(one, two)

    run(scenario)


def test_daily_limit_waits_until_midnight_utc(url: str) -> None:
    async def scenario() -> None:
        one, two = await processes(url, 2)
        account = account_state(daily_limit=1, max_concurrent=10)
        now = time.time()
        assert (await one.claim(account, now))[0] == 0
        wait, today = await two.claim(account, now)
        assert today == 1 and wait == pytest.approx((int(now // 86400) + 1) * 86400 - now)
        await close(one, two)

    run(scenario)


def test_a_dead_process_slot_expires_with_its_lease(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shared_state, "LEASE_SECONDS", 0.5)

    async def scenario() -> None:
        crashed, survivor = SharedState(url), SharedState(url)  # `crashed` never renews nor releases
        account = account_state(max_concurrent=1)
        assert (await crashed.claim(account, time.time()))[0] == 0
        assert (await survivor.claim(account, time.time()))[0] > 0
        await asyncio.sleep(0.7)
        assert (await survivor.claim(account, time.time()))[0] == 0
        await close(crashed, survivor)

    run(scenario)


def test_a_running_answer_keeps_its_slot_past_the_lease(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shared_state, "LEASE_SECONDS", 0.6)

    async def scenario() -> None:
        holder, other = await processes(url, 2)  # `holder` renews its lease every 0.2 s
        account = account_state(max_concurrent=1)
        assert (await holder.claim(account, time.time()))[0] == 0
        await asyncio.sleep(1.5)
        assert (await other.claim(account, time.time()))[0] > 0
        await close(holder, other)

    run(scenario)


def test_changes_reach_the_other_processes_and_survive_a_restart(url: str) -> None:
    async def scenario() -> None:
        one, two = await processes(url, 2)
        seen: list[AccountSnapshot] = []
        two.on_remote_change = seen.append
        one.on_remote_change = lambda s: pytest.fail(f"a process received its own change: {s}")
        await asyncio.sleep(0.2)  # both subscribed
        until = time.time() + 60
        snapshot = AccountSnapshot(name="a", fingerprint="f", cooling_until=until, cooling_kind="rate_limited")
        one.save(snapshot)
        for _ in range(50):
            if seen:
                break
            await asyncio.sleep(0.05)
        assert seen == [snapshot]
        assert SharedState(url).load() == {"a": snapshot}  # a process started later
        one.forget("a")
        await asyncio.sleep(0.1)
        assert SharedState(url).load() == {}
        await close(one, two)

    run(scenario)


def test_pools_in_two_processes_share_a_cooldown(url: str) -> None:
    async def scenario() -> None:
        one, two = await processes(url, 2)
        pool_one = AccountPool([account_state("a").provider], store=one, shared=one)
        pool_two = AccountPool([account_state("a").provider], store=two, shared=two)
        await asyncio.sleep(0.2)
        pool_one.report(pool_one.states[0], RateLimited("slow down", retry_after=600))
        for _ in range(50):
            if pool_two.states[0].state(time.time()) == "cooling":
                break
            await asyncio.sleep(0.05)
        assert pool_two.states[0].status(time.time()).startswith("cooling for")
        assert pool_two.pick(pool_two.candidates("m"), set()) == (None, pytest.approx(600, abs=5))
        await close(one, two)

    run(scenario)


def test_affinity_and_the_conversation_secret_are_shared(url: str) -> None:
    async def scenario() -> None:
        one, two = await processes(url, 2)
        assert one.conversation_secret() == two.conversation_secret()
        one.pin("conversation-1", "b", idle_seconds=60)
        await asyncio.sleep(0.1)
        assert await two.pinned("conversation-1") == "b"
        assert await two.pinned("conversation-2") is None
        await close(one, two)

    run(scenario)


def test_refresh_lock_lets_one_process_refresh_at_a_time(url: str) -> None:
    async def scenario() -> None:
        one, two = await processes(url, 2)
        inside: list[str] = []
        overlap: list[bool] = []

        async def refresh(who: SharedState, name: str) -> None:
            async with who.held("/creds/oauth_creds.json"):
                overlap.append(bool(inside))
                inside.append(name)
                await asyncio.sleep(0.3)
                inside.remove(name)

        await asyncio.gather(refresh(one, "one"), refresh(two, "two"))
        assert overlap == [False, False]
        await close(one, two)

    run(scenario)


def test_redis_down_degrades_to_local_state_loudly(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(shared_state, "RETRY_SECONDS", 0.3)

    async def scenario() -> None:
        server = RedisServer(tmp_path / "redis").start()
        state = SharedState(server.url)
        account = account_state(max_concurrent=1)
        assert (await state.claim(account, time.time()))[0] == 0
        server.stop()
        with caplog.at_level(logging.ERROR, logger="llmbridge.shared_state"):
            assert await state.claim(account, time.time()) == (0.0, None)  # granted: the local pacing said yes
            assert await state.claim(account, time.time()) == (0.0, None)
            assert await state.pinned("c") is None
            async with state.held("/creds/file"):  # an unlocked refresh, not a failed request
                pass
        errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
        assert len(errors) == 1, errors  # once per outage
        assert "this process paces, cools and pins its accounts on its own" in errors[0]
        await asyncio.sleep(0.4)
        await state.redis.aclose()
        state.close()

    run(scenario)


def test_a_slot_granted_during_an_outage_does_not_give_back_another_requests_lease(url: str) -> None:
    async def scenario() -> None:
        one, two = await processes(url, 2)
        account = account_state(max_concurrent=1)
        assert (await one.claim(account, time.time()))[0] == 0  # a lease in Redis
        one._down_until = time.monotonic() + 60  # Redis out of reach for `one`
        assert await one.claim(account, time.time()) == (0.0, None)  # granted locally, no lease
        one._down_until = 0.0
        one.release("a")  # the locally granted request ends first
        await asyncio.sleep(0.1)
        assert (await two.claim(account, time.time()))[0] > 0  # the first request still holds its slot
        one.release("a")
        await asyncio.sleep(0.1)
        assert (await two.claim(account, time.time()))[0] == 0
        await close(one, two)

    run(scenario)


def test_an_unreachable_redis_stops_startup_with_what_to_do(tmp_path: Path) -> None:
    from llmbridge.errors import ConfigError

    port = RedisServer(tmp_path).port  # free, nothing listens
    with pytest.raises(ConfigError, match="cannot reach Redis .*apt-get install redis-server") as refused:
        SharedState(f"redis://:hunter2@127.0.0.1:{port}/0").check()
    assert "hunter2" not in str(refused.value)


def test_the_password_never_shows() -> None:
    assert redact_url("redis://:hunter2@cache:6379/0") == "redis://***@cache:6379/0"
    assert redact_url("redis://me:hunter2@cache/1") == "redis://me:***@cache/1"
    assert redact_url("redis://cache:6379/0") == "redis://cache:6379/0"


def test_a_missing_binary_skips_naming_the_package_to_install() -> None:
    from tests.scaleout_kit import require

    with pytest.raises(pytest.skip.Exception, match=r"no-such-server not found: .*apt-get install no-such-package"):
        require("no-such-server", "no-such-package")
