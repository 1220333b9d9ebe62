"""End to end: a non-stream client request to an API-key provider goes upstream non-stream.

The official openai, anthropic and google-genai SDKs -> the real bridge (`llmbridge serve`) -> the
strict fakes of the `openai`, `anthropic` and `gemini` providers, which answer a non-stream request as
the real APIs do (one JSON body, ready when the whole answer is) and refuse stream-only fields on it
(`stream_options` without `stream`, `alt=sse` on `:generateContent`). Each provider has two accounts
on its fake, so that failover and the first-token timeout have another account to go to.

Every door (OpenAI chat, Anthropic messages, Gemini generateContent, Responses) x every provider;
tool calls, thinking, usage and the recording; then, on a fresh bridge each, an upstream error that
fails over, a malformed 200 that becomes a clean error in the client's dialect, and a non-stream
upstream that generates longer than `first_token_timeout` without being cut.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import pytest
from google import genai
from google.genai import errors as genai_errors
from google.genai import types

from llmbridge.answer import OVERHEAD_HEADER
from tests.bridge_process import CLIENT_KEY, BridgeProcess, write_config
from tests.fakes import anthropic_api as fa
from tests.fakes import gemini_api as fg
from tests.fakes import openai_upstream as fo

pytestmark = pytest.mark.timeout(90)

GPT, CLAUDE, GEMINI = "gpt-test", "claude-test", "gemini-2.5-flash"
PROVIDERS = ("openai", "anthropic", "gemini")
DOORS = ("chat", "messages", "generate", "responses")
FIRST_TOKEN_TIMEOUT = 1.0
LONG_GENERATION = 2.5  # seconds a non-stream upstream takes before its answer: past the first-token timeout
WEATHER = {
    "name": "get_weather",
    "description": "Weather for a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}


@dataclass
class Fakes:
    openai: fo.FakeOpenAI
    anthropic: fa.FakeAnthropic
    gemini: fg.FakeGeminiAPI

    def calls(self, provider: str) -> int:
        return len(getattr(self, provider).requests)

    def assert_non_stream(self, provider: str, since: int = 0) -> None:
        """Every generate request since `since` went upstream non-stream, as the official SDK sends one."""
        if provider == "openai":
            for body, headers in zip(self.openai.requests[since:], self.openai.headers[since:], strict=True):
                assert "stream" not in body and "stream_options" not in body, body
                assert headers["accept"] == "application/json"
        elif provider == "anthropic":
            assert all("stream" not in body for body in self.anthropic.requests[since:])
        else:
            paths = [path for path, _ in self.gemini.generate_calls[since:]]
            assert paths and all(path.endswith(f"/models/{GEMINI}:generateContent") for path in paths), paths
        assert not getattr(self, provider).rejections


MODEL = {"openai": GPT, "anthropic": CLAUDE, "gemini": GEMINI}


def text(fakes: Fakes, provider: str, words: str, **kw: Any) -> None:
    """Script a text answer of `words` on the provider's fake."""
    if provider == "openai":
        fakes.openai.enqueue(fo.text_reply(words, **kw))
    elif provider == "anthropic":
        fakes.anthropic.enqueue(fa.Reply(events=fa.text_reply(words).events, **kw))
    else:
        half = len(words) // 2
        fakes.gemini.enqueue(fg.Reply(chunks=fg.text_reply(words[:half], words[half:]).chunks, **kw))


def accounts(fakes: Fakes) -> list[dict[str, Any]]:
    endpoints = {
        "openai": (fakes.openai.api_key, fakes.openai.base_url),
        "anthropic": (fakes.anthropic.api_key, fakes.anthropic.base_url),
        "gemini": (fakes.gemini.api_key, fakes.gemini.base_url),
    }
    return [
        {"name": f"{provider}-{n}", "provider": provider, "api_key": key, "base_url": url, "models": [MODEL[provider]]}
        for provider, (key, url) in endpoints.items()
        for n in (1, 2)
    ]


def start_bridge(workdir: Path, fakes: Fakes) -> BridgeProcess:
    config = write_config(
        workdir / "bridge.toml",
        accounts(fakes),
        record=True,
        database=str(workdir / "rec.db"),
        first_token_timeout=FIRST_TOKEN_TIMEOUT,
    )
    return BridgeProcess(workdir, config)


@pytest.fixture(scope="module")
def module_fakes() -> Iterator[Fakes]:
    with fo.FakeOpenAI() as oa, fa.FakeAnthropic() as an, fg.FakeGeminiAPI() as ge:
        yield Fakes(oa, an, ge)


@pytest.fixture(scope="module")
def bridge(module_fakes: Fakes, tmp_path_factory: pytest.TempPathFactory) -> Iterator[BridgeProcess]:
    with start_bridge(tmp_path_factory.mktemp("nonstream"), module_fakes) as process:
        yield process


@pytest.fixture
def fresh_fakes() -> Iterator[Fakes]:
    with fo.FakeOpenAI() as oa, fa.FakeAnthropic() as an, fg.FakeGeminiAPI() as ge:
        yield Fakes(oa, an, ge)


@pytest.fixture
def fresh_bridge(fresh_fakes: Fakes, tmp_path: Path) -> Iterator[BridgeProcess]:
    """A bridge of its own: these tests make accounts fail and cool down."""
    with start_bridge(tmp_path, fresh_fakes) as process:
        yield process


def oai(bridge: BridgeProcess) -> openai.OpenAI:
    return openai.OpenAI(base_url=bridge.base_url + "/v1", api_key=CLIENT_KEY, max_retries=0, timeout=30)


def ant(bridge: BridgeProcess) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=bridge.base_url, api_key=CLIENT_KEY, max_retries=0, timeout=30)


_genai: dict[int, genai.Client] = {}


def gen(bridge: BridgeProcess) -> genai.Client:
    if bridge.port not in _genai:  # kept alive: a collected client closes its HTTP connection mid-call
        options = types.HttpOptions(
            base_url=bridge.base_url, timeout=30_000, retry_options=types.HttpRetryOptions(attempts=1)
        )
        _genai[bridge.port] = genai.Client(api_key=CLIENT_KEY, http_options=options)
    return _genai[bridge.port]


def ask(bridge: BridgeProcess, door: str, model: str, prompt: str = "hi") -> str:
    """A non-stream request through `door` with the official SDK; the answer's text."""
    if door == "chat":
        reply = oai(bridge).chat.completions.create(model=model, messages=[{"role": "user", "content": prompt}])
        return reply.choices[0].message.content or ""
    if door == "messages":
        message = ant(bridge).messages.create(
            model=model, max_tokens=256, messages=[{"role": "user", "content": prompt}]
        )
        return "".join(block.text for block in message.content if block.type == "text")
    if door == "generate":
        return gen(bridge).models.generate_content(model=model, contents=prompt).text or ""
    return oai(bridge).responses.create(model=model, input=prompt).output_text


# --- every door x every provider ---------------------------------------------------------------------


@pytest.mark.parametrize("door", DOORS)
@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_non_stream_request_goes_upstream_non_stream(bridge, module_fakes, provider, door):
    before = module_fakes.calls(provider)
    text(module_fakes, provider, f"Hello through {door}")
    assert ask(bridge, door, MODEL[provider]) == f"Hello through {door}"
    assert module_fakes.calls(provider) == before + 1
    module_fakes.assert_non_stream(provider, before)


USAGE = {  # (prompt tokens, completion tokens, cached tokens) each fake's answers report
    "openai": (11, 7, 0),
    "anthropic": (20 + 5 + 3, 9, 5),  # input + cache reads + cache writes
    "gemini": (12, 6 + 2, 0),  # candidates + thoughts
}


@pytest.mark.parametrize("provider", PROVIDERS)
def test_usage_and_finish_reason_reach_the_client(bridge, module_fakes, provider):
    text(module_fakes, provider, "Counted answer")
    reply = oai(bridge).chat.completions.create(model=MODEL[provider], messages=[{"role": "user", "content": "x"}])
    usage = reply.usage
    assert (usage.prompt_tokens, usage.completion_tokens) == USAGE[provider][:2]
    cached = usage.prompt_tokens_details.cached_tokens if usage.prompt_tokens_details else 0
    assert cached == USAGE[provider][2]
    assert reply.choices[0].finish_reason == "stop"


def tool_call(fakes: Fakes, provider: str) -> None:
    if provider == "openai":
        call = {"index": 0, "id": "call_w1", "type": "function", "function": {"name": "get_weather", "arguments": ""}}
        args = [
            {"index": 0, "function": {"arguments": '{"city":'}},
            {"index": 0, "function": {"arguments": '"Paris"}'}},
        ]
        fakes.openai.enqueue(fo.Reply(deltas=[{"tool_calls": [call]}, {"tool_calls": args}], finish="tool_calls"))
    elif provider == "anthropic":
        fakes.anthropic.enqueue(fa.tool_reply("get_weather", "call_w1", {"city": "Paris"}, text="Checking."))
    else:
        fakes.gemini.enqueue(fg.tool_reply("get_weather", {"city": "Paris"}, call_id="call_w1"))


@pytest.mark.parametrize("provider", PROVIDERS)
def test_tool_calls_over_two_turns(bridge, module_fakes, provider):
    before = module_fakes.calls(provider)
    tool_call(module_fakes, provider)
    tools = [{"type": "function", "function": WEATHER}]
    messages: list[dict[str, Any]] = [{"role": "user", "content": "Weather in Paris?"}]
    first = oai(bridge).chat.completions.create(model=MODEL[provider], messages=messages, tools=tools)
    call = first.choices[0].message.tool_calls[0]
    assert first.choices[0].finish_reason == "tool_calls"
    assert (call.id, call.function.name, json.loads(call.function.arguments)) == (
        "call_w1",
        "get_weather",
        {"city": "Paris"},
    )
    text(module_fakes, provider, "Sunny today")
    messages += [
        first.choices[0].message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": "sunny, 24C"},
    ]
    second = oai(bridge).chat.completions.create(model=MODEL[provider], messages=messages, tools=tools)
    assert second.choices[0].message.content == "Sunny today"
    module_fakes.assert_non_stream(provider, before)


def test_anthropic_thinking_keeps_its_signature_for_the_next_turn(bridge, module_fakes):
    before = module_fakes.calls("anthropic")
    module_fakes.anthropic.enqueue(fa.thinking_reply("Let me think.", "c2lnbmF0dXJl", "Forty-two."))
    thinking = {"type": "enabled", "budget_tokens": 2048}
    question = {"role": "user", "content": "meaning of life?"}
    first = ant(bridge).messages.create(model=CLAUDE, max_tokens=4096, thinking=thinking, messages=[question])
    assert [block.type for block in first.content] == ["thinking", "text"]
    assert (first.content[0].thinking, first.content[0].signature) == ("Let me think.", "c2lnbmF0dXJl")
    module_fakes.anthropic.enqueue(fa.text_reply("Because."))
    turn = [question, {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in first.content]}]
    second = ant(bridge).messages.create(
        model=CLAUDE, max_tokens=4096, thinking=thinking, messages=[*turn, {"role": "user", "content": "why?"}]
    )
    assert second.content[0].text == "Because."
    sent = module_fakes.anthropic.requests[-1]["messages"][1]["content"][0]
    assert sent == {"type": "thinking", "thinking": "Let me think.", "signature": "c2lnbmF0dXJl"}
    module_fakes.assert_non_stream("anthropic", before)


def test_an_anthropic_request_too_long_for_one_body_is_streamed_upstream_and_answered_whole(bridge, module_fakes):
    """As the Anthropic SDK requires: past 21,333 max_tokens a non-stream call is made as a stream."""
    module_fakes.anthropic.enqueue(fa.text_reply("A long essay."))
    message = ant(bridge).messages.create(
        model=CLAUDE, max_tokens=32_000, messages=[{"role": "user", "content": "Write at length."}]
    )
    assert message.content[0].text == "A long essay." and message.stop_reason == "end_turn"
    assert module_fakes.anthropic.requests[-1]["stream"] is True


def test_gemini_thoughts_reach_the_genai_client(bridge, module_fakes):
    before = module_fakes.calls("gemini")
    module_fakes.gemini.enqueue(fg.text_reply("Forty", "-two.", thought="Counting first."))
    config = types.GenerateContentConfig(thinking_config=types.ThinkingConfig(include_thoughts=True))
    response = gen(bridge).models.generate_content(model=GEMINI, contents="meaning of life?", config=config)
    parts = response.candidates[0].content.parts
    assert [(bool(p.thought), p.text) for p in parts] == [(True, "Counting first."), (False, "Forty-two.")]
    assert response.usage_metadata.thoughts_token_count == 2
    module_fakes.assert_non_stream("gemini", before)


def test_openai_reasoning_content_reaches_the_chat_client(bridge, module_fakes):
    module_fakes.openai.enqueue(fo.Reply(deltas=[{"reasoning_content": "Hmm."}, {"content": "Done."}]))
    reply = oai(bridge).chat.completions.create(model=GPT, messages=[{"role": "user", "content": "x"}])
    assert reply.choices[0].message.content == "Done."
    assert (reply.choices[0].message.model_extra or {}).get("reasoning_content") == "Hmm."


def test_the_recording_holds_the_whole_upstream_body_redacted(bridge, module_fakes, tmp_path_factory):
    key = module_fakes.openai.api_key
    answer = fo.completion(fo.Reply(deltas=[{"content": f"echo {key}"}], usage={"prompt_tokens": 3}), GPT)
    answer["api_key"] = "sk-field-the-server-echoed"  # a secret field: redacted by structure
    module_fakes.openai.enqueue(fo.Reply(raw=json.dumps(answer).encode()))
    reply = oai(bridge).chat.completions.create(model=GPT, messages=[{"role": "user", "content": "secret-check"}])
    assert reply.choices[0].message.content == f"echo {key}"
    db = Path(bridge.workdir) / "rec.db"
    attempt, exchange = recorded(db, "secret-check")
    body = bytes(attempt["response_body"])
    assert json.loads(body)["choices"][0]["message"]["content"].startswith("echo ")
    assert key.encode() not in body and b"sk-field-the-server-echoed" not in body
    assert attempt["status"] == 200 and attempt["url"].endswith("/v1/chat/completions")
    assert "stream" not in json.loads(attempt["request_json"])
    assert (exchange["stream"], exchange["status"], exchange["input_tokens"]) == (0, 200, 3)
    assert exchange["finish_reason"] == "stop"


def recorded(db: Path, prompt: str, timeout: float = 10) -> tuple[dict[str, Any], dict[str, Any]]:
    """The last attempt and the exchange of the request whose client body holds `prompt` (the
    recorder writes off the hot path: waited for)."""
    deadline = time.monotonic() + timeout
    while True:
        conn = sqlite3.connect(db)
        conn.row_factory = sqlite3.Row
        try:
            exchange = conn.execute(
                "SELECT * FROM exchanges WHERE request_raw LIKE ? ORDER BY started_at DESC", (f"%{prompt}%",)
            ).fetchone()
            attempt = (
                exchange
                and conn.execute(
                    "SELECT * FROM attempts WHERE exchange_id = ? ORDER BY position DESC", (exchange["id"],)
                ).fetchone()
            )
        except sqlite3.OperationalError:  # not created yet
            exchange = attempt = None
        finally:
            conn.close()
        if attempt is not None:
            return dict(attempt), dict(exchange)
        assert time.monotonic() < deadline, f"no exchange recorded for {prompt!r}"
        time.sleep(0.1)


# --- failures and long answers, each on a fresh bridge -------------------------------------------------


def upstream_error(fakes: Fakes, provider: str) -> None:
    if provider == "openai":
        fakes.openai.enqueue(fo.Reply(status=500, error_body={"error": {"message": "The server had an error"}}))
    elif provider == "anthropic":
        fakes.anthropic.enqueue(fa.error_reply(529, "overloaded_error", "Overloaded"))
    else:
        fakes.gemini.enqueue(fg.status_reply(503, "UNAVAILABLE", "The model is overloaded."))


def post_chat(bridge: BridgeProcess, model: str, stream: bool = False) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    response = httpx.post(
        bridge.base_url + "/v1/chat/completions",
        json={"model": model, "messages": [{"role": "user", "content": "hi"}], "stream": stream},
        headers={"authorization": f"Bearer {CLIENT_KEY}"},
        timeout=30,
    )
    return response, time.monotonic() - started


@pytest.mark.parametrize("provider", PROVIDERS)
def test_an_upstream_error_fails_over_to_the_next_account(fresh_bridge, fresh_fakes, provider):
    upstream_error(fresh_fakes, provider)
    text(fresh_fakes, provider, "Second account")
    response, _ = post_chat(fresh_bridge, MODEL[provider])
    assert response.status_code == 200, response.text
    assert response.json()["choices"][0]["message"]["content"] == "Second account"
    assert response.headers["x-llmbridge-attempts"] == "2"
    assert fresh_fakes.calls(provider) == 2
    fresh_fakes.assert_non_stream(provider)


def error_at_200(provider: str) -> bytes:
    """An error object answered with status 200 (seen from overloaded gateways)."""
    if provider == "openai":
        return json.dumps({"error": {"message": "upstream overloaded", "type": "server_error"}}).encode()
    if provider == "anthropic":
        return json.dumps({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}).encode()
    return json.dumps({"error": {"code": 503, "message": "The model is overloaded.", "status": "UNAVAILABLE"}}).encode()


def broken(fakes: Fakes, provider: str, body: bytes) -> None:
    """Script a 200 whose body is `body` as it is."""
    if provider == "openai":
        fakes.openai.enqueue(fo.Reply(raw=body))
    elif provider == "anthropic":
        fakes.anthropic.enqueue(fa.Reply(whole=body))
    else:
        fakes.gemini.enqueue(fg.Reply(whole=body))


@pytest.mark.parametrize("provider", PROVIDERS)
def test_an_error_object_in_a_200_fails_over_too(fresh_bridge, fresh_fakes, provider):
    broken(fresh_fakes, provider, error_at_200(provider))
    text(fresh_fakes, provider, "Second account")
    response, _ = post_chat(fresh_bridge, MODEL[provider])
    assert response.status_code == 200 and response.json()["choices"][0]["message"]["content"] == "Second account"
    assert response.headers["x-llmbridge-attempts"] == "2"
    fresh_fakes.assert_non_stream(provider)


def malformed_in_dialect(bridge: BridgeProcess, door: str, model: str) -> tuple[int, str]:
    """(status, message) of the error the SDK of `door` raised."""
    call: Callable[[], object] = {
        "chat": lambda: ask(bridge, "chat", model),
        "messages": lambda: ask(bridge, "messages", model),
        "generate": lambda: ask(bridge, "generate", model),
    }[door]
    try:
        call()
    except (openai.APIStatusError, anthropic.APIStatusError) as e:
        return e.status_code, str(e)
    except genai_errors.APIError as e:
        return e.code, str(e)
    raise AssertionError("the malformed answer reached the client as an answer")


@pytest.mark.parametrize(
    "provider,door", [("openai", "messages"), ("anthropic", "generate"), ("gemini", "chat")], ids=str
)
def test_a_malformed_200_is_a_clean_502_in_the_clients_dialect(fresh_bridge, fresh_fakes, provider, door):
    for _ in range(2):  # both accounts answer it
        broken(fresh_fakes, provider, b'{"id": "x", "choices": [{"message": {"content": "half')
    status, message = malformed_in_dialect(fresh_bridge, door, MODEL[provider])
    assert status == 502
    assert "answered with a malformed answer: a body that is not JSON" in message
    assert fresh_fakes.calls(provider) == 2
    fresh_fakes.assert_non_stream(provider)


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_long_non_stream_generation_is_not_cut_by_the_first_token_timeout(fresh_bridge, fresh_fakes, provider):
    """Another account could answer, so a stream would be cut after FIRST_TOKEN_TIMEOUT without content;
    a non-stream upstream shows its first token only with its whole answer, and is waited for."""
    if provider == "openai":
        fresh_fakes.openai.enqueue(fo.text_reply("Slow but whole", pieces=1, delay=LONG_GENERATION / 2))
    else:
        text(fresh_fakes, provider, "Slow but whole", delay=LONG_GENERATION)
    response, elapsed = post_chat(fresh_bridge, MODEL[provider])
    assert response.status_code == 200, response.text
    assert response.json()["choices"][0]["message"]["content"] == "Slow but whole"
    assert response.headers["x-llmbridge-attempts"] == "1" and fresh_fakes.calls(provider) == 1
    assert elapsed >= LONG_GENERATION
    # the bridge's own time leaves the upstream's generation out (a generous bound for a loaded machine)
    assert float(response.headers[OVERHEAD_HEADER]) < 1000
    fresh_fakes.assert_non_stream(provider)


def test_a_stream_as_slow_to_start_is_cut_and_answered_by_the_next_account(fresh_bridge, fresh_fakes):
    """The contrast that shows the first-token timeout is on in these bridges."""
    fresh_fakes.openai.enqueue(fo.text_reply("too late", pieces=1, header_delay=LONG_GENERATION))
    fresh_fakes.openai.enqueue(fo.text_reply("in time", pieces=1))
    response, _ = post_chat(fresh_bridge, GPT, stream=True)
    assert response.status_code == 200 and "in time" in response.text and "too late" not in response.text
    assert response.headers["x-llmbridge-attempts"] == "2"
    assert all(body["stream"] is True for body in fresh_fakes.openai.requests)
