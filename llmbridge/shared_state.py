"""The pool's state shared by several bridge processes through Redis (`state_url = "redis://..."`).

What is shared, and how:
- cool-downs, dead reasons, last errors and probes: each change is stored (`llmbridge:account:<name>`,
  read at startup like the SQLite store) and published on one channel; every process subscribes and
  applies the others' changes to its own copy, so choosing an account stays a local, free decision;
- pacing and concurrency slots and the daily count: one Lua script per request start (one round trip)
  checks and takes a slot atomically; a slot is a lease with an expiry that its process renews while
  the answer runs, so a process that dies leaks its slots for at most LEASE_SECONDS;
- session affinity: a conversation's account is a key with the idle expiry (read when the request
  starts, written when an account answered), and the secret that names conversations is shared;
- credential refresh: a lock per credential file (SET NX with an expiry); the process holding it
  refreshes and writes the file once, the others wait for it and then re-read the file.

When Redis cannot be reached the bridge keeps answering: each process falls back to its own state
(the local checks always run first), says so loudly in its log once per outage, and tries Redis
again after RETRY_SECONDS.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import secrets
import time
from dataclasses import asdict
from typing import TYPE_CHECKING, Any, AsyncIterator, Callable

import redis
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from llmbridge.errors import ConfigError
from llmbridge.pool_state import COLUMNS, AccountSnapshot

if TYPE_CHECKING:
    from llmbridge.pool import AccountState

log = logging.getLogger(__name__)

PREFIX = "llmbridge:"
CHANNEL = PREFIX + "pool"
LEASE_SECONDS = 30.0  # a slot's lease; renewed every third of it while its answer runs
RETRY_SECONDS = 5.0  # after a Redis failure, this process uses its local state this long
LOCK_SECONDS = 30.0  # a refresh lock's expiry (a refresh that takes longer loses it)
TIMEOUT_SECONDS = 1.0  # a Redis call that takes longer counts as an outage

# Takes a slot when the account's pacing allows it. KEYS: slots (zset lease -> expiry ms), starts
# (zset lease -> start ms, the last minute), today's counter. ARGV: lease id, max in flight, per
# minute, per day (-1: no limit), lease ms. Returns {wait ms (0: taken; -1: daily limit), today}.
CLAIM_SCRIPT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local in_flight, per_minute, daily, lease = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - 60000)
local today = tonumber(redis.call('GET', KEYS[3]) or '0')
if daily >= 0 and today >= daily then return {-1, today} end
if in_flight >= 0 and redis.call('ZCARD', KEYS[1]) >= in_flight then return {50, today} end
if per_minute >= 0 and redis.call('ZCARD', KEYS[2]) >= per_minute then
  local oldest = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
  return {math.max(1, tonumber(oldest[2]) + 60000 - now), today}
end
redis.call('ZADD', KEYS[1], now + lease, ARGV[1])
redis.call('PEXPIRE', KEYS[1], lease * 2)
redis.call('ZADD', KEYS[2], now, ARGV[1])
redis.call('PEXPIRE', KEYS[2], 61000)
today = redis.call('INCR', KEYS[3])
redis.call('EXPIRE', KEYS[3], 172800)
return {0, today}
"""

# Extends the leases this process holds. KEYS: slots; ARGV: lease ms, then lease ids.
RENEW_SCRIPT = """
local t = redis.call('TIME')
local expiry = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + tonumber(ARGV[1])
for i = 2, #ARGV do redis.call('ZADD', KEYS[1], 'XX', expiry, ARGV[i]) end
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[1]) * 2)
return 0
"""

# Deletes the lock only while it is still ours (it may have expired and been taken by another).
UNLOCK_SCRIPT = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class SharedState:
    """One process's view of the shared pool state; also its `PoolStateStore`."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.instance = f"{os.getpid()}-{secrets.token_hex(4)}"
        options: dict[str, Any] = {"socket_timeout": TIMEOUT_SECONDS, "socket_connect_timeout": TIMEOUT_SECONDS}
        self.redis = aioredis.Redis.from_url(url, **options)
        self._sync = redis.Redis.from_url(url, **options)  # startup only: `load`, the conversation secret
        self._claim = self.redis.register_script(CLAIM_SCRIPT)
        self._renew = self.redis.register_script(RENEW_SCRIPT)
        self._unlock = self.redis.register_script(UNLOCK_SCRIPT)
        self._held: dict[str, list[str]] = {}  # account -> leases this process holds
        self._down_until = 0.0  # monotonic: Redis is skipped until then
        self._tasks: set[asyncio.Task[Any]] = set()  # fire-and-forget writes, kept from the collector
        self._background: list[asyncio.Task[None]] = []
        self.on_remote_change: Callable[[AccountSnapshot], None] | None = None

    def where(self) -> str:
        """The URL without its password, for messages."""
        return redact_url(self.url)

    # --- availability -----------------------------------------------------------------------------

    def available(self) -> bool:
        return time.monotonic() >= self._down_until

    def _failed(self, doing: str, error: BaseException) -> None:
        """Redis failed: say so loudly, once per outage, and use the local state for RETRY_SECONDS."""
        if self.available():
            log.error(
                "shared state: Redis at %s failed while %s (%s: %s); this process paces, cools and pins "
                "its accounts on its own until Redis answers again (retrying every %.0f s)",
                self.where(),
                doing,
                type(error).__name__,
                error,
                RETRY_SECONDS,
            )
        self._down_until = time.monotonic() + RETRY_SECONDS

    def _recovered(self) -> None:
        if self._down_until:
            log.warning("shared state: Redis at %s answers again; the pool state is shared again", self.where())
            self._down_until = 0.0

    # --- startup and shutdown ---------------------------------------------------------------------

    def check(self) -> None:
        """Fail startup with a clear message when Redis cannot be reached at all."""
        try:
            self._sync.ping()
        except RedisError as error:
            raise ConfigError(
                f"state_url: cannot reach Redis at {self.where()} ({error}); start Redis "
                "(Debian: apt-get install redis-server) or remove state_url to keep the state in this process"
            ) from None

    def conversation_secret(self) -> bytes:
        """The secret that names conversations, the same in every process (affinity is shared)."""
        key = PREFIX + "conversation-secret"
        self._sync.set(key, secrets.token_hex(32), nx=True)
        value = self._sync.get(key)
        return bytes.fromhex(value.decode() if isinstance(value, bytes) else str(value))

    async def start(self) -> None:
        """Listen to the other processes' changes, and keep this process's leases alive."""
        self._background = [
            asyncio.ensure_future(self._listen()),
            asyncio.ensure_future(self._renew_leases()),
        ]

    async def aclose(self) -> None:
        for task in self._background:
            task.cancel()
        await asyncio.gather(*self._background, *self._tasks, return_exceptions=True)
        leases = [(name, lease) for name, held in self._held.items() for lease in held if lease]
        with contextlib.suppress(RedisError):
            for name, lease in leases:  # a stopping process gives its slots back at once
                await self.redis.zrem(_slots(name), lease)
        await self.redis.aclose()

    # --- PoolStateStore ---------------------------------------------------------------------------

    def load(self) -> dict[str, AccountSnapshot]:
        found: dict[str, AccountSnapshot] = {}
        try:
            for key in self._sync.scan_iter(match=PREFIX + "account:*", count=500):
                raw = self._sync.get(key)
                if raw is not None:
                    snapshot = _snapshot(raw)
                    found[snapshot.name] = snapshot
        except RedisError as error:
            self._failed("reading the pool state at startup", error)
        return found

    def save(self, snapshot: AccountSnapshot) -> None:
        """Store and publish a change (cool-down, dead, probe); returns at once."""
        if self.available():
            self._spawn(self._save(snapshot))

    async def _save(self, snapshot: AccountSnapshot) -> None:
        data = json.dumps(asdict(snapshot))
        try:
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.set(PREFIX + "account:" + snapshot.name, data)
                pipe.publish(CHANNEL, json.dumps({"from": self.instance, "snapshot": asdict(snapshot)}))
                await pipe.execute()
            self._recovered()
        except RedisError as error:
            self._failed(f"storing account {snapshot.name!r}'s state", error)

    def forget(self, name: str) -> None:
        if self.available():
            self._spawn(self._forget(name))

    async def _forget(self, name: str) -> None:
        try:
            await self.redis.delete(PREFIX + "account:" + name)
        except RedisError as error:
            self._failed(f"forgetting account {name!r}", error)

    def close(self) -> None:
        """The synchronous half (`aclose` ends the rest)."""
        self._sync.close()

    # --- slots --------------------------------------------------------------------------------------

    async def claim(self, state: AccountState, now: float) -> tuple[float, int | None]:
        """(seconds to wait, 0: the slot is taken; today's count across processes, None: not known).
        When Redis fails the slot is granted (the local pacing already said yes)."""
        if not self.available():
            return self._granted_locally(state.name)
        per_minute, in_flight = state.limits()
        daily = state.provider.account.daily_limit
        lease = secrets.token_hex(8)
        keys = [_slots(state.name), _starts(state.name), f"{PREFIX}day:{state.name}:{int(now // 86400)}"]
        args: list[str | int] = [lease, _limit(in_flight), _limit(per_minute), _limit(daily), int(LEASE_SECONDS * 1000)]
        try:
            wait_ms, today = await self._claim(keys=keys, args=args)
        except RedisError as error:
            self._failed(f"taking a slot on account {state.name!r}", error)
            return self._granted_locally(state.name)
        self._recovered()
        if wait_ms == 0:
            self._held.setdefault(state.name, []).append(lease)
            return 0.0, int(today)
        if wait_ms < 0:
            return (int(now // 86400) + 1) * 86400 - now, int(today)  # until midnight UTC
        return wait_ms / 1000, int(today)

    def _granted_locally(self, name: str) -> tuple[float, None]:
        """A slot granted without Redis holds no lease; it is counted (as "") so that the release at its
        end gives back no lease of a request still running (the held count stays the running count)."""
        self._held.setdefault(name, []).append("")
        return 0.0, None

    def release(self, name: str) -> None:
        held = self._held.get(name)
        if held:
            lease = held.pop()
            if lease:
                self._spawn(self._release(name, lease))

    async def _release(self, name: str, lease: str) -> None:
        try:
            await self.redis.zrem(_slots(name), lease)
        except RedisError as error:  # the lease expires by itself
            self._failed(f"giving back a slot on account {name!r}", error)

    async def _renew_leases(self) -> None:
        while True:
            await asyncio.sleep(LEASE_SECONDS / 3)
            for name, held in list(self._held.items()):
                leases = [lease for lease in held if lease]
                if not leases:
                    continue
                try:
                    args: list[str | int] = [int(LEASE_SECONDS * 1000), *leases]
                    await self._renew(keys=[_slots(name)], args=args)
                except RedisError as error:
                    self._failed("renewing this process's slots", error)

    # --- affinity -------------------------------------------------------------------------------

    async def pinned(self, conversation: str) -> str | None:
        if not self.available():
            return None
        try:
            value = await self.redis.get(PREFIX + "affinity:" + conversation)
        except RedisError as error:
            self._failed("reading a conversation's account", error)
            return None
        return value.decode() if isinstance(value, bytes) else value

    def pin(self, conversation: str, account: str, idle_seconds: float) -> None:
        if self.available():
            self._spawn(self._pin(conversation, account, idle_seconds))

    async def _pin(self, conversation: str, account: str, idle_seconds: float) -> None:
        try:
            await self.redis.set(PREFIX + "affinity:" + conversation, account, ex=max(1, int(idle_seconds)))
        except RedisError as error:
            self._failed("pinning a conversation", error)

    # --- credential refresh -----------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def held(self, key: str) -> AsyncIterator[None]:
        """Holds the refresh lock of `key` (a credential file) across processes; waits while another
        process refreshes. Without Redis, the caller goes on unlocked (its own process is single-flight)."""
        name = PREFIX + "refresh:" + hashlib.sha256(key.encode()).hexdigest()[:32]
        token = secrets.token_hex(8)
        locked = await self._lock(name, token)
        try:
            yield
        finally:
            if locked:
                with contextlib.suppress(RedisError):
                    await self._unlock(keys=[name], args=[token])

    async def _lock(self, name: str, token: str) -> bool:
        deadline = time.monotonic() + LOCK_SECONDS
        while self.available() and time.monotonic() < deadline:
            try:
                if await self.redis.set(name, token, nx=True, px=int(LOCK_SECONDS * 1000)):
                    return True
            except RedisError as error:
                self._failed("taking a credential refresh lock", error)
                return False
            await asyncio.sleep(0.05)
        return False

    # --- the other processes' changes -------------------------------------------------------------

    async def _listen(self) -> None:
        """Apply the other processes' published changes; reconnects after an outage."""
        while True:
            try:
                async with self.redis.pubsub() as pubsub:
                    await pubsub.subscribe(CHANNEL)
                    async for message in pubsub.listen():
                        if message.get("type") == "message":
                            self._apply(message["data"])
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError) as error:
                self._failed("listening to the other processes' changes", error)
                await asyncio.sleep(RETRY_SECONDS)

    def _apply(self, raw: bytes | str) -> None:
        try:
            message = json.loads(raw)
            if message.get("from") == self.instance:
                return
            snapshot = AccountSnapshot(**{c: message["snapshot"].get(c) for c in COLUMNS})
        except (ValueError, TypeError, KeyError, AttributeError) as error:
            log.warning("shared state: ignored a malformed change on %s (%s)", CHANNEL, error)
            return
        if self.on_remote_change is not None:
            self.on_remote_change(snapshot)

    def _spawn(self, work: Any) -> None:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


def _slots(name: str) -> str:
    return f"{PREFIX}slots:{name}"


def _starts(name: str) -> str:
    return f"{PREFIX}starts:{name}"


def _limit(value: int | None) -> int:
    return -1 if value is None else value


def _snapshot(raw: bytes | str) -> AccountSnapshot:
    data = json.loads(raw)
    return AccountSnapshot(**{c: data.get(c) for c in COLUMNS})


def redact_url(url: str) -> str:
    """redis://user:secret@host/0 -> redis://user:***@host/0"""
    scheme, sep, rest = url.partition("://")
    credentials, at, host = rest.rpartition("@")
    if not at:
        return url
    user = credentials.partition(":")[0]
    return f"{scheme}{sep}{user}:***@{host}" if user else f"{scheme}{sep}***@{host}"
