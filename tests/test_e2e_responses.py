"""End to end: the official openai SDK's Responses API (`client.responses.create`, `.stream`) -> the
real mitmdump bridge -> the strict fakes of gemini-cli, kiro, openai and qwen.

One bridge per backend (module scope). Then a bridge in front of the Code Assist fake with Gemini 3,
which hands out a thoughtSignature on the first function call and refuses, on the next turn, a call
without it or a signature it never issued: the signature must survive a client that keeps only what
the Responses API gives it (reasoning items' `encrypted_content`, or the call id); that bridge records
to SQLite, where a dropped hosted tool must be found with its exchange.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

from tests.bridge_process import CLIENT_KEY, BridgeProcess, write_config
from tests.e2e_backends import Backend, start_backend
from tests.fakes import code_assist as ca

pytestmark = [pytest.mark.timeout(60)]

BACKENDS = ["gemini-cli", "kiro", "openai", "qwen"]
WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "Weather for a city",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
        "additionalProperties": False,
    },
    "strict": True,
}
AGENTS = {
    "type": "namespace",
    "name": "multi_agent_v1",
    "description": "Sub-agents",
    "tools": [
        {
            "type": "function",
            "name": "spawn_agent",
            "description": "Start a sub-agent",
            "parameters": {"type": "object", "properties": {"task": {"type": "string"}}, "required": ["task"]},
            "strict": False,
        }
    ],
}
WEB_SEARCH = {"type": "web_search", "external_web_access": True}


@pytest.fixture(scope="module", params=BACKENDS)
def backend(request, tmp_path_factory):
    with start_backend(request.param, tmp_path_factory.mktemp(request.param)) as started:
        yield started


def client(base_url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{base_url}/v1", api_key=CLIENT_KEY, max_retries=0, timeout=20)


def items(response: Any) -> list[dict[str, Any]]:
    """A response's output items as a client sends them back in `input`."""
    return [item.model_dump(exclude_none=True) for item in response.output]


def test_text_non_stream(backend: Backend):
    backend.text("Hello ", "world")
    response = client(backend.bridge.base_url).responses.create(
        model=backend.model,
        instructions="Answer tersely.",
        input=[
            {"role": "developer", "content": "Never shout."},
            {"role": "user", "content": [{"type": "input_text", "text": "hi"}]},
        ],
        max_output_tokens=256,
    )
    assert response.status == "completed" and response.output_text == "Hello world"
    assert response.id.startswith("resp_") and response.output[0].type == "message"
    assert response.usage is not None and response.usage.total_tokens > 0
    backend.assert_accepted()
    sent = json.dumps(backend.last())
    assert "Answer tersely." in sent and "Never shout." in sent and "hi" in sent


def test_stream_events_as_the_sdk_parses_them(backend: Backend):
    backend.text("one ", "two ", "three")
    kinds, text = [], ""
    for event in client(backend.bridge.base_url).responses.create(model=backend.model, input="count", stream=True):
        kinds.append(event.type)
        if event.type == "response.output_text.delta":
            text += event.delta
        if event.type == "response.completed":
            assert event.response.output_text == "one two three" and event.response.usage is not None
    assert kinds[:4] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
    ]
    assert kinds[-4:] == [
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert text == "one two three"
    backend.assert_accepted()

    backend.text("final ", "answer")
    with client(backend.bridge.base_url).responses.stream(model=backend.model, input="again") as stream:
        deltas = [e.delta for e in stream if e.type == "response.output_text.delta"]
        final = stream.get_final_response()
    assert "".join(deltas) == "final answer" and final.output_text == "final answer"


@pytest.mark.parametrize("stream", [False, True])
def test_a_function_tool_loop(backend: Backend, stream: bool):
    api = client(backend.bridge.base_url)
    conversation: list[Any] = [{"role": "user", "content": "Weather in Paris?"}]
    params: dict[str, Any] = {
        "model": backend.model,
        "tools": [WEATHER, AGENTS],
        "tool_choice": "auto",
        "parallel_tool_calls": True,
        "store": False,
    }
    backend.tool_call("get_weather", "call_paris", {"city": "Paris"})
    if stream:
        with api.responses.stream(input=conversation, **params) as events:
            argument_deltas = [e.delta for e in events if e.type == "response.function_call_arguments.delta"]
            first = events.get_final_response()
        assert json.loads("".join(argument_deltas)) == {"city": "Paris"}
    else:
        first = api.responses.create(input=conversation, **params)
    backend.assert_accepted()
    assert sorted(backend.tool_names_sent()) == ["get_weather", "multi_agent_v1__spawn_agent"]
    calls = [item for item in first.output if item.type == "function_call"]
    assert len(calls) == 1 and calls[0].name == "get_weather" and json.loads(calls[0].arguments) == {"city": "Paris"}

    conversation += items(first)
    conversation.append({"type": "function_call_output", "call_id": calls[0].call_id, "output": "Sunny, 24 C"})
    backend.text("It is sunny.")
    second = api.responses.create(input=conversation, **params)
    assert second.output_text == "It is sunny."
    backend.assert_accepted()
    result_id, result = backend.last_tool_result()
    assert "Sunny, 24 C" in result
    assert result_id in (calls[0].call_id, "call_paris", "get_weather")


def test_a_namespaced_tool_comes_back_under_the_clients_own_names(backend: Backend):
    backend.tool_call("multi_agent_v1__spawn_agent", "call_agent", {"task": "tests"})
    response = client(backend.bridge.base_url).responses.create(
        model=backend.model, input="Start an agent", tools=[WEATHER, AGENTS]
    )
    call = next(item for item in response.output if item.type == "function_call")
    assert (call.name, call.namespace, json.loads(call.arguments)) == (
        "spawn_agent",
        "multi_agent_v1",
        {"task": "tests"},
    )


def test_hosted_tools_are_dropped_visibly(backend: Backend):
    backend.text("No search needed.")
    raw = client(backend.bridge.base_url).responses.with_raw_response.create(
        model=backend.model, input="hi", tools=[WEB_SEARCH, WEATHER, {"type": "image_generation"}]
    )
    assert raw.headers["x-llmbridge-dropped-tools"] == "web_search, image_generation"
    assert raw.parse().output_text == "No search needed."
    backend.assert_accepted()
    assert backend.tool_names_sent() == ["get_weather"]

    backend.text("streamed")
    with client(backend.bridge.base_url).responses.with_streaming_response.create(
        model=backend.model, input="hi", tools=[WEB_SEARCH], stream=True
    ) as streamed:
        assert streamed.headers["x-llmbridge-dropped-tools"] == "web_search"
        assert "response.completed" in streamed.read().decode()


def test_previous_response_id_continues_a_stored_conversation(backend: Backend):
    api = client(backend.bridge.base_url)
    backend.text("Nice to meet you, Ada.")
    first = api.responses.create(model=backend.model, input="My name is Ada.")
    backend.text("Your name is Ada.")
    second = api.responses.create(model=backend.model, input="What is my name?", previous_response_id=first.id)
    assert second.output_text == "Your name is Ada." and second.previous_response_id == first.id
    backend.assert_accepted()
    sent = json.dumps(backend.last())
    assert "My name is Ada." in sent and "Nice to meet you, Ada." in sent and "What is my name?" in sent

    with pytest.raises(openai.BadRequestError) as error:
        api.responses.create(model=backend.model, input="x", previous_response_id="resp_unknown")
    assert error.value.code == "previous_response_not_found"


def test_errors_in_openais_shape(backend: Backend):
    api = client(backend.bridge.base_url)
    with pytest.raises(openai.NotFoundError) as missing:
        api.responses.create(model="no-such-model", input="hi")
    assert missing.value.status_code == 404
    with pytest.raises(openai.BadRequestError) as bad:
        api.responses.create(model=backend.model, input="hi", background=True)
    assert bad.value.status_code == 400 and bad.value.body["param"] == "background"  # type: ignore[index]
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=f"{backend.bridge.base_url}/v1", api_key="wrong", max_retries=0).responses.create(
            model=backend.model, input="hi"
        )


# --- Gemini 3 thought signatures, and a recorded dropped tool -------------------------------------

GEMINI3 = "gemini-3-pro-preview"
SIGNATURE = "Z2VtaW5pLTMtc2lnbmF0dXJl"


class Signed:
    def __init__(self, fake: ca.FakeCodeAssist, bridge: BridgeProcess, database: Path) -> None:
        self.fake, self.bridge, self.database = fake, bridge, database

    def enqueue(self, *parts: dict[str, Any]) -> None:
        chunks = [{"candidates": [{"content": {"role": "model", "parts": [p]}}]} for p in parts]
        chunks[-1]["candidates"][0]["finishReason"] = "STOP"
        chunks[-1]["usageMetadata"] = {"promptTokenCount": 30, "candidatesTokenCount": 8, "totalTokenCount": 38}
        self.fake.enqueue(ca.Reply(chunks=chunks))

    def contents(self) -> list[dict[str, Any]]:
        return self.fake.generate_requests[-1]["request"]["contents"]

    def rejection(self) -> Any:
        return self.fake.check_generate(self.fake.generate_requests[-1])


@pytest.fixture(scope="module")
def signed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Signed]:
    workdir: Path = tmp_path_factory.mktemp("responses-signatures")
    with contextlib.ExitStack() as stack:
        fake = stack.enter_context(ca.FakeCodeAssist())
        fake.known_signatures_only = True
        creds = workdir / "oauth_creds.json"
        fake.write_credentials(creds)
        account = {
            "name": "cli",
            "provider": "gemini-cli",
            "credentials": str(creds),
            "base_url": fake.base_url,
            "token_url": fake.token_url,
            "project": fake.project,
            "requests_per_minute": 10_000,
            "max_concurrent": 50,
        }
        database = workdir / "bridge.db"
        config = write_config(workdir / "bridge.toml", [account], database=str(database))
        bridge = stack.enter_context(BridgeProcess(workdir, config))
        yield Signed(fake, bridge, database)


@pytest.mark.parametrize("encrypted", [True, False], ids=["encrypted_content", "call_id"])
def test_a_gemini_tool_loop_keeps_its_thought_signature(signed: Signed, encrypted: bool):
    api = client(signed.bridge.base_url)
    signed.enqueue(
        {"text": "Two cities: call the tool twice.", "thought": True},
        {
            "functionCall": {"name": "get_weather", "args": {"city": "Paris"}, "id": "c_paris"},
            "thoughtSignature": SIGNATURE,
        },
        {"functionCall": {"name": "get_weather", "args": {"city": "Rome"}, "id": "c_rome"}},
    )
    conversation: list[Any] = [{"role": "user", "content": "Weather in Paris and Rome?"}]
    params: dict[str, Any] = {
        "model": f"gemini-cli/{GEMINI3}",
        "tools": [WEB_SEARCH, WEATHER],
        "reasoning": {"effort": "high", "summary": "auto"},
        "store": False,
        "include": ["reasoning.encrypted_content"] if encrypted else [],
    }
    with api.responses.stream(input=conversation, **params) as events:
        summary = "".join(e.delta for e in events if e.type == "response.reasoning_summary_text.delta")
        first = events.get_final_response()
    assert summary == "Two cities: call the tool twice."
    kinds = [item.type for item in first.output]
    assert kinds == ["reasoning", "function_call", "function_call"]
    reasoning = first.output[0]
    calls = [item for item in first.output if item.type == "function_call"]
    if encrypted:
        assert reasoning.encrypted_content and SIGNATURE not in [c.call_id for c in calls]
        assert [c.call_id for c in calls] == ["c_paris", "c_rome"]
    else:
        assert reasoning.encrypted_content is None
        assert calls[0].call_id == f"c_paris__thought__{SIGNATURE}" and calls[1].call_id == "c_rome"

    conversation += items(first)
    conversation += [
        {"type": "function_call_output", "call_id": calls[0].call_id, "output": "sunny"},
        {"type": "function_call_output", "call_id": calls[1].call_id, "output": "rainy"},
    ]
    signed.enqueue({"text": "Paris is sunny, Rome rainy."})
    second = api.responses.create(input=conversation, **params)
    assert second.output_text == "Paris is sunny, Rome rainy."
    assert signed.rejection() is None
    model_turn = signed.contents()[-2]
    signed_parts = [
        (("functionCall" in p) and p["functionCall"]["name"], p.get("thoughtSignature")) for p in model_turn["parts"]
    ]
    assert [s for _, s in signed_parts if s] == [SIGNATURE]
    assert next(p for p in model_turn["parts"] if "functionCall" in p)["thoughtSignature"] == SIGNATURE


def test_a_dropped_hosted_tool_is_recorded_with_its_exchange(signed: Signed):
    signed.enqueue({"text": "ok"})
    raw = client(signed.bridge.base_url).responses.with_raw_response.create(
        model=f"gemini-cli/{GEMINI3}", input="hi", tools=[WEB_SEARCH]
    )
    assert raw.headers["x-llmbridge-dropped-tools"] == "web_search"
    response_id = raw.parse().id
    deadline = time.time() + 10
    row = None
    while time.time() < deadline and row is None:
        with contextlib.closing(sqlite3.connect(signed.database)) as db:
            row = db.execute(
                "SELECT client_format, endpoint, request_json FROM exchanges WHERE response_id = ?", (response_id,)
            ).fetchone()
        time.sleep(0.1)
    assert row is not None, "the exchange was not recorded"
    assert row[:2] == ("responses", "POST /v1/responses")
    assert json.loads(row[2])["dropped_tools"] == ["web_search"]


def test_an_upstream_failing_mid_stream_ends_with_response_failed(signed: Signed):
    signed.fake.enqueue(ca.midstream_error_reply("partial ", "answer ", code=503, status="UNAVAILABLE"))
    events = list(
        client(signed.bridge.base_url).responses.create(model=f"gemini-cli/{GEMINI3}", input="hi", stream=True)
    )
    kinds = [e.type for e in events]
    assert kinds[:2] == ["response.created", "response.in_progress"]
    assert kinds[-2:] == ["error", "response.failed"]
    assert "".join(e.delta for e in events if e.type == "response.output_text.delta") == "partial answer "
    failed = events[-1].response
    assert failed.status == "failed" and failed.error is not None and failed.error.code == "server_error"
    assert [e.sequence_number for e in events] == list(range(len(events)))
