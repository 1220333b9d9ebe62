"""End to end: Gemini 3 thought signatures for an Anthropic client. The official anthropic SDK talks to
the real bridge in front of the strict Code Assist and Gemini API fakes, which hand out a
thoughtSignature on the first function call and refuse, on the next turn, a first function call
without it, a signature of theirs on any other part, and any signature they never issued (a Claude
thinking signature from earlier in the conversation).

Turn 1: thinking on, Gemini thinks and calls two tools, the first call signed. The stream's thinking
block ends with a `signature_delta` carrying Gemini's signature; the final message's thinking block is
signed and the tool_use ids are plain. Turn 2: the client sends the assistant message back as it got
it (thinking block, tool_use blocks) with the tool results; the fake gets the signature on the first
functionCall part and nowhere else.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import pytest

from tests.bridge_process import CLIENT_KEY, BridgeProcess, write_config
from tests.fakes import code_assist as ca
from tests.fakes import gemini_api as fg
from tests.fakes.code_assist_rules import SKIP_SIGNATURE

pytestmark = [pytest.mark.timeout(90)]

MODEL = "gemini-3-pro-preview"
PROVIDERS = ["gemini-cli", "gemini"]
PACING = {"requests_per_minute": 10_000, "max_concurrent": 50}
WEATHER = {
    "name": "get_weather",
    "description": "Weather for a city",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}
CLAUDE_SIGNATURE = "EqQBCkYIBxgCKkCFakeClaudeSignatureFromAnEarlierTurn=="
THOUGHT = "The user wants two cities: call the tool twice."


class Upstreams:
    def __init__(self, code_assist: ca.FakeCodeAssist, gemini: fg.FakeGeminiAPI, bridge: BridgeProcess) -> None:
        self.code_assist = code_assist
        self.gemini = gemini
        self.bridge = bridge

    def client(self) -> anthropic.Anthropic:
        return anthropic.Anthropic(base_url=self.bridge.base_url, api_key=CLIENT_KEY, max_retries=0, timeout=30)

    def enqueue(self, provider: str, *parts: dict[str, Any]) -> None:
        """One reply: a chunk per part, the last with STOP and usage."""
        if provider == "gemini-cli":
            chunks = [{"candidates": [{"content": {"role": "model", "parts": [p]}}]} for p in parts]
            chunks[-1]["candidates"][0]["finishReason"] = "STOP"
            chunks[-1]["usageMetadata"] = {
                "promptTokenCount": 30,
                "candidatesTokenCount": 8,
                "thoughtsTokenCount": 5,
                "totalTokenCount": 43,
            }
            self.code_assist.enqueue(ca.Reply(chunks=chunks))
        else:
            last = len(parts) - 1
            self.gemini.enqueue(
                fg.Reply(
                    chunks=[
                        fg.chunk(p, finish="STOP" if i == last else None, usage=i == last) for i, p in enumerate(parts)
                    ]
                )
            )

    def contents(self, provider: str) -> list[dict[str, Any]]:
        """The contents of the last generate request the provider's fake received."""
        if provider == "gemini-cli":
            return self.code_assist.generate_requests[-1]["request"]["contents"]
        return self.gemini.requests[-1]["contents"]


@pytest.fixture(scope="module")
def upstreams(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Upstreams]:
    workdir: Path = tmp_path_factory.mktemp("signatures")
    with contextlib.ExitStack() as stack:
        code_assist = stack.enter_context(ca.FakeCodeAssist())
        gemini = stack.enter_context(fg.FakeGeminiAPI())
        code_assist.known_signatures_only = gemini.known_signatures_only = True
        creds = workdir / "oauth_creds.json"
        code_assist.write_credentials(creds)
        accounts = [
            {
                "name": "cli",
                "provider": "gemini-cli",
                "credentials": str(creds),
                "base_url": code_assist.base_url,
                "token_url": code_assist.token_url,
                "project": code_assist.project,
                **PACING,
            },
            {
                "name": "studio",
                "provider": "gemini",
                "api_key": gemini.api_key,
                "base_url": gemini.base_url,
                "models": [MODEL],
                **PACING,
            },
        ]
        config = write_config(workdir / "bridge.toml", accounts, record=False)
        bridge = stack.enter_context(BridgeProcess(workdir, config))
        yield Upstreams(code_assist, gemini, bridge)


def first_turn(
    upstreams: Upstreams, provider: str, stream: bool, thinking: bool, signature: str
) -> tuple[list[dict[str, Any]], Any, list[Any]]:
    """(messages so far, the assistant message, the stream events or [])."""
    upstreams.enqueue(
        provider,
        {"text": THOUGHT, "thought": True},
        {
            "functionCall": {"name": "get_weather", "args": {"city": "Paris"}, "id": "call_paris"},
            "thoughtSignature": signature,
        },
        {"functionCall": {"name": "get_weather", "args": {"city": "Rome"}, "id": "call_rome"}},
    )
    messages: list[dict[str, Any]] = [
        {"role": "user", "content": "Hello"},
        # an earlier answer from a Claude backend: its signature means nothing to Gemini
        {
            "role": "assistant",
            "content": [
                {"type": "thinking", "thinking": "Greet back.", "signature": CLAUDE_SIGNATURE},
                {"type": "text", "text": "Hi! How can I help?"},
            ],
        },
        {"role": "user", "content": "Weather in Paris and Rome?"},
    ]
    params: dict[str, Any] = {
        "model": f"{provider}/{MODEL}",
        "max_tokens": 4096,
        "tools": [WEATHER],
        "messages": messages,
    }
    if thinking:
        params["thinking"] = {"type": "enabled", "budget_tokens": 2048}
    client = upstreams.client()
    events: list[Any] = []
    if stream:
        with client.messages.stream(**params) as running:
            events = list(running)
            message = running.get_final_message()
    else:
        message = client.messages.create(**params)
    assert message.stop_reason == "tool_use"
    return messages, message, events


def second_turn(
    upstreams: Upstreams, provider: str, messages: list[dict[str, Any]], message: Any, stream: bool, thinking: bool
) -> list[dict[str, Any]]:
    """Send the history back (the assistant message as the SDK gave it) and return what Gemini got."""
    uses = [b for b in message.content if b.type == "tool_use"]
    messages = messages + [
        {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in message.content]},
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": u.id, "content": f"sunny in {u.input['city']}"} for u in uses
            ],
        },
    ]
    upstreams.enqueue(provider, {"text": "Both sunny."})
    params: dict[str, Any] = {
        "model": f"{provider}/{MODEL}",
        "max_tokens": 4096,
        "tools": [WEATHER],
        "messages": messages,
    }
    if thinking:
        params["thinking"] = {"type": "enabled", "budget_tokens": 2048}
    client = upstreams.client()
    if stream:
        with client.messages.stream(**params) as running:
            reply = running.get_final_message()
    else:
        reply = client.messages.create(**params)
    assert [b.text for b in reply.content if b.type == "text"] == ["Both sunny."]
    return upstreams.contents(provider)


def signatures_sent(contents: list[dict[str, Any]]) -> list[tuple[int, str, str]]:
    """(turn, part kind, signature) of every thoughtSignature in the request."""
    kinds = ("functionCall", "thought", "text", "functionResponse")
    return [
        (i, next(k for k in kinds if k in p), p["thoughtSignature"])
        for i, c in enumerate(contents)
        for p in c["parts"]
        if "thoughtSignature" in p
    ]


@pytest.mark.parametrize("stream", [True, False], ids=["stream", "non-stream"])
@pytest.mark.parametrize("provider", PROVIDERS)
def test_thinking_block_carries_the_gemini_signature_and_it_goes_back_on_the_call(upstreams, provider, stream):
    signature = f"R2VtaW5pLXNpZy0{provider}-{stream}"
    messages, message, events = first_turn(upstreams, provider, stream, thinking=True, signature=signature)

    marked = f"llmbridge:gemini:call:{signature}"
    if stream:
        deltas = [e.delta for e in events if e.type == "content_block_delta"]
        assert [d.signature for d in deltas if d.type == "signature_delta"] == [marked]
        kinds = [d.type for d in deltas]
        assert kinds.index("thinking_delta") < kinds.index("signature_delta") < kinds.index("input_json_delta")
    assert [b.type for b in message.content] == ["thinking", "tool_use", "tool_use"]
    assert message.content[0].thinking == THOUGHT and message.content[0].signature == marked
    assert [(b.id, b.input) for b in message.content[1:]] == [
        ("call_paris", {"city": "Paris"}),
        ("call_rome", {"city": "Rome"}),
    ]

    contents = second_turn(upstreams, provider, messages, message, stream, thinking=True)
    model_turn = contents[3]
    assert model_turn["role"] == "model"
    calls = [p for p in model_turn["parts"] if "functionCall" in p]
    assert calls[0]["functionCall"]["id"] == "call_paris" and calls[0]["thoughtSignature"] == signature
    assert signatures_sent(contents) == [(3, "functionCall", signature)]  # not the Claude one, nothing else
    assert {"text": THOUGHT, "thought": True} in model_turn["parts"]


@pytest.mark.parametrize("provider", PROVIDERS)
def test_without_thinking_the_signature_rides_in_the_tool_use_id(upstreams, provider):
    signature = f"R2VtaW5pLW5vLXRoaW5raW5n-{provider}"
    messages, message, events = first_turn(upstreams, provider, True, thinking=False, signature=signature)
    assert [b.type for b in message.content] == ["tool_use", "tool_use"]
    assert not [e for e in events if e.type == "content_block_delta" and e.delta.type == "signature_delta"]
    assert [b.id for b in message.content] == [f"call_paris__thought__{signature}", "call_rome"]

    contents = second_turn(upstreams, provider, messages, message, True, thinking=False)
    calls = [p for p in contents[3]["parts"] if "functionCall" in p]
    assert calls[0]["functionCall"]["id"] == "call_paris" and calls[0]["thoughtSignature"] == signature
    assert signatures_sent(contents) == [(3, "functionCall", signature)]


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_client_that_drops_thinking_blocks_still_gets_an_answer(upstreams, provider):
    """Some clients strip thinking from history: the first call then goes with Gemini's bypass value."""
    messages, message, _ = first_turn(upstreams, provider, False, thinking=True, signature=f"R2Vt-drop-{provider}")
    message.content = [b for b in message.content if b.type != "thinking"]
    contents = second_turn(upstreams, provider, messages, message, False, thinking=True)
    assert signatures_sent(contents) == [(3, "functionCall", SKIP_SIGNATURE)]


@pytest.mark.parametrize("provider", PROVIDERS)
def test_the_fake_refuses_a_signature_moved_off_its_call(upstreams, provider):
    """The strictness the tests above rely on: the fake checks where its signature comes back."""
    signature = f"R2Vt-moved-{provider}"
    messages, message, _ = first_turn(upstreams, provider, False, thinking=True, signature=signature)
    history = messages + [
        {
            "role": "assistant",
            "content": [
                {"type": "thinking", "thinking": "", "signature": f"llmbridge:gemini:text:{signature}"},
                {"type": "text", "text": "Checking."},
                {"type": "tool_use", "id": "call_paris", "name": "get_weather", "input": {"city": "Paris"}},
                {"type": "tool_use", "id": "call_rome", "name": "get_weather", "input": {"city": "Rome"}},
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "call_paris", "content": "sunny"},
                {"type": "tool_result", "tool_use_id": "call_rome", "content": "sunny"},
            ],
        },
    ]
    with pytest.raises(anthropic.BadRequestError) as info:
        upstreams.client().messages.create(
            model=f"{provider}/{MODEL}", max_tokens=4096, tools=[WEATHER], messages=history
        )
    assert "signature" in info.value.body["error"]["message"].lower()
