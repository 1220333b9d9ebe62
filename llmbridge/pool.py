"""The account pool: which account answers next, and what each one's state is.

Each account is healthy, cooling until a time (rate limit, quota), or dead (suspended, ineligible,
revoked). On top of that an account may be paced: at most `max_concurrent` requests in flight,
`requests_per_minute` started per minute and `daily_limit` per UTC day. Coding-assistant logins are
paced conservatively by default (DEFAULT_PACING), because those providers suspend accounts whose
traffic looks like a proxy's; API-key accounts are not paced unless their account sets it.

The pool also remembers which account answered each conversation (`llmbridge.affinity`) and tries
it first, and hands every change of an account's state to its store (`llmbridge.pool_state`), so a
restart keeps cool-downs, dead reasons and daily counts.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import cached_property
from typing import Literal

from llmbridge.affinity import Affinity
from llmbridge.canonical import ModelInfo
from llmbridge.errors import BridgeError
from llmbridge.pool_state import AccountSnapshot, PoolStateStore
from llmbridge.providers.base import Provider
from llmbridge.shared_state import SharedState

Strategy = Literal["round-robin", "fill-first", "least-busy"]
LONG_COOLDOWN = 3600.0  # when a quota error gives no reset time
DEFAULT_PACING = (30, 2)  # (requests per minute, in flight) for coding-assistant logins
DAY = 86400.0


@dataclass
class AccountState:
    provider: Provider
    cooling_until: float = 0.0
    cooling_kind: str | None = None  # the error kind that started the cool-down
    dead_reason: str | None = None
    last_error: str | None = None
    in_flight: int = 0
    started: deque[float] = field(default_factory=deque)  # start times within the last minute
    day: int = 0  # the UTC day `today` counts (days since the epoch)
    today: int = 0  # requests started that day
    probed_at: float | None = None  # the last health probe (`llmbridge.probes`)
    probe_result: str | None = None

    @property
    def name(self) -> str:
        return self.provider.account.name

    @cached_property
    def fingerprint(self) -> str:
        """Names the account's settings (fixed for a state: a changed account gets a new state);
        stored state applies only to the same settings."""
        return hashlib.sha256(self.provider.account.model_dump_json().encode()).hexdigest()[:16]

    def snapshot(self) -> AccountSnapshot:
        return AccountSnapshot(
            name=self.name,
            fingerprint=self.fingerprint,
            cooling_until=self.cooling_until,
            cooling_kind=self.cooling_kind,
            dead_reason=self.dead_reason,
            last_error=self.last_error,
            day=self.day,
            today=self.today,
            probed_at=self.probed_at,
            probe_result=self.probe_result,
        )

    def restore(self, saved: AccountSnapshot, now: float) -> None:
        """Take the stored state of the same account: a cool-down that has not ended, a dead reason,
        today's count (a count of an earlier day is left behind), the last probe."""
        if saved.cooling_until > now:
            self.cooling_until, self.cooling_kind = saved.cooling_until, saved.cooling_kind
        self.dead_reason, self.last_error = saved.dead_reason, saved.last_error
        if saved.day == int(now // DAY):
            self.day, self.today = saved.day, saved.today
        self.probed_at, self.probe_result = saved.probed_at, saved.probe_result

    @property
    def provider_name(self) -> str:
        return self.provider.name

    def limits(self) -> tuple[int | None, int | None]:
        """(requests per minute, requests in flight): the account's, else its kind's default."""
        account = self.provider.account
        per_minute, in_flight = DEFAULT_PACING if self.provider.paced_by_default() else (None, None)
        return (
            account.requests_per_minute if account.requests_per_minute is not None else per_minute,
            account.max_concurrent if account.max_concurrent is not None else in_flight,
        )

    def count_start(self, now: float) -> None:
        self.started.append(now)
        self._roll_day(now)
        self.today += 1

    def _roll_day(self, now: float) -> None:
        if int(now // DAY) != self.day:
            self.day, self.today = int(now // DAY), 0

    def pacing_wait(self, now: float) -> float:
        """Seconds until this account may start another request (0 = now)."""
        while self.started and now - self.started[0] >= 60:
            self.started.popleft()
        per_minute, in_flight = self.limits()
        daily = self.provider.account.daily_limit
        self._roll_day(now)
        if daily is not None and self.today >= daily:
            return (self.day + 1) * DAY - now  # until midnight UTC
        if in_flight is not None and self.in_flight >= in_flight:
            return 0.05  # a slot frees when a request ends; look again shortly
        if per_minute is not None and len(self.started) >= per_minute:
            return 60 - (now - self.started[0])
        return 0.0

    def state(self, now: float) -> Literal["healthy", "cooling", "dead"]:
        if self.dead_reason:
            return "dead"
        if self.cooling_until > now or self._over_daily_limit(now):
            return "cooling"
        return "healthy"

    def _over_daily_limit(self, now: float) -> bool:
        daily = self.provider.account.daily_limit
        self._roll_day(now)
        return daily is not None and self.today >= daily

    def report(self, now: float) -> dict[str, object]:
        """This account as `GET /llmbridge/status` shows it (no secrets)."""
        per_minute, in_flight = self.limits()
        until = max(self.cooling_until, (self.day + 1) * DAY if self._over_daily_limit(now) else 0.0)
        return {
            "name": self.name,
            "provider": self.provider_name,
            "state": self.state(now),
            "reason": None if self.state(now) == "healthy" else self.status(now),
            "cooling_until": _iso(until) if until > now else None,
            "in_flight": self.in_flight,
            "requests_today": self.today,
            "last_error": self.last_error,
            "last_probe": None if self.probed_at is None else {"at": _iso(self.probed_at), "result": self.probe_result},
            "pacing": {
                "requests_per_minute": per_minute,
                "max_concurrent": in_flight,
                "daily_limit": self.provider.account.daily_limit,
            },
            "models": [m.id for m in self.provider.models()],
        }

    def status(self, now: float) -> str:
        if self.dead_reason:
            return f"dead: {self.dead_reason}"
        if self.cooling_until > now:
            return f"cooling for {self.cooling_until - now:.0f}s: {self.last_error}"
        daily = self.provider.account.daily_limit
        self._roll_day(now)
        if daily is not None and self.today >= daily:
            return f"daily limit of {daily} requests reached; resets at 00:00 UTC"
        return "healthy"


@dataclass
class Candidate:
    state: AccountState
    upstream_model: str


class AccountPool:
    def __init__(
        self,
        providers: list[Provider],
        strategy: Strategy = "round-robin",
        store: PoolStateStore | None = None,
        affinity: bool = True,
        shared: SharedState | None = None,
    ) -> None:
        self.states = [AccountState(p) for p in providers]
        self.strategy = strategy
        self._turn = 0
        self.store = store
        self.affinity = Affinity()
        self.affinity_on = affinity  # `session_affinity`
        self.shared = shared  # `state_url`: slots, affinity and changes shared with other processes
        if shared is not None:
            shared.on_remote_change = self.apply_remote

    def restore(self) -> None:
        """Each account's stored state, where its settings are unchanged; expired cool-downs and other
        days' counts are cleared (and the cleared state stored)."""
        if self.store is None:
            return
        saved, now = self.store.load(), time.time()
        for state in self.states:
            found = saved.get(state.name)
            if found is not None and found.fingerprint == state.fingerprint:
                state.restore(found, now)
            self.changed(state)

    def changed(self, state: AccountState) -> None:
        """`state` changed in a way a restart should keep: hand it to the store (it writes in the background)."""
        if self.store is not None:
            self.store.save(state.snapshot())

    def replace_accounts(self, providers: list[Provider], strategy: Strategy) -> tuple[list[str], list[str]]:
        """A reloaded config's accounts: an account whose settings are unchanged keeps its state
        (cool-down, dead reason, pacing, counts); a new or changed one starts afresh; one no longer
        configured leaves the pool (answers in flight on it finish: they hold its state). Returns
        (names added or changed, names removed)."""
        kept = {state.name: state for state in self.states}
        states: list[AccountState] = []
        fresh: list[str] = []
        for provider in providers:
            old = kept.pop(provider.account.name, None)
            if old is not None and old.provider.account == provider.account:
                states.append(old)
            else:
                states.append(AccountState(provider))
                fresh.append(provider.account.name)
        self.states, self.strategy = states, strategy
        for state in states:
            if state.name in fresh:
                self.changed(state)  # a changed account's stored state is replaced by its fresh one
        for name in kept:
            self.affinity.forget_account(name)
            if self.store is not None:
                self.store.forget(name)
        return fresh, sorted(kept)

    def preferring(self, candidates: list[Candidate], conversation: str | None) -> list[Candidate]:
        """`candidates` with the account this conversation is pinned to first (session affinity)."""
        if not self.affinity_on or conversation is None:
            return candidates
        pinned = self.affinity.account_for(conversation)
        first = [c for c in candidates if c.state.name == pinned]
        return first + [c for c in candidates if c.state.name != pinned] if first else candidates

    async def ordered_for(self, candidates: list[Candidate], conversation: str | None) -> list[Candidate]:
        """`preferring`, asking the shared state which account the conversation is pinned to (another
        process may have answered its last turn); this process's memory when there is none."""
        if self.shared is not None and self.affinity_on and conversation is not None:
            pinned = await self.shared.pinned(conversation)
            if pinned is not None:
                self.affinity.pin(conversation, pinned)
        return self.preferring(candidates, conversation)

    def answered(self, state: AccountState, conversation: str | None) -> None:
        """`state` answered this conversation: pin it there (session affinity)."""
        if self.affinity_on and conversation is not None:
            self.affinity.pin(conversation, state.name)
            if self.shared is not None:
                self.shared.pin(conversation, state.name, self.affinity.idle_seconds)

    def apply_remote(self, saved: AccountSnapshot) -> None:
        """Another process changed an account's state (cool-down, dead, probe): adopt it, when that
        account has the same settings here. The daily count is not taken: it is counted in Redis."""
        for state in self.states:
            if state.name == saved.name and state.fingerprint == saved.fingerprint:
                state.cooling_until, state.cooling_kind = saved.cooling_until, saved.cooling_kind
                state.dead_reason, state.last_error = saved.dead_reason, saved.last_error
                state.probed_at, state.probe_result = saved.probed_at, saved.probe_result

    def models(self) -> list[ModelInfo]:
        """Every served model once as `model` and once as `provider/model`."""
        seen: dict[str, ModelInfo] = {}
        for state in self.states:
            for model in state.provider.models():
                seen.setdefault(model.id, model)
                pinned = f"{model.provider}/{model.id}"
                seen.setdefault(pinned, model.model_copy(update={"id": pinned}))
        return list(seen.values())

    async def refresh_models(self, timeout: float) -> None:
        """Every account's model list brought up to date, waiting at most `timeout` seconds (a
        listing that takes longer finishes in the background and serves the next request)."""
        tasks = [asyncio.ensure_future(state.provider.refresh_models()) for state in self.states]
        if tasks:
            await asyncio.wait(tasks, timeout=timeout)

    def serves(self, model: str) -> bool:
        """Whether some account serves `model` (without taking a round-robin turn)."""
        exact = self._serving(model, provider=None)
        pinned, _, bare = model.partition("/")
        return bool(exact) or bool(bare and self._serving(bare, provider=pinned))

    def candidates(self, model: str) -> list[Candidate]:
        """Accounts that serve `model` (bare, or `provider/model` to pin the provider), in order.
        A model id that itself contains a slash (`openai/gpt-oss-20b` on a vLLM server) is served
        as it is when some account knows it by that name."""
        exact = self._serving(model, provider=None)
        if exact:
            return self._order(exact)
        pinned, _, bare = model.partition("/")
        if bare and any(s.provider_name == pinned for s in self.states):
            return self._order(self._serving(bare, provider=pinned))
        return []

    def _serving(self, model: str, provider: str | None) -> list[Candidate]:
        found = []
        for state in self.states:
            if provider is not None and state.provider_name != provider:
                continue
            upstream = state.provider.upstream_model(model)
            if upstream is not None:
                found.append(Candidate(state, upstream))
        return found

    def _order(self, found: list[Candidate]) -> list[Candidate]:
        if self.strategy == "least-busy":
            return sorted(found, key=lambda c: c.state.in_flight)
        if self.strategy == "round-robin" and found:
            self._turn += 1
            start = self._turn % len(found)
            return found[start:] + found[:start]
        return found  # fill-first: config order

    def pick(self, candidates: list[Candidate], tried: set[str]) -> tuple[Candidate | None, float | None]:
        """The first usable candidate not yet tried; else (None, seconds until one may be usable)."""
        now = time.time()
        soonest: float | None = None
        for candidate in candidates:
            state = candidate.state
            if state.name in tried or state.dead_reason:
                continue
            wait = _wait(state, now)
            if wait <= 0:
                return candidate, None
            soonest = wait if soonest is None else min(soonest, wait)
        return None, soonest

    def ready_in(self, candidates: list[Candidate]) -> float | None:
        """Seconds until one of these accounts may take a request (cooling or pacing; tried or not);
        None when every one is dead."""
        now = time.time()
        return min((_wait(c.state, now) for c in candidates if not c.state.dead_reason), default=None)

    def acquire(self, state: AccountState) -> None:
        state.in_flight += 1
        state.count_start(time.time())
        self.changed(state)  # the daily count

    async def claim(self, state: AccountState) -> float:
        """Take a slot on `state` (which `pick` chose): 0 when taken, else the seconds until it may be,
        as the shared state sees it (another process holds its slots or its minute's starts)."""
        if self.shared is None:
            self.acquire(state)
            return 0.0
        now = time.time()
        wait, today = await self.shared.claim(state, now)
        if wait > 0:
            return wait
        state.in_flight += 1
        state.count_start(now)
        if today is not None:
            state.today = today  # every process's starts today
        # Not stored: the count lives in Redis, and a snapshot of a state another process has just
        # changed (a cool-down on its way here) would overwrite that change with this stale copy.
        return 0.0

    def release(self, state: AccountState) -> None:
        state.in_flight = max(0, state.in_flight - 1)
        if self.shared is not None:
            self.shared.release(state.name)

    def report(self, state: AccountState, error: BridgeError) -> None:
        """Apply what an upstream failure means for the account."""
        state.last_error = error.message
        if error.action == "dead":
            state.dead_reason = error.message
        elif error.action == "cooldown":
            state.cooling_until = time.time() + (error.retry_after or self._default_cooldown(error))
            state.cooling_kind = error.kind
        self.changed(state)

    def probed(self, state: AccountState, error: BridgeError | None) -> None:
        """A health probe's outcome: a success brings a dead account back, and ends a cool-down the
        probe can speak for (not a rate limit or a quota: those end at their time); a failure is
        applied like any other, and the account stays out."""
        state.probed_at = time.time()
        if error is None:
            state.probe_result = "ok"
            state.dead_reason = None
            if not probe_cannot_end(state.cooling_kind):
                state.cooling_until, state.cooling_kind = 0.0, None
            self.changed(state)
        else:
            state.probe_result = f"{error.kind}: {error.message}"
            self.report(state, error)

    @staticmethod
    def _default_cooldown(error: BridgeError) -> float:
        return LONG_COOLDOWN if error.kind == "quota_exhausted" else 30.0

    def status_report(self) -> list[dict[str, object]]:
        now = time.time()
        pinned = self.affinity.counts()
        return [{**state.report(now), "pinned_conversations": pinned[state.name]} for state in self.states]

    def summary(self, candidates: list[Candidate], failed: dict[str, BridgeError] | None = None) -> str:
        """Each account's state; one that failed in this request (`failed`, by name) and is neither
        dead nor cooling says how it failed, not "healthy"."""
        now = time.time()
        failed = failed or {}

        def state_of(state: AccountState) -> str:
            status = state.status(now)
            error = failed.get(state.name)
            if status == "healthy" and error is not None:
                return f"failed just now ({error.kind}): {error.message}"
            return status

        return "; ".join(f"{c.state.name}: {state_of(c.state)}" for c in candidates)


def probe_cannot_end(cooling_kind: str | None) -> bool:
    """A rate limit or a quota is not lifted by a probe that succeeds (listing models is free)."""
    return cooling_kind in ("rate_limited", "quota_exhausted")


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, timezone.utc).isoformat(timespec="seconds")


def _wait(state: AccountState, now: float) -> float:
    """Seconds until `state` may start a request: its cool-down and its pacing, whichever is longer."""
    return max(state.cooling_until - now, state.pacing_wait(now))
