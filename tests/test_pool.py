from __future__ import annotations

import time

import httpx
import pytest

from llmbridge.config import AccountConfig
from llmbridge.errors import AccountUnusable, QuotaExhausted, RateLimited
from llmbridge.pool import AccountPool
from llmbridge.providers.openai_api.provider import OpenAIProvider


def provider(name: str, models=("m",), **extra) -> OpenAIProvider:
    account = AccountConfig(name=name, provider="openai", api_key="k", models=list(models), **extra)
    return OpenAIProvider(account, httpx.AsyncClient())


def test_models_listed_bare_and_pinned():
    pool = AccountPool([provider("a", ("m1",)), provider("b", ("m1", "m2"))])
    assert sorted(m.id for m in pool.models()) == ["m1", "m2", "openai/m1", "openai/m2"]


def test_pin_and_unknown_model():
    pool = AccountPool([provider("a")])
    assert [c.state.name for c in pool.candidates("openai/m")] == ["a"]
    assert pool.candidates("kiro/m") == [] and pool.candidates("other") == []


def test_round_robin_rotates():
    pool = AccountPool([provider("a"), provider("b")], "round-robin")
    firsts = [pool.candidates("m")[0].state.name for _ in range(4)]
    assert firsts == ["b", "a", "b", "a"]


def test_cooldown_dead_and_pacing():
    pool = AccountPool([provider("a", requests_per_minute=1), provider("b")], "fill-first")
    candidates = pool.candidates("m")
    a, b = (c.state for c in candidates)
    pool.report(a, RateLimited("slow", retry_after=30))
    chosen, _ = pool.pick(candidates, set())
    assert chosen.state is b
    pool.report(b, AccountUnusable("suspended"))
    chosen, wait = pool.pick(candidates, set())
    assert chosen is None and 29 < wait <= 30
    assert "dead: suspended" in pool.summary(candidates)


def test_requests_per_minute_pacing_waits():
    pool = AccountPool([provider("a", requests_per_minute=1)])
    candidates = pool.candidates("m")
    state = candidates[0].state
    pool.acquire(state)
    pool.release(state)
    chosen, wait = pool.pick(candidates, set())
    assert chosen is None and 59 < wait <= 60


@pytest.mark.parametrize("error,minimum", [(QuotaExhausted("daily"), 3000), (RateLimited("x"), 25)])
def test_default_cooldowns(error, minimum):
    pool = AccountPool([provider("a")])
    state = pool.states[0]
    pool.report(state, error)
    assert state.cooling_until - time.time() > minimum


def test_a_model_id_with_a_slash_is_served_as_it_is():
    pool = AccountPool([provider("vllm", ("openai/gpt-oss-20b",))])
    assert [c.upstream_model for c in pool.candidates("openai/gpt-oss-20b")] == ["openai/gpt-oss-20b"]
    assert [c.upstream_model for c in pool.candidates("openai/openai/gpt-oss-20b")] == ["openai/gpt-oss-20b"]


def test_ready_in_is_the_soonest_wait_of_any_account_tried_or_not_and_none_when_all_are_dead():
    pool = AccountPool([provider("a"), provider("b", requests_per_minute=1)], "fill-first")
    candidates = pool.candidates("m")
    a, b = (c.state for c in candidates)
    assert pool.ready_in(candidates) == 0.0
    pool.report(a, RateLimited("slow", retry_after=30))
    pool.acquire(b)
    pool.release(b)
    assert 29 < pool.ready_in(candidates) <= 30  # a's cool-down ends before b's pacing minute does
    pool.report(a, AccountUnusable("suspended"))
    assert 59 < pool.ready_in(candidates) <= 60
    pool.report(b, AccountUnusable("revoked"))
    assert pool.ready_in(candidates) is None


# --- pacing defaults by kind, daily limit -------------------------------------------------------------


def _state(provider: str, **account: object):
    from llmbridge.config import AccountConfig
    from llmbridge.pool import AccountState
    from llmbridge.providers.base import provider_class

    fields: dict[str, object] = {"name": "a", "provider": provider, **account}
    if provider in ("openai", "anthropic", "gemini"):
        fields.setdefault("api_key", "k")
    cls = provider_class(provider)
    instance = cls.__new__(cls)
    instance.account = AccountConfig(**fields)  # type: ignore[arg-type]
    return AccountState(instance)


@pytest.mark.parametrize(
    "provider, limits", [("gemini-cli", (30, 2)), ("kiro", (30, 2)), ("openai", (None, None)), ("gemini", (None, None))]
)
def test_pacing_defaults_by_kind(provider: str, limits: tuple[int | None, int | None]) -> None:
    assert _state(provider).limits() == limits
    assert _state(provider, requests_per_minute=7, max_concurrent=3).limits() == (7, 3)


def test_api_key_accounts_take_any_number_of_requests() -> None:
    state, now = _state("openai"), 1_000_000.0
    for _ in range(500):
        state.count_start(now)
    state.in_flight = 100
    assert state.pacing_wait(now) == 0.0


def test_daily_limit_waits_until_midnight_utc() -> None:
    day = 86400.0
    state, now = _state("openai", daily_limit=2), 20_000 * day + 3600
    state.count_start(now)
    assert state.pacing_wait(now) == 0.0
    state.count_start(now)
    assert state.pacing_wait(now) == pytest.approx(23 * 3600)
    assert "daily limit of 2 requests reached" in state.status(now)
    assert state.pacing_wait(now + 23 * 3600) == 0.0 and state.status(now + 23 * 3600) == "healthy"


def test_asking_whether_a_model_is_served_takes_no_round_robin_turn():
    pool = AccountPool([provider("a"), provider("b")], "round-robin")
    firsts = []
    for _ in range(4):
        assert pool.serves("m") and pool.serves("openai/m") and not pool.serves("kiro/m")
        firsts.append(pool.candidates("m")[0].state.name)
    assert firsts == ["b", "a", "b", "a"]


def test_a_conversation_prefers_the_account_that_answered_it_while_affinity_is_on():
    pool = AccountPool([provider("a"), provider("b"), provider("c")], "fill-first")
    b = pool.states[1]
    pool.answered(b, "conversation")
    assert [c.state.name for c in pool.preferring(pool.candidates("m"), "conversation")] == ["b", "a", "c"]
    assert [c.state.name for c in pool.preferring(pool.candidates("m"), "another")] == ["a", "b", "c"]
    assert pool.status_report()[1]["pinned_conversations"] == 1
    pool.affinity_on = False
    assert [c.state.name for c in pool.preferring(pool.candidates("m"), "conversation")] == ["a", "b", "c"]
