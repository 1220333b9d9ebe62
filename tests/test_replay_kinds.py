"""Offline mode's conversions (`llmbridge.replay_kinds`), for each API-key provider and both ways: a
recorded stream answers a non-stream call, a recorded whole answer a stream call.

The recordings are what the strict fakes send for each kind of request (the real APIs' shapes). A
converted whole answer must be what the fake sends for a non-stream request, field for field (less the
few fields the doors do not write, named here); either conversion must decode, with the provider's own
decoder of that kind, to the very result the fake's own answer of that kind decodes to.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import httpx
import pytest

from llmbridge.accumulate import StreamAccumulator
from llmbridge.canonical import ChatResult
from llmbridge.providers.base import provider_class
from llmbridge.replay import Fixture, ReplayServer
from llmbridge.replay_kinds import read_call
from tests.fakes import anthropic_api, gemini_api, openai_upstream

OPENAI_USAGE = {
    "prompt_tokens": 40,
    "completion_tokens": 12,
    "total_tokens": 52,
    "prompt_tokens_details": {"cached_tokens": 32},
    "completion_tokens_details": {"reasoning_tokens": 5},
}
OPENAI_CALLS = [
    {"index": 0, "id": "call_a", "type": "function", "function": {"name": "get_weather", "arguments": '{"ci'}},
    {"index": 0, "function": {"arguments": 'ty": "Lisbon"}'}},
    {"index": 1, "id": "call_b", "type": "function", "function": {"name": "get_time", "arguments": "{}"}},
]
QUESTION = "Name a colour."


@dataclass
class Provider:
    """How to ask one provider's strict fake for both kinds of answer."""

    name: str
    fake: Callable[[], Any]
    headers: dict[str, str]
    whole_target: str
    stream_target: str
    body: Callable[[bool], dict[str, Any]]
    replies: dict[str, Any]
    not_written: frozenset[str] = frozenset()  # fields of the real answer the door does not write


def openai_body(stream: bool) -> dict[str, Any]:
    body: dict[str, Any] = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": QUESTION}]}
    return body | {"stream": True, "stream_options": {"include_usage": True}} if stream else body


def anthropic_body(stream: bool) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": "claude-haiku-4-5",
        "messages": [{"role": "user", "content": [{"type": "text", "text": QUESTION}]}],
        "max_tokens": 2048,
        "thinking": {"type": "enabled", "budget_tokens": 1024},
    }
    return body | {"stream": True} if stream else body


def gemini_body(stream: bool) -> dict[str, Any]:
    return {
        "contents": [{"role": "user", "parts": [{"text": QUESTION}]}],
        "generationConfig": {"thinkingConfig": {"includeThoughts": True}},
    }


GEMINI_MODEL = "/v1beta/models/gemini-2.5-flash-lite"
PROVIDERS = {
    "openai": Provider(
        "openai",
        openai_upstream.FakeOpenAI,
        {"authorization": "Bearer sk-upstream-secret"},
        "/v1/chat/completions",
        "/v1/chat/completions",
        openai_body,
        {
            "text": openai_upstream.Reply(
                deltas=[{"reasoning_content": "Think."}, {"content": "Ma"}, {"content": "uve."}], usage=OPENAI_USAGE
            ),
            "tools": openai_upstream.Reply(
                deltas=[{"content": "Checking."}, {"tool_calls": OPENAI_CALLS[:2]}, {"tool_calls": OPENAI_CALLS[2:]}],
                finish="tool_calls",
                usage=OPENAI_USAGE,
            ),
        },
        frozenset({"service_tier", "system_fingerprint", "annotations"}),  # optional in the SDKs
    ),
    "anthropic": Provider(
        "anthropic",
        anthropic_api.FakeAnthropic,
        {"x-api-key": "sk-ant-upstream-secret", "anthropic-version": "2023-06-01"},
        "/v1/messages",
        "/v1/messages",
        anthropic_body,
        {
            "text": anthropic_api.thinking_reply("Warm, then.", "c2lnLWNsYXVkZQ==", "Crimson."),
            "tools": anthropic_api.tool_reply("get_weather", "toolu_01", {"city": "Lisbon"}, text="Checking."),
        },
    ),
    "gemini": Provider(
        "gemini",
        gemini_api.FakeGeminiAPI,
        {"x-goog-api-key": "AIza-fake-upstream-key"},
        f"{GEMINI_MODEL}:generateContent",
        f"{GEMINI_MODEL}:streamGenerateContent?alt=sse",
        gemini_body,
        {
            "text": gemini_api.text_reply("Se", "pia.", thought="An earthy one."),
            "tools": gemini_api.tool_reply("get_weather", {"city": "Lisbon"}, call_id="call_1"),
        },
    ),
}
CASES = [(name, reply) for name in PROVIDERS for reply in ("text", "tools")]


@dataclass
class Recorded:
    content_type: str
    body: bytes


def both_kinds(provider: Provider, reply: Any) -> tuple[Recorded, Recorded]:
    """The fake's answer to the stream request and to the non-stream one, for the same script."""
    answers = []
    with provider.fake() as fake:
        fake.enqueue(reply, reply)
        for stream in (True, False):
            target = provider.stream_target if stream else provider.whole_target
            answer = httpx.post(fake.origin + target, json=provider.body(stream), headers=provider.headers, timeout=10)
            assert answer.status_code == 200, answer.text
            answers.append(Recorded(answer.headers["content-type"], answer.content))
    return answers[0], answers[1]


def fixture(provider: Provider, stream: bool, recorded: Recorded, status: int = 200, name: str = "rec") -> Fixture:
    target = provider.stream_target if stream else provider.whole_target
    data = {
        "provider": provider.name,
        "exchange_id": "0123",
        "request": {"method": "POST", "url": "http://127.0.0.1:9" + target, "body": provider.body(stream)},
        "response": {
            "status": status,
            "headers": {"content-type": recorded.content_type},
            "body_base64": base64.b64encode(recorded.body).decode(),
        },
    }
    return Fixture(Path(f"{name}.json"), data)


def decoded(provider: Provider, stream: bool, body: bytes) -> ChatResult:
    """What the provider's own decoder of that kind reads from `body`, accumulated."""
    decoder = provider_class(provider.name).answer_decoder(stream)
    assert decoder is not None
    accumulator = StreamAccumulator("unset", "unset")
    accumulator.feed_all(decoder.feed(body) + decoder.close())
    result = accumulator.result()
    assert result.error is None, result.error
    return result


def ask(server: ReplayServer, provider: Provider, stream: bool) -> tuple[int, str, bytes]:
    """A call of this kind whose prompt differs from the recording (so: the nearest recording)."""
    body = provider.body(stream)
    body_text = json.dumps(body).replace(QUESTION, "Name a fruit.")
    return server.reply("POST", provider.stream_target if stream else provider.whole_target, json.loads(body_text))


def same_fields(ours: Any, theirs: Any, not_written: frozenset[str], where: str = "") -> None:
    """Every field of the real answer, with its value, in ours, and nothing else (tool arguments are
    JSON text: compared as JSON; `created` is a time)."""
    if isinstance(theirs, dict):
        assert isinstance(ours, dict), where
        assert set(ours) == set(theirs) - not_written, (where, sorted(ours), sorted(theirs))
        for key in ours:
            if key == "arguments":
                assert json.loads(ours[key]) == json.loads(theirs[key]), where
            elif key != "created":
                same_fields(ours[key], theirs[key], not_written, f"{where}.{key}")
    elif isinstance(theirs, list):
        assert isinstance(ours, list) and len(ours) == len(theirs), (where, ours, theirs)
        for i, (a, b) in enumerate(zip(ours, theirs)):
            same_fields(a, b, not_written, f"{where}[{i}]")
    else:
        assert ours == theirs, (where, ours, theirs)


@pytest.mark.parametrize(("name", "reply"), CASES)
def test_a_stream_recording_answers_a_non_stream_call_as_the_real_api_would(name, reply):
    provider = PROVIDERS[name]
    stream, whole = both_kinds(provider, provider.replies[reply])
    server = ReplayServer([fixture(provider, True, stream)], nearest=True)
    status, content_type, body = ask(server, provider, stream=False)
    assert status == 200 and content_type == "application/json", body
    same_fields(json.loads(body), json.loads(whole.body), provider.not_written)
    assert (
        decoded(provider, False, body) == decoded(provider, False, whole.body) == decoded(provider, True, stream.body)
    )
    assert server.approximated[-1].endswith("converted from a stream recording (rec.json)")


@pytest.mark.parametrize(("name", "reply"), CASES)
def test_a_non_stream_recording_answers_a_stream_call(name, reply):
    provider = PROVIDERS[name]
    stream, whole = both_kinds(provider, provider.replies[reply])
    server = ReplayServer([fixture(provider, False, whole)], nearest=True)
    status, content_type, body = ask(server, provider, stream=True)
    assert status == 200 and content_type == "text/event-stream", body
    assert decoded(provider, True, body) == decoded(provider, True, stream.body)
    assert server.approximated[-1].endswith("converted from a non-stream recording (rec.json)")


def test_gemini_stream_and_non_stream_paths_are_the_same_call():
    whole = read_call("POST", f"{GEMINI_MODEL}:generateContent", {})
    stream = read_call("POST", f"{GEMINI_MODEL}:streamGenerateContent?alt=sse", {})
    other_model = read_call("POST", "/v1beta/models/gemini-2.5-pro:generateContent", {})
    assert whole.same == stream.same != other_model.same
    assert (whole.stream, stream.stream) == (False, True)
    counting = read_call("POST", f"{GEMINI_MODEL}:countTokens", {})
    assert counting.same != whole.same and counting.route is None
    kiro = read_call("POST", "/generateAssistantResponse", {"conversationState": {}})
    assert kiro.same == ("POST", "/generateAssistantResponse") and not kiro.stream


def test_a_recording_of_the_kind_asked_comes_before_one_to_convert():
    provider = PROVIDERS["openai"]
    stream, whole = both_kinds(provider, provider.replies["text"])
    recordings = [fixture(provider, True, stream, name="stream"), fixture(provider, False, whole, name="whole")]
    server = ReplayServer(recordings, nearest=True)
    status, _, body = ask(server, provider, stream=False)
    assert status == 200 and body == whole.body and "converted" not in server.approximated[-1]
    status, _, body = ask(server, provider, stream=True)
    assert status == 200 and body == stream.body and "converted" not in server.approximated[-1]


def test_an_exact_recording_is_replayed_as_it_was():
    provider = PROVIDERS["gemini"]
    stream, _ = both_kinds(provider, provider.replies["text"])
    server = ReplayServer([fixture(provider, True, stream)], nearest=True)
    assert server.reply("POST", provider.stream_target, provider.body(True))[2] == stream.body
    assert server.approximated == []


def test_a_strict_replay_server_converts_nothing():
    provider = PROVIDERS["anthropic"]
    stream, _ = both_kinds(provider, provider.replies["text"])
    server = ReplayServer([fixture(provider, True, stream)])
    status, _, body = ask(server, provider, stream=False)
    assert status == 599 and b"no fixture matches" in body


@pytest.mark.parametrize("name", PROVIDERS)
def test_a_recorded_error_is_not_converted_and_the_client_is_told_what_to_do(name):
    """A recording that failed (here a 429) cannot stand in for an answer of the other kind: the call
    gets an error in its own dialect, which the provider classifies (the client gets a 502) and whose
    message says what to do."""
    provider = PROVIDERS[name]
    error = Recorded("application/json", b'{"error": {"message": "slow down"}}')
    server = ReplayServer([fixture(provider, True, error, status=429)], nearest=True)
    status, content_type, body = ask(server, provider, stream=False)
    assert status == 500 and content_type == "application/json"
    message = classify(name, body)
    assert "record_demo_corpus.py" in message and "HTTP 429" in message and "stream recording rec.json" in message
    assert "not converted from a stream recording" in server.approximated[-1]


def test_a_stream_recording_that_ends_in_an_error_is_not_converted():
    provider = PROVIDERS["anthropic"]
    with provider.fake() as fake:
        fake.enqueue(anthropic_api.error_event_reply("overloaded_error", "Overloaded"))
        answer = httpx.post(fake.origin + "/v1/messages", json=provider.body(True), headers=provider.headers)
    server = ReplayServer([fixture(provider, True, Recorded("text/event-stream", answer.content))], nearest=True)
    status, _, body = ask(server, provider, stream=False)
    message = classify("anthropic", body)
    assert status == 500 and "decodes to an error" in message and "Overloaded" in message


def classify(provider: str, body: bytes) -> str:
    """The message the provider's own classifier makes of the replay server's error (the client sees it
    with a 502)."""
    import importlib

    module = {
        "openai": "llmbridge.providers.openai_api.provider",
        "anthropic": "llmbridge.providers.anthropic_api.errors",
        "gemini": "llmbridge.providers.gemini_api.errors",
    }[provider]
    error = importlib.import_module(module).classify(500, body, None)
    assert error.status == 502, error
    return str(error.message)


def test_a_successful_recording_to_convert_comes_before_a_failed_one():
    provider = PROVIDERS["gemini"]
    stream, _ = both_kinds(provider, provider.replies["text"])
    failed = fixture(provider, True, Recorded("application/json", b'{"error": {"code": 429}}'), 429, "failed")
    server = ReplayServer([failed, fixture(provider, True, stream, name="good")], nearest=True)
    status, _, body = ask(server, provider, stream=False)
    assert status == 200 and b"Sepia." in body and server.approximated[-1].endswith("recording (good.json)")
