"""The pool state's SQLite store, and the pool restoring from it: what a restart keeps and what it
clears."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import httpx

from llmbridge.config import AccountConfig
from llmbridge.errors import AccountUnusable, FirstTokenTimeout, RateLimited
from llmbridge.pool import DAY, AccountPool
from llmbridge.pool_state import AccountSnapshot, SqlitePoolStateStore, state_path
from llmbridge.providers.openai_api.provider import OpenAIProvider


def provider(name: str, key: str = "sk-secret-key-value") -> OpenAIProvider:
    return OpenAIProvider(AccountConfig(name=name, provider="openai", api_key=key, models=["m"]), httpx.AsyncClient())


def test_snapshots_are_written_in_the_background_and_loaded_back(tmp_path: Path) -> None:
    store = SqlitePoolStateStore(tmp_path / "state" / "pool_state.db")
    store.save(AccountSnapshot("a", "f1", cooling_until=5.0, cooling_kind="rate_limited", today=3, day=7))
    store.save(AccountSnapshot("a", "f1", dead_reason="revoked"))  # the latest snapshot wins
    store.save(AccountSnapshot("b", "f2"))
    store.forget("b")
    store.close()
    assert (tmp_path / "state" / "pool_state.db").stat().st_mode & 0o777 == 0o600
    loaded = SqlitePoolStateStore(tmp_path / "state" / "pool_state.db").load()
    assert loaded == {"a": AccountSnapshot("a", "f1", dead_reason="revoked")}


def test_the_state_lives_beside_the_database() -> None:
    assert state_path("/data/recordings/bridge.db") == Path("/data/recordings/pool_state.db")


def run_and_restart(tmp_path: Path, break_accounts, providers=None) -> AccountPool:
    """A pool whose accounts `break_accounts` changes, then a new pool from the same store."""
    store = SqlitePoolStateStore(tmp_path / "pool_state.db")
    pool = AccountPool([provider("a"), provider("b"), provider("c")], store=store)
    pool.restore()
    break_accounts(pool)
    store.close()
    restarted = AccountPool(providers or [provider("a"), provider("b"), provider("c")],
                            store=SqlitePoolStateStore(tmp_path / "pool_state.db"))  # fmt: skip
    restarted.restore()
    return restarted


def test_a_restart_keeps_cooldowns_dead_reasons_and_todays_count(tmp_path: Path) -> None:
    def trouble(pool: AccountPool) -> None:
        a, b, c = pool.states
        pool.report(a, RateLimited("slow down", retry_after=600))
        pool.report(b, AccountUnusable("the key was revoked"))
        pool.acquire(c)
        pool.release(c)

    a, b, c = run_and_restart(tmp_path, trouble).states
    assert a.state(time.time()) == "cooling" and 590 < a.cooling_until - time.time() <= 600
    assert a.cooling_kind == "rate_limited"
    assert b.state(time.time()) == "dead" and b.dead_reason == "the key was revoked"
    assert c.state(time.time()) == "healthy" and c.today == 1


def test_expired_cooldowns_and_other_days_counts_are_cleared(tmp_path: Path) -> None:
    def trouble(pool: AccountPool) -> None:
        a, b, _ = pool.states
        a.cooling_until, a.cooling_kind = time.time() - 1, "rate_limited"
        b.day, b.today = int(time.time() // DAY) - 1, 40
        pool.changed(a)
        pool.changed(b)

    a, b, _ = run_and_restart(tmp_path, trouble).states
    assert a.cooling_until == 0.0 and a.cooling_kind is None and b.today == 0


def test_a_changed_account_starts_afresh(tmp_path: Path) -> None:
    def trouble(pool: AccountPool) -> None:
        pool.report(pool.states[0], AccountUnusable("the key was revoked"))

    fixed = [provider("a", key="sk-a-new-key"), provider("b"), provider("c")]
    a = run_and_restart(tmp_path, trouble, fixed).states[0]
    assert a.dead_reason is None


def test_no_secret_reaches_the_store(tmp_path: Path) -> None:
    run_and_restart(tmp_path, lambda pool: pool.report(pool.states[0], FirstTokenTimeout("no first token")))
    with sqlite3.connect(tmp_path / "pool_state.db") as db:
        stored = repr(db.execute("select * from pool_state").fetchall())
    assert "sk-secret-key-value" not in stored and "first_token_timeout" in stored
