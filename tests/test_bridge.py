"""The bridge core without mitmproxy: routing, authentication, parsing, dispatch and error answers.

Failover (accounts tried in turn, peeking, pool bookkeeping) is tested in test_failover.py; the
routes every door declares in test_format_contract.py."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest

from llmbridge.answer import DeferredAnswer
from llmbridge.formats.base import RenderOptions
from tests.bridge_kit import KEY, IncomingRequest, answer, chat_request, make_bridge, sse, streamed, text_stream


def test_a_non_stream_answer_cut_short_is_an_error_not_a_200():
    """The non-stream request goes upstream non-stream; its JSON body breaks off halfway."""

    def cut(request):
        assert "stream" not in json.loads(request.content)
        return streamed(b'{"id":"u","object":"chat.completion","choices":[{"index":0,"message":{"content":"The ans')

    async def run():
        bridge, _ = make_bridge(cut)
        return await answer(bridge, chat_request())

    status, body = asyncio.run(run())
    assert status == 502
    message = json.loads(body)["error"]["message"]
    assert "answered with a malformed answer: a body that is not JSON" in message


def test_a_stream_cut_short_ends_with_an_error_event():
    def cut(request):
        partial = b'data: {"id":"u","model":"m","choices":[{"index":0,"delta":{"content":"The answer is"}}]}\n\n'
        return streamed(partial)

    async def run():
        bridge, _ = make_bridge(cut)
        return await answer(bridge, chat_request(stream=True))

    status, body = asyncio.run(run())
    assert status == 200 and b"The answer is" in body
    assert b"ended before the response was complete" in body


@pytest.mark.parametrize(
    "headers,shape",
    [
        ({"authorization": f"Bearer {KEY}"}, "data"),
        ({"x-goog-api-key": KEY}, "models"),
    ],
)
def test_v1_models_answers_in_the_callers_dialect(headers, shape):
    async def run():
        bridge, _ = make_bridge(lambda r: httpx.Response(500))
        return await bridge.handle(IncomingRequest("GET", "/v1/models", headers, b""))

    response = asyncio.run(run())
    assert response.status == 200 and shape in json.loads(response.body)


def test_peeked_events_are_all_replayed():
    whole = sse(
        {
            "id": "u",
            "model": "m",
            "choices": [
                {
                    "index": 0,
                    "delta": {
                        "tool_calls": [
                            {
                                "index": 0,
                                "id": "c1",
                                "type": "function",
                                "function": {"name": "Glob", "arguments": '{"pattern":"*.py"}'},
                            }
                        ]
                    },
                }
            ],
        },
        {"id": "u", "model": "m", "choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]},
    )

    async def run():
        bridge, _ = make_bridge(lambda request: streamed(whole))
        return await answer(bridge, chat_request())

    status, body = asyncio.run(run())
    call = json.loads(body)["choices"][0]["message"]["tool_calls"][0]
    assert status == 200 and json.loads(call["function"]["arguments"]) == {"pattern": "*.py"}


def test_a_client_gone_before_its_stream_opened_stops_the_opening_and_frees_the_slot():
    from llmbridge.relay import Relay

    def silent(request):
        async def body():
            await asyncio.sleep(30)
            yield b""

        return httpx.Response(200, content=body(), headers={"content-type": "text/event-stream"})

    async def run():
        bridge, pool = make_bridge(silent)
        relay = Relay()
        outcome = await bridge.handle(chat_request(stream=True))
        assert isinstance(outcome, DeferredAnswer)
        token = relay.park(outcome)
        await asyncio.sleep(0.05)  # the upstream answered 200; the peek waits for content
        await asyncio.wait_for(relay.unpark(token), 2)  # mitmproxy's error hook: the client is gone
        return bridge.records, [s.in_flight for s in pool.states]

    records, in_flight = asyncio.run(run())
    assert in_flight == [0]
    assert len(records) == 1 and records[0].client_disconnected and records[0].error_kind is None


# --- routing: every name a door lists can be asked for ----------------------------------------------

GEMINI_KEY = {"x-goog-api-key": KEY}
SSE, JSON_ARRAY = RenderOptions(), RenderOptions(json_array=True)


@pytest.mark.parametrize(
    "method,target,headers,action,model,stream,options",
    [
        ("POST", "/v1beta/models/m:generateContent", {}, "chat", "m", False, SSE),
        ("POST", "/v1beta/models/openai/m:generateContent", {}, "chat", "openai/m", False, SSE),
        ("POST", "/v1beta/models/openai%2Fm:generateContent", {}, "chat", "openai/m", False, SSE),
        ("POST", "/v1beta/models/openai%2fm:generateContent", {}, "chat", "openai/m", False, SSE),
        ("POST", "/v1beta/models/models%2Fopenai%2Fm:generateContent", {}, "chat", "openai/m", False, SSE),
        ("POST", "/v1beta/models/openai/m:streamGenerateContent", {}, "chat", "openai/m", True, JSON_ARRAY),
        ("POST", "/v1beta/models/openai%2Fm:streamGenerateContent?alt=sse", {}, "chat", "openai/m", True, SSE),
        ("POST", "/v1beta/models/openai/m:countTokens", {}, "count_tokens", "openai/m", None, SSE),
        ("POST", "/v1beta/models/openai%2Fm:countTokens", {}, "count_tokens", "openai/m", None, SSE),
        ("POST", "/v1/models/openai/m:generateContent", {}, "chat", "openai/m", False, SSE),
        ("POST", "/v1/models/openai%2Fm:streamGenerateContent?alt=sse", GEMINI_KEY, "chat", "openai/m", True, SSE),
        ("POST", "/v1/models/openai/m:countTokens", GEMINI_KEY, "count_tokens", "openai/m", None, SSE),
        # a model id with its own slash and colon (vLLM's `openai/gpt-oss-20b`, Ollama's `llama3:8b`)
        (
            "POST",
            "/v1beta/models/vllm/openai/gpt-oss:20b:generateContent",
            {},
            "chat",
            "vllm/openai/gpt-oss:20b",
            False,
            SSE,
        ),
        # percent-escapes are decoded exactly once: %25 is a literal '%', %3A a colon inside the model id
        ("POST", "/v1beta/models/a%252Fb:generateContent", {}, "chat", "a%2Fb", False, SSE),
        ("POST", "/v1beta/models/llama3%3A8b:generateContent", {}, "chat", "llama3:8b", False, SSE),
        ("GET", "/v1beta/models/openai/m", {}, "model", "openai/m", None, SSE),
        ("GET", "/v1beta/models/openai%2Fm", {}, "model", "openai/m", None, SSE),
        ("GET", "/v1beta/models/models/openai/m", {}, "model", "openai/m", None, SSE),
        ("GET", "/v1beta/models/llama3:8b", {}, "model", "llama3:8b", None, SSE),
        ("GET", "/v1/models/openai/m", GEMINI_KEY, "model", "openai/m", None, SSE),
        ("GET", "/v1/models/openai%2Fm?key=k", {}, "model", "openai/m", None, SSE),
        # the OpenAI door
        ("GET", "/v1/models/openai/m", {}, "model", "openai/m", None, SSE),
        ("GET", "/v1/models/openai%2Fm", {}, "model", "openai/m", None, SSE),
        ("GET", "/v1/models/llama3:8b", {}, "model", "llama3:8b", None, SSE),
    ],
)
def test_route_takes_model_ids_with_slashes_raw_or_percent_encoded(
    method, target, headers, action, model, stream, options
):
    bridge, _ = make_bridge(lambda r: httpx.Response(500))
    route = bridge.route(method, target, headers)
    dialect = (
        "openai" if method == "GET" and target.startswith("/v1/") and not (headers or "key=" in target) else "gemini"
    )
    assert (route.client_format.name, route.action, route.model, route.stream, route.options) == (
        dialect,
        action,
        model,
        stream,
        options,
    )


@pytest.mark.parametrize(
    "method,target",
    [
        ("GET", "/v1beta/models/m:generateContent"),
        ("POST", "/v1beta/models/m:embedContent"),
        ("POST", "/v1beta/models/m"),
        ("PUT", "/v1beta/models/openai/m:generateContent"),
    ],
)
def test_gemini_paths_the_bridge_does_not_serve_are_404(method, target):
    async def run():
        bridge, _ = make_bridge(lambda r: httpx.Response(500))
        return await bridge.handle(IncomingRequest(method, target, dict(GEMINI_KEY), b"{}"))

    response = asyncio.run(run())
    assert response.status == 404 and "no route" in json.loads(response.body)["error"]["message"]


def gemini_body() -> bytes:
    return json.dumps({"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}).encode()


def test_every_name_the_gemini_door_lists_can_be_got_and_generated_with():
    async def run():
        bridge, _ = make_bridge(lambda request: streamed(text_stream("ok")))
        listing = await bridge.handle(IncomingRequest("GET", "/v1beta/models", dict(GEMINI_KEY), b""))
        names = [m["name"] for m in json.loads(listing.body)["models"]]
        outcomes = {}
        for name in names:
            for spelled in (name, name.replace("/", "%2F")):  # `models%2Fopenai%2Fm` too
                base = f"/v1beta/{spelled}" if spelled.startswith("models/") else f"/v1beta/models/{spelled}"
                got = await bridge.handle(IncomingRequest("GET", base, dict(GEMINI_KEY), b""))
                generated = await answer(
                    bridge, IncomingRequest("POST", f"{base}:generateContent", dict(GEMINI_KEY), gemini_body())
                )
                streamed_sse = await answer(
                    bridge,
                    IncomingRequest("POST", f"{base}:streamGenerateContent?alt=sse", dict(GEMINI_KEY), gemini_body()),
                )
                counted = await bridge.handle(
                    IncomingRequest("POST", f"{base}:countTokens", dict(GEMINI_KEY), gemini_body())
                )
                outcomes[spelled] = (
                    got.status,
                    json.loads(got.body).get("name"),
                    generated[0],
                    streamed_sse[0],
                    b"ok" in streamed_sse[1],
                    counted.status,
                )
        return names, outcomes, bridge.records

    names, outcomes, records = asyncio.run(run())
    assert names == ["models/m", "models/openai/m"]
    for spelled, outcome in outcomes.items():
        name = spelled.replace("%2F", "/")
        assert outcome == (200, name, 200, 200, True, 200), spelled
    assert {r.model_requested for r in records} == {"m", "openai/m"}


def test_the_openai_door_gets_a_pinned_model_raw_or_percent_encoded():
    async def run():
        bridge, _ = make_bridge(lambda r: httpx.Response(500))
        headers = {"authorization": f"Bearer {KEY}"}
        return [
            await bridge.handle(IncomingRequest("GET", path, dict(headers), b""))
            for path in ("/v1/models/openai/m", "/v1/models/openai%2Fm", "/v1/models/openai%2Fnope")
        ]

    raw, encoded, unknown = asyncio.run(run())
    assert raw.status == encoded.status == 200
    assert json.loads(raw.body)["id"] == json.loads(encoded.body)["id"] == "openai/m"
    assert unknown.status == 404 and "'openai/nope'" in json.loads(unknown.body)["error"]["message"]


# --- the record of a refused request names the model it asked for ------------------------------------

OPENAI_AUTH = {"authorization": f"Bearer {KEY}"}
MESSAGES = [{"role": "user", "content": "hi"}]


@pytest.mark.parametrize(
    "method,target,headers,body,status,model,stream",
    [
        # parses as JSON, fails validation
        (
            "POST",
            "/v1/chat/completions",
            OPENAI_AUTH,
            {"model": "m", "messages": MESSAGES, "n": 2, "stream": True},
            400,
            "m",
            True,
        ),
        (
            "POST",
            "/v1/chat/completions",
            OPENAI_AUTH,
            {"model": "m", "messages": MESSAGES, "bogus": 1},
            400,
            "m",
            False,
        ),
        ("POST", "/v1/chat/completions", OPENAI_AUTH, {"model": "m", "messages": "hi"}, 400, "m", False),
        (
            "POST",
            "/v1/chat/completions",
            OPENAI_AUTH,
            {"model": "m", "messages": MESSAGES, "stream": "yes"},
            400,
            "m",
            False,
        ),
        ("POST", "/v1/chat/completions", OPENAI_AUTH, {"model": 7, "messages": MESSAGES}, 400, None, False),
        (
            "POST",
            "/v1/messages",
            {"x-api-key": KEY},
            {"model": "m", "messages": MESSAGES, "stream": True},
            400,
            "m",
            True,
        ),
        ("POST", "/v1/messages/count_tokens", {"x-api-key": KEY}, {"model": "m", "messages": "x"}, 400, "m", False),
        (
            "POST",
            "/v1beta/models/openai%2Fm:streamGenerateContent?alt=sse",
            GEMINI_KEY,
            {"contents": "x"},
            400,
            "openai/m",
            True,
        ),
        (
            "POST",
            "/v1beta/models/m:generateContent",
            GEMINI_KEY,
            {"contents": [], "cachedContent": "c"},
            400,
            "m",
            False,
        ),
        ("POST", "/v1beta/models/m:countTokens", GEMINI_KEY, "not json", 400, "m", False),
        # valid, but no account serves the model
        (
            "POST",
            "/v1/chat/completions",
            OPENAI_AUTH,
            {"model": "nope", "messages": MESSAGES, "stream": True},
            404,
            "nope",
            True,
        ),
        (
            "POST",
            "/v1beta/models/openai/nope:generateContent",
            GEMINI_KEY,
            {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]},
            404,
            "openai/nope",
            False,
        ),
        ("GET", "/v1/models/openai%2Fnope", OPENAI_AUTH, None, 404, "openai/nope", False),
    ],
)
def test_a_refused_request_is_recorded_with_the_model_and_stream_flag_it_named(
    method, target, headers, body, status, model, stream
):
    async def run():
        bridge, _ = make_bridge(lambda r: httpx.Response(500))
        raw = b"" if body is None else body.encode() if isinstance(body, str) else json.dumps(body).encode()
        response = await bridge.handle(IncomingRequest(method, target, dict(headers), raw))
        return response, bridge.records

    response, records = asyncio.run(run())
    assert response.status == status
    assert len(records) == 1
    record = records[0]
    assert (record.status, record.model_requested, record.stream) == (status, model, stream)
    assert record.error_kind is not None and record.key_label == "t"
