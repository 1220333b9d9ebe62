"""Failover: accounts tried in turn until one answers well, the peek at each answer's start, the slot
each answer holds until it ends, what failures tell the pool, pacing waits, token counts."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest

from llmbridge.answer import Answer, BufferedSink
from llmbridge.canonical import ChatRequest
from llmbridge.config import AccountConfig
from llmbridge.errors import AccountUnusable, ModelNotFound, NoAccount, RateLimited, UpstreamAuthError
from llmbridge.exchange import ExchangeRecord
from llmbridge.failover import Failover
from llmbridge.formats.openai import OpenAIFormat
from llmbridge.pool import AccountPool
from llmbridge.providers.openai_api.provider import OpenAIProvider
from tests.bridge_kit import answer, as_openai_answers, chat_request, make_bridge, streamed, text_stream

REQUEST = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}


def request(stream: bool = False) -> ChatRequest:
    return OpenAIFormat().parse_request({**REQUEST, "stream": stream})


def account(name: str = "a") -> AccountConfig:
    return AccountConfig(name=name, provider="openai", api_key="k", models=["m"], requests_per_minute=1000)


def good_upstream(request: httpx.Request) -> httpx.Response:
    return streamed(text_stream("ok"))


def failover_over(*providers: OpenAIProvider) -> tuple[Failover, list[ExchangeRecord]]:
    records: list[ExchangeRecord] = []

    async def on_exchange(record: ExchangeRecord) -> None:
        records.append(record)

    return Failover(AccountPool(list(providers), "fill-first"), 4, 1.0, on_exchange), records


class StaleToken(OpenAIProvider):
    """An account whose token has expired: refused until refreshed."""

    def __init__(self, *args) -> None:
        super().__init__(*args)
        self.refreshes: list[bool] = []

    async def open(self, request, upstream_model):
        if not self.refreshes:
            raise UpstreamAuthError("token expired")
        return await super().open(request, upstream_model)

    async def refresh_credentials(self, force: bool = False) -> None:
        self.refreshes.append(force)


class CountingRefused(OpenAIProvider):
    async def count_tokens(self, request, upstream_model):
        raise RateLimited("slow down", retry_after=40)


def test_a_provider_bug_frees_the_slot_and_the_next_account_answers():
    def broken(request):
        raise RuntimeError("provider bug")

    def good(request):
        return streamed(text_stream("ok"))

    async def run():
        bridge, pool = make_bridge(broken, good)
        status, body = await answer(bridge, chat_request())
        return status, json.loads(body), [s.in_flight for s in pool.states]

    status, body, in_flight = asyncio.run(run())
    assert status == 200 and body["choices"][0]["message"]["content"] == "ok"
    assert in_flight == [0, 0]


def test_an_error_at_the_start_of_a_200_stream_fails_over_to_the_next_account():
    def throttled(request):
        error = {"error": {"message": "slow down", "type": "rate_limit"}}
        return streamed(b"data: " + json.dumps(error).encode() + b"\n\n")

    def good(request):
        return streamed(text_stream("second"))

    async def run():
        bridge, pool = make_bridge(throttled, good)
        status, body = await answer(bridge, chat_request(stream=True))
        return status, body, bridge.records[-1]

    status, body, record = asyncio.run(run())
    assert status == 200 and b"second" in body and b"slow down" not in body
    assert [a.account for a in record.attempts] == ["a0", "a1"]
    assert record.attempts[0].error_kind is not None


def test_pacing_limit_gives_429_with_the_real_wait():
    def good(request):
        return streamed(text_stream("ok"))

    async def run():
        bridge, pool = make_bridge(good)
        pool.states[0].provider.account.requests_per_minute = 1
        first = await answer(bridge, chat_request())
        second = await bridge.handle(chat_request())
        return first[0], second

    first, second = asyncio.run(run())
    assert first == 200 and second.status == 429
    assert int(second.headers["retry-after"]) > 50
    assert "pacing limit" in json.loads(second.body)["error"]["message"]


def test_an_empty_200_body_fails_over():
    def empty(request):
        return streamed(b"")

    def good(request):
        return streamed(text_stream("second"))

    async def run():
        bridge, pool = make_bridge(empty, good)
        status, body = await answer(bridge, chat_request(stream=True))
        return status, body, bridge.records[-1], [s.in_flight for s in pool.states]

    status, body, record, in_flight = asyncio.run(run())
    assert status == 200 and b"second" in body
    assert [a.account for a in record.attempts] == ["a0", "a1"] and in_flight == [0, 0]


def test_a_decoder_bug_while_peeking_closes_the_upstream_and_fails_over(monkeypatch):
    from llmbridge.providers.openai_api import decoder as openai_decoder

    closed = []

    def good(request):
        return streamed(text_stream("fine"))

    async def run():
        bridge, _ = make_bridge(good, good)
        original = openai_decoder.ChatCompletionChunkDecoder.on_json
        calls = {"n": 0}

        def flaky(self, value):
            calls["n"] += 1
            if calls["n"] == 1:  # (a ValueError or TypeError would be read as a malformed upstream event)
                raise RuntimeError("decoder bug")
            return original(self, value)

        monkeypatch.setattr(openai_decoder.ChatCompletionChunkDecoder, "on_json", flaky)
        real_aclose = httpx.Response.aclose

        async def tracking_aclose(self):
            closed.append(self)
            await real_aclose(self)

        monkeypatch.setattr(httpx.Response, "aclose", tracking_aclose)
        return await answer(bridge, chat_request(stream=True)), bridge.records[-1]

    (status, body), record = asyncio.run(run())
    assert status == 200 and b"fine" in body
    assert record.attempts[0].error_kind == "upstream_unavailable" and closed


def test_a_stale_token_is_refreshed_once_and_the_request_sent_again_on_the_same_account():
    async def run():
        provider = StaleToken(
            account(), httpx.AsyncClient(transport=httpx.MockTransport(as_openai_answers(good_upstream)))
        )
        failover, records = failover_over(provider)
        record = ExchangeRecord()
        lease = await failover.open(request(), failover.candidates("m", "/v1/models"), record)
        held = lease.state.in_flight
        answer = Answer(
            call=lease.call,
            client_format=OpenAIFormat(),
            request=request(),
            record=record,
            keepalive_seconds=5,
            on_done=lease.answer_done,
        )
        await answer.run(BufferedSink())
        return provider.refreshes, held, lease.state.in_flight, records, record

    refreshes, held, after, records, record = asyncio.run(run())
    assert refreshes == [True] and record.account == "a"
    assert (held, after) == (1, 0)  # the slot is held by the answer until it has ended
    assert records == [record] and record.status == 200


def test_an_error_that_ends_a_started_stream_is_reported_to_the_pool_as_it_was_raised():
    def cut(request):
        async def body():
            yield b'data: {"id":"u","model":"m","choices":[{"index":0,"delta":{"content":"par"}}]}\n\n'
            raise httpx.ReadError("connection reset")

        return httpx.Response(200, content=body(), headers={"content-type": "text/event-stream"})

    async def run():
        bridge, pool = make_bridge(cut)
        status, body = await answer(bridge, chat_request(stream=True))
        return status, body, pool.states[0], bridge.records[-1]

    status, body, state, record = asyncio.run(run())
    assert status == 200 and b"par" in body and b"broke mid-response" in body
    assert record.error_kind == "upstream_unavailable" and state.in_flight == 0
    assert "broke mid-response" in (state.last_error or "")


def test_every_account_dead_is_a_503_that_says_why():
    async def run():
        bridge, pool = make_bridge(good_upstream, good_upstream)
        for state in pool.states:
            pool.report(state, AccountUnusable("suspended"))
        return await bridge.handle(chat_request())

    response = asyncio.run(run())
    message = json.loads(response.body)["error"]["message"]
    assert response.status == 503 and "unusable" in message and "a1: dead: suspended" in message


def test_no_candidates_is_no_account_or_a_model_the_doors_list_does_not_have():
    failover, _ = failover_over(OpenAIProvider(account(), httpx.AsyncClient()))
    with pytest.raises(ModelNotFound, match="GET /v1beta/models lists"):
        failover.candidates("nope", "/v1beta/models")
    empty, _ = failover_over()
    with pytest.raises(NoAccount):
        empty.candidates("m", "/v1/models")


def test_a_token_count_the_upstream_refuses_is_estimated_and_the_account_cools_down():
    async def run():
        failover, _ = failover_over(CountingRefused(account(), httpx.AsyncClient()))
        counted = await failover.count_tokens(request(), failover.candidates("m", "/v1/models"))
        return counted, failover.pool.states[0]

    (count, method), state = asyncio.run(run())
    assert method == "estimate" and count > 0
    assert state.in_flight == 0 and state.cooling_until > 0


def test_a_token_count_with_no_usable_account_is_estimated_without_asking():
    async def run():
        failover, _ = failover_over(CountingRefused(account(), httpx.AsyncClient()))
        state = failover.pool.states[0]
        failover.pool.report(state, RateLimited("busy", retry_after=30))
        return await failover.count_tokens(request(), failover.candidates("m", "/v1/models")), state

    (count, method), state = asyncio.run(run())
    assert method == "estimate" and state.last_error == "busy"  # not asked: its error is still the first


def test_max_wait_seconds_bounds_the_wait_for_a_pacing_slot():
    """With max_wait_seconds = 0 a request that would have to wait for a slot is a 429 at once; with
    room to wait it waits and is answered."""

    async def run(max_wait: float) -> tuple[int, float]:
        bridge, pool = make_bridge(good_upstream)
        bridge.failover.max_wait = max_wait
        pool.states[0].provider.account.max_concurrent = 1
        pool.states[0].in_flight = 1  # another answer holds the only slot
        started = asyncio.get_running_loop().time()
        release = asyncio.get_running_loop().call_later(0.3, lambda: pool.release(pool.states[0]))
        status = (await answer(bridge, chat_request()))[0]
        release.cancel()
        return status, asyncio.get_running_loop().time() - started

    refused, waited_refused = asyncio.run(run(0.0))
    answered, waited = asyncio.run(run(5.0))
    assert refused == 429 and waited_refused < 0.3
    assert answered == 200 and 0.25 <= waited < 5


def slow_body() -> httpx.Response:
    """A response head, then no content for far longer than the test's first-token timeout."""

    async def body():
        await asyncio.sleep(30)
        yield text_stream("too late")

    return httpx.Response(200, content=body(), headers={"content-type": "text/event-stream"})


@pytest.mark.parametrize("head", [True, False])
def test_a_silent_upstream_is_abandoned_after_the_first_token_timeout(head):
    async def silent(request):  # head False: not even the response head comes in time
        if not head:
            await asyncio.sleep(30)
        return slow_body()

    async def run():
        bridge, pool = make_bridge(silent, good_upstream)
        bridge.failover.first_token_timeout = 0.3
        status, body = await answer(bridge, chat_request(stream=True))
        return status, body, bridge.records[-1], pool.states[0]

    status, body, record, first = asyncio.run(asyncio.wait_for(run(), 10))
    assert status == 200 and b"ok" in body and b"too late" not in body
    assert [(a.account, a.error_kind) for a in record.attempts] == [("a0", "first_token_timeout"), ("a1", None)]
    assert first.cooling_kind == "first_token_timeout" and "no first token within 0.3 s" in (first.last_error or "")
    assert first.in_flight == 0


def test_a_non_stream_upstream_generating_past_the_first_token_timeout_is_waited_for():
    """A non-stream request goes upstream non-stream: its first token comes with its whole answer, so
    the first-token timeout does not apply (the stream above is cut at the same timeout)."""

    async def generating(request):
        assert "stream" not in json.loads(request.content)
        await asyncio.sleep(0.8)  # the model generating the whole answer, head included
        return streamed(text_stream("whole"))

    async def run():
        bridge, pool = make_bridge(generating, good_upstream)
        bridge.failover.first_token_timeout = 0.3
        status, body = await answer(bridge, chat_request())
        return status, json.loads(body), bridge.records[-1], pool.states[0]

    status, body, record, first = asyncio.run(asyncio.wait_for(run(), 10))
    assert status == 200 and body["choices"][0]["message"]["content"] == "whole"
    assert [(a.account, a.error_kind) for a in record.attempts] == [("a0", None)]
    assert first.cooling_kind is None


def test_a_whole_answer_that_is_an_error_fails_over_however_late_it_comes():
    """A stream is committed to after the peek's seconds; a whole answer is read to its end first
    (its client waits for all of it anyway), so an error object in a late 200 is a failed attempt."""

    def late_error(request):
        async def body():
            await asyncio.sleep(0.5)  # the head came at once; the body well past the peek's 0.1 s
            yield json.dumps({"error": {"message": "upstream overloaded", "type": "server_error"}}).encode()

        return httpx.Response(200, content=body(), headers={"content-type": "application/json"})

    async def run():
        bridge, pool = make_bridge(late_error, good_upstream)
        bridge.failover.peek_seconds = 0.1
        status, body = await answer(bridge, chat_request())
        return status, json.loads(body), bridge.records[-1]

    status, body, record = asyncio.run(asyncio.wait_for(run(), 10))
    assert status == 200 and body["choices"][0]["message"]["content"] == "ok"
    assert [(a.account, a.error_kind) for a in record.attempts] == [("a0", "upstream_error"), ("a1", None)]


def test_a_conversation_is_tried_first_on_the_account_that_answered_it():
    seen: list[str] = []

    def answering(name):
        def handler(request):
            seen.append(name)
            return streamed(text_stream(name))

        return handler

    async def run():
        bridge, pool = make_bridge(answering("a0"), answering("a1"))
        pool.strategy = "round-robin"
        for _ in range(4):
            await answer(bridge, chat_request())
        pool.affinity_on = False
        for _ in range(2):
            await answer(bridge, chat_request())

    asyncio.run(run())
    assert len(set(seen[:4])) == 1 and len(set(seen[4:])) == 2
