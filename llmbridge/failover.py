"""Failover: which account answers a request, tried in turn until one answers well.

Everything between the account pool and an open upstream answer happens here: the candidates for a
model, each attempt (one credential refresh and retry on an UpstreamAuthError; every try recorded),
the peek at the start of each answer, the account slot an attempt takes and gives back (when it
fails, or when its answer ends), what each failure tells the pool, the wait for a pacing slot, and
the error when no account can answer. Token counts go through here too. The pool keeps the accounts'
state and answers questions about it; the bridge only asks this module.

Two choices are made per request here: the account a conversation was answered by is tried first
(session affinity, `llmbridge.affinity`), and while another account could take the request an
upstream gets `first_token_timeout` seconds to show content before it is abandoned for the next one.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
from dataclasses import dataclass
from typing import Awaitable, Callable

from llmbridge.answer import Answer
from llmbridge.canonical import ChatRequest
from llmbridge.conversation import conversation_key
from llmbridge.errors import BridgeError, ModelNotFound, NoAccount, RateLimited, UpstreamAuthError, UpstreamUnavailable
from llmbridge.exchange import AttemptRecord, ExchangeRecord
from llmbridge.peek import FirstTokenDeadline, peek
from llmbridge.pool import AccountPool, AccountState, Candidate
from llmbridge.providers.base import Provider, UpstreamCall, failed
from llmbridge.tokens import estimate_input_tokens

log = logging.getLogger(__name__)
MAX_PACING_WAIT = 20.0  # default `max_wait_seconds`: how long a request may wait for a slot before a 429

# Where a finished exchange's record goes (the recorder and the console line).
ExchangeDone = Callable[[ExchangeRecord], Awaitable[None]]
# The request as one account is to receive it (the prompt and parameter rules, `llmbridge.rules`);
# None: the request as it is.
Prepare = Callable[[ChatRequest, Candidate], ChatRequest]


def _prepared(prepare: Prepare | None, request: ChatRequest, candidate: Candidate) -> ChatRequest:
    return prepare(request, candidate) if prepare is not None else request


@dataclass
class Lease:
    """An upstream answer that started well, and the account slot it holds until the answer ends."""

    failover: Failover
    state: AccountState
    call: UpstreamCall

    async def answer_done(self, answer: Answer) -> None:
        """The answer's `on_done`: see `Failover.answer_done`."""
        await self.failover.answer_done(self.state, answer)


class Failover:
    def __init__(
        self,
        pool: AccountPool,
        max_attempts: int,
        peek_seconds: float,
        on_exchange: ExchangeDone,
        max_wait: float = MAX_PACING_WAIT,
        first_token_timeout: float = 0.0,
    ) -> None:
        self.pool = pool
        self.max_attempts = max_attempts  # accounts tried per request before giving up
        self.max_wait = max_wait  # seconds a request may wait for a pacing slot or a cool-down ending
        self.peek_seconds = peek_seconds
        self.first_token_timeout = first_token_timeout  # 0: off
        self.on_exchange = on_exchange
        # Conversation keys mean nothing outside the bridge; with shared state every process uses the
        # same secret (`SharedState.conversation_secret`), so a conversation is one key everywhere.
        self.conversation_secret = os.urandom(32)

    def candidates(self, model: str, listing: str) -> list[Candidate]:
        """The accounts that serve `model`, in the pool's order; NoAccount when none is configured,
        ModelNotFound pointing at `listing` (where the client's door lists the models) when none serves it."""
        candidates = self.pool.candidates(model)
        if not candidates:
            if not self.pool.states:
                raise NoAccount(
                    "no accounts are configured; add one to bridge.toml (see the README) "
                    "or log in with a provider's own CLI so its credential file exists"
                )
            raise ModelNotFound(
                f"model '{model}' is not served by any configured account; GET {listing} lists the models"
            )
        return candidates

    @staticmethod
    def check(request: ChatRequest, candidates: list[Candidate], prepare: Prepare | None = None) -> None:
        """InvalidRequest, before any attempt, naming a parameter an account that may answer cannot honour."""
        for candidate in candidates:
            candidate.state.provider.check_request(_prepared(prepare, request, candidate))

    # --- opening an answer ------------------------------------------------------------------------

    async def open(
        self,
        request: ChatRequest,
        candidates: list[Candidate],
        record: ExchangeRecord,
        prepare: Prepare | None = None,
    ) -> Lease:
        """The answer of the first account whose answer starts well (each try recorded on `record`;
        each sent the request as `prepare` makes it for that account); else the error saying why no
        account could answer."""
        failed: dict[str, BridgeError] = {}  # account name -> how it failed, in this request
        last_error: BridgeError | None = None
        conversation = self.conversation(request)
        candidates = await self.pool.ordered_for(candidates, conversation)
        candidate, wait = await self._claim_next(candidates, set(), patient=True)
        while candidate is not None and len(failed) < self.max_attempts:
            first_token = self._first_token_deadline(candidates, {*failed, candidate.state.name}, len(failed))
            try:
                lease = await self._try(candidate, _prepared(prepare, request, candidate), record, first_token)
                self.pool.answered(lease.state, conversation)
                return lease
            except BridgeError as error:
                if error.action == "stop":
                    raise
                failed[candidate.state.name] = last_error = error
            candidate, wait = await self._claim_next(candidates, set(failed), patient=False)
        raise self._exhausted(candidates, last_error, wait if candidate is None else None, failed)

    def conversation(self, request: ChatRequest) -> str | None:
        """The key naming the request's conversation (None for a request without messages)."""
        if not request.messages:
            return None
        return conversation_key(self.conversation_secret, request.conversation, request.messages)

    def _first_token_deadline(self, candidates: list[Candidate], tried: set[str], failures: int) -> float | None:
        """Seconds this attempt's upstream has to show content: `first_token_timeout` while another
        account could take the request right now; else None (a slow answer beats no answer)."""
        if not self.first_token_timeout or failures + 1 >= self.max_attempts:
            return None
        other, _ = self.pool.pick(candidates, tried)
        return self.first_token_timeout if other is not None else None

    async def _claim_next(
        self, candidates: list[Candidate], tried: set[str], patient: bool
    ) -> tuple[Candidate | None, float | None]:
        """The next account not in `tried`, its slot taken (`AccountPool.claim`); `patient` (the
        first account of a request) waits for one whose pacing lets it start, at most `max_wait`
        seconds in all. Else (None, seconds until one may be usable)."""
        waited = 0.0
        while True:
            candidate, wait = await self._claim_one(candidates, tried)
            if candidate is not None or not patient or wait is None or waited + wait > self.max_wait:
                return candidate, wait
            await asyncio.sleep(wait)
            waited += wait

    async def _claim_one(self, candidates: list[Candidate], tried: set[str]) -> tuple[Candidate | None, float | None]:
        """The first candidate the pool would pick whose slot could be taken; one whose slots are
        taken by other processes (the shared state) is passed over for this round."""
        busy: set[str] = set()
        soonest: float | None = None
        while True:
            candidate, wait = self.pool.pick(candidates, tried | busy)
            if candidate is None:
                waits = [w for w in (wait, soonest) if w is not None]
                return None, min(waits) if waits else None
            refused = await self.pool.claim(candidate.state)
            if refused <= 0:
                return candidate, None
            busy.add(candidate.state.name)
            soonest = refused if soonest is None else min(soonest, refused)

    async def _try(
        self, candidate: Candidate, request: ChatRequest, record: ExchangeRecord, first_token: float | None = None
    ) -> Lease:
        """One account's attempt in the slot taken for it (`_claim_next`); on failure the slot is
        given back and the pool told."""
        state = candidate.state
        record.account, record.provider = state.name, state.provider_name
        try:
            call = await self._attempt(candidate, request, record, first_token)
        except BaseException as error:
            self.pool.release(state)  # whatever happened, the slot is free again
            if isinstance(error, BridgeError):
                self.pool.report(state, error)
                log.info("account %s failed (%s): %s", state.name, error.kind, error.message)
            raise
        return Lease(self, state, call)

    async def _attempt(
        self, candidate: Candidate, request: ChatRequest, record: ExchangeRecord, first_token: float | None
    ) -> UpstreamCall:
        """Open and peek; a stale token is refreshed once and the request sent again. With
        `first_token` (seconds), content must show that soon after the attempt began, response
        head included: else the attempt fails with FirstTokenTimeout. Not for a request that goes
        upstream non-stream: its whole answer (its first token too) comes only when the model has
        finished, however long it takes, so there only the upstream read timeout applies; and the
        peek reads that answer to its end (a read timeout then fails the attempt, not the answer)."""
        streams = candidate.state.provider.streams_upstream(request)
        if not streams:
            first_token = None
        deadline = FirstTokenDeadline.starting_now(first_token) if first_token else None
        opening = self._open_refreshed(candidate, request, record)
        try:
            call = await (opening if deadline is None else asyncio.wait_for(opening, deadline.remaining()))
        except TimeoutError:
            assert deadline is not None  # only wait_for raises it: provider timeouts are BridgeErrors
            raise _unanswered(candidate, record, deadline.error()) from None
        # a whole answer is read to its end before it is taken: an error in it is one more failed attempt
        await peek(call, self.peek_seconds if streams else None, deadline)
        return call

    async def _open_refreshed(self, candidate: Candidate, request: ChatRequest, record: ExchangeRecord) -> UpstreamCall:
        """The upstream answer opened; a stale token is refreshed once and the request sent again."""
        provider = candidate.state.provider
        try:
            try:
                call = await self._open(provider, request, candidate.upstream_model, record)
            except UpstreamAuthError:
                await provider.refresh_credentials(force=True)
                call = await self._open(provider, request, candidate.upstream_model, record)
        except BridgeError:
            raise
        except Exception as e:  # a provider bug or a local fault (a credential file that cannot be written)
            log.exception("account %s: calling the provider failed", candidate.state.name)
            raise UpstreamUnavailable(
                f"account {candidate.state.name!r} failed inside the bridge ({type(e).__name__}); see the bridge's log"
            ) from e
        return call

    @staticmethod
    async def _open(
        provider: Provider, request: ChatRequest, upstream_model: str, record: ExchangeRecord
    ) -> UpstreamCall:
        """One upstream request, recorded as an attempt whether it succeeds or fails."""
        try:
            call = await provider.open(request, upstream_model)
        except BridgeError as error:
            if error.attempt is not None:
                error.attempt.error_kind, error.attempt.error_message = error.kind, error.message
                record.attempts.append(error.attempt)
            raise
        record.attempts.append(call.attempt)
        return call

    def _exhausted(
        self,
        candidates: list[Candidate],
        last_error: BridgeError | None,
        wait: float | None,
        failed: dict[str, BridgeError] | None = None,
    ) -> BridgeError:
        """The error for a request no account could answer, saying why for each account."""
        summary = self.pool.summary(candidates, failed)
        if last_error is not None and last_error.action != "cooldown":
            last_error.message = f"{last_error.message} (accounts: {summary})"
            if last_error.status in (401, 403):
                # The bridge's own upstream account was refused, not the client: a 401/403 would read
                # as the client's key being wrong (the OpenAI SDK's PermissionDeniedError). 503 when no
                # account is left in rotation, else 502; the kind and the account's reason stay.
                everyone_out = all(c.state.dead_reason for c in candidates)
                last_error.status = 503 if everyone_out else 502  # type: ignore[misc]
            return last_error
        if wait is None:
            wait = self.pool.ready_in(candidates)
        if wait is None:
            return NoAccount(f"every account that serves this model is unusable: {summary}")
        retry = max(1.0, wait)
        return RateLimited(
            f"every account that serves this model is rate limited or at its pacing limit; "
            f"retry in {math.ceil(retry)} s ({summary})",
            retry_after=retry,
        )

    # --- the end of an answer ---------------------------------------------------------------------

    async def answer_done(self, state: AccountState, answer: Answer) -> None:
        """An answer opened on `state` has ended, however: its slot is given back; the error that
        ended a stream the client stayed for is reported (it says something about the account); then
        the exchange goes to the recorder."""
        self.pool.release(state)
        if answer.error is not None and not answer.record.client_disconnected:
            self.pool.report(state, answer.error)
        await self.on_exchange(answer.record)

    # --- token counts -----------------------------------------------------------------------------

    async def count_tokens(
        self, request: ChatRequest, candidates: list[Candidate], prepare: Prepare | None = None
    ) -> tuple[int, str]:
        """The request's input tokens and how they were counted: by an account usable right now
        (healthy, within its pacing: `upstream:<provider>`), else locally (`estimate`)."""
        candidate, _ = self.pool.pick(candidates, set())
        if candidate is not None:
            count = await self._count(candidate, _prepared(prepare, request, candidate))
            if count is not None:
                return count, f"upstream:{candidate.state.provider_name}"
        if prepare is not None and candidates:  # estimated as the first account would receive it
            request = prepare(request, candidate or candidates[0])
        return estimate_input_tokens(request), "estimate"

    async def _count(self, candidate: Candidate, request: ChatRequest) -> int | None:
        state = candidate.state
        if await self.pool.claim(state) > 0:
            return None  # its slots are taken by other processes: counted locally instead
        try:
            return await state.provider.count_tokens(request, candidate.upstream_model)
        except BridgeError as error:
            self.pool.report(state, error)
            log.info("upstream token count failed on %s: %s", state.name, error.message)
            return None
        finally:
            self.pool.release(state)


def _unanswered(candidate: Candidate, record: ExchangeRecord, error: BridgeError) -> BridgeError:
    """An attempt abandoned before its upstream answered (its request was under way, so the provider
    recorded nothing): recorded here, so the record and `x-llmbridge-attempts` count it."""
    state = candidate.state
    attempt = AttemptRecord(account=state.name, provider=state.provider_name)
    record.attempts.append(attempt)
    return failed(attempt, error)
