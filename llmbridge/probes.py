"""Health probes and background credential refresh: the pool's accounts looked after between requests.

Probes: a dead account, and one cooling for a reason a probe can speak for (not a rate limit or a
quota: those end at their time), is probed every `probe_interval` seconds with the cheapest call its
provider allows (`Provider.probe`: a token refresh for OAuth logins, a model listing for API keys).
One that answers well is back in rotation at once; one that does not stays out, and the status shows
the probe's time and result.

Credential refresh: every usable account's credentials are looked at every CREDENTIAL_CHECK seconds
and refreshed when they would expire within two such looks of the margin requests refresh at (5
minutes for Google, 10 for Kiro), through the same single-flight refresh requests use: the token is
fresh before a request would have to refresh it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Callable

from llmbridge.errors import BridgeError, UpstreamTimeout, UpstreamUnavailable
from llmbridge.pool import AccountPool, AccountState, probe_cannot_end

log = logging.getLogger(__name__)

DEFAULT_PROBE_INTERVAL = 300.0  # `probe_interval`: dead accounts seldom come back within minutes
CREDENTIAL_CHECK = 60.0  # seconds between looks at each account's token expiry
PROBE_TIMEOUT = 30.0  # a probe is one small call; longer is a failure


class HealthProber:
    def __init__(self, pool: Callable[[], AccountPool | None], interval: float = DEFAULT_PROBE_INTERVAL) -> None:
        self.pool = pool  # the pool in force (a config reload may replace its accounts)
        self.interval = interval  # `probe_interval`, 0: no probes (credentials are still refreshed)
        self._probe_due: dict[str, float] = {}  # account name -> when to probe it next
        self._refresh_due: dict[str, float] = {}  # account name -> when to look at its credentials next

    async def run(self) -> None:
        while True:
            await asyncio.sleep(min(self.interval or CREDENTIAL_CHECK, CREDENTIAL_CHECK))
            await self.round()

    async def round(self) -> None:
        """One look at every account: probe those due, refresh credentials about to expire."""
        pool = self.pool()
        if pool is None:
            return
        now = time.time()
        jobs = []
        for state in list(pool.states):
            if self._needs_probe(state, now):
                jobs.append(self.probe(pool, state))
            elif state.dead_reason is None and now >= self._refresh_due.get(state.name, 0.0):
                self._refresh_due[state.name] = now + CREDENTIAL_CHECK
                jobs.append(self.refresh(pool, state))
        await asyncio.gather(*jobs)

    def _needs_probe(self, state: AccountState, now: float) -> bool:
        """Out of rotation for a reason a probe can speak for, and its interval since the last
        probe (or since it was first seen out) has passed."""
        out = state.dead_reason is not None or (state.cooling_until > now and not probe_cannot_end(state.cooling_kind))
        if not out or not self.interval:
            self._probe_due.pop(state.name, None)
            return False
        due = self._probe_due.setdefault(state.name, now + self.interval)
        return now >= due

    async def probe(self, pool: AccountPool, state: AccountState) -> None:
        """Probe one account and tell the pool what it showed."""
        self._probe_due[state.name] = time.time() + self.interval
        try:
            probed = await asyncio.wait_for(state.provider.probe(), PROBE_TIMEOUT)
        except BridgeError as error:
            log.info("health probe of account %s failed (%s): %s", state.name, error.kind, error.message)
            pool.probed(state, error)
            return
        except Exception as error:  # a timeout, a local fault, a provider bug: the account stays out
            log.info("health probe of account %s failed: %r", state.name, error)
            pool.probed(state, _probe_error(error))
            return
        if probed:
            was = state.status(time.time())
            pool.probed(state, None)
            log.info(
                "health probe of account %s succeeded; it was %s, it is %s", state.name, was, state.status(time.time())
            )

    async def refresh(self, pool: AccountPool, state: AccountState) -> None:
        """Refresh the account's credentials if they expire soon (a no-op for API keys)."""
        try:
            await asyncio.wait_for(state.provider.refresh_ahead(2 * CREDENTIAL_CHECK), PROBE_TIMEOUT)
        except BridgeError as error:
            log.warning("background token refresh of account %s failed: %s", state.name, error.message)
            pool.report(state, error)
        except Exception as error:
            log.warning("background token refresh of account %s failed: %r", state.name, error)


def _probe_error(error: Exception) -> BridgeError:
    if isinstance(error, TimeoutError):
        return UpstreamTimeout(f"the health probe got no answer within {PROBE_TIMEOUT:g} s")
    return UpstreamUnavailable(f"the health probe failed inside the bridge ({type(error).__name__}); see its log")
