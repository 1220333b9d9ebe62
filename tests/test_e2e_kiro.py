"""End to end: openai and anthropic SDKs -> real mitmdump bridge -> strict fake Kiro service."""

from __future__ import annotations

import json
import time

import anthropic
import openai
import pytest

from tests.bridge_process import CLIENT_KEY, BridgeProcess, write_config
from tests.fakes.kiro import ContextUsage, FakeKiro, HttpError, Metering, Reasoning, Text, ToolUse

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Weather for a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
    }
]


@pytest.fixture
def kiro():
    with FakeKiro() as fake:
        yield fake


@pytest.fixture
def token_file(tmp_path, kiro):
    return kiro.write_token_file(tmp_path / "kiro-auth-token.json")


@pytest.fixture
def bridge(tmp_path, kiro, token_file):
    config = write_config(
        tmp_path / "bridge.toml",
        [
            {
                "name": "kiro1",
                "provider": "kiro",
                "credentials": str(token_file),
                "base_url": kiro.base_url,
                "token_url": kiro.social_refresh_url,
                "requests_per_minute": 1000,
                "max_concurrent": 10,
            }
        ],
        record=False,
    )
    with BridgeProcess(tmp_path, config) as process:
        yield process


def oai(bridge) -> openai.OpenAI:
    return openai.OpenAI(base_url=bridge.base_url + "/v1", api_key=CLIENT_KEY, max_retries=0, timeout=20)


def test_streaming_text(bridge, kiro):
    kiro.enqueue(Text("Hello "), Text("from "), Text("Kiro"), ContextUsage(2.5), Metering(0.01))
    stream = oai(bridge).chat.completions.create(
        model="claude-sonnet-4-5",
        messages=[{"role": "system", "content": "be kind"}, {"role": "user", "content": "hi"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Hello from Kiro"
    assert chunks[-1].usage is not None and chunks[-1].usage.prompt_tokens > 0
    sent = kiro.generate_requests()[-1].body["conversationState"]
    content = sent["currentMessage"]["userInputMessage"]["content"]
    assert content.startswith("be kind") and content.endswith("hi")
    assert sent["currentMessage"]["userInputMessage"]["modelId"] == "claude-sonnet-4.5"


def test_streaming_tool_call_and_multi_turn_tool_conversation(bridge, kiro):
    kiro.enqueue(Text("Let me check."), ToolUse("get_weather", "tu_1", ['{"ci', 'ty": "Oslo"}']))
    client = oai(bridge)
    messages = [{"role": "user", "content": "weather in Oslo?"}]
    stream = client.chat.completions.create(model="claude-sonnet-4-5", messages=messages, tools=TOOLS, stream=True)
    calls: dict[int, dict] = {}
    finish = None
    for chunk in stream:
        for call in chunk.choices[0].delta.tool_calls or []:
            entry = calls.setdefault(call.index, {"id": call.id, "name": call.function.name, "args": ""})
            entry["args"] += call.function.arguments or ""
        finish = chunk.choices[0].finish_reason or finish
    assert finish == "tool_calls"
    assert calls[0]["name"] == "get_weather" and json.loads(calls[0]["args"]) == {"city": "Oslo"}

    kiro.enqueue(Text("It is cold in Oslo."))
    messages += [
        {
            "role": "assistant",
            "content": "Let me check.",
            "tool_calls": [
                {
                    "id": calls[0]["id"],
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": calls[0]["args"]},
                }
            ],
        },
        {"role": "tool", "tool_call_id": calls[0]["id"], "content": "-5C"},
    ]
    reply = client.chat.completions.create(model="claude-sonnet-4-5", messages=messages, tools=TOOLS)
    assert reply.choices[0].message.content == "It is cold in Oslo."
    request = kiro.generate_requests()[-1]
    assert request.rejection is None and request.status == 200
    results = request.body["conversationState"]["currentMessage"]["userInputMessage"]["userInputMessageContext"][
        "toolResults"
    ]
    assert results[0]["toolUseId"] == calls[0]["id"]


def test_anthropic_sdk_with_thinking(bridge, kiro):
    kiro.enqueue(Reasoning(text="Considering the question.", signature="sig-1"), Text("Answer."))
    client = anthropic.Anthropic(base_url=bridge.base_url, api_key=CLIENT_KEY, max_retries=0, timeout=20)
    message = client.messages.create(
        model="claude-sonnet-4-5",
        max_tokens=2000,
        thinking={"type": "enabled", "budget_tokens": 1024},
        messages=[{"role": "user", "content": "think first"}],
    )
    kinds = [block.type for block in message.content]
    assert kinds == ["thinking", "text"]
    assert message.content[0].thinking == "Considering the question."
    system_text = kiro.generate_requests()[-1].body["conversationState"]["currentMessage"]["userInputMessage"][
        "content"
    ]
    assert "<thinking_mode>enabled</thinking_mode>" in system_text


def test_expired_token_is_refreshed_and_rotation_persisted(bridge, kiro, token_file):
    old_refresh = json.loads(token_file.read_text())["refreshToken"]
    kiro.expire_access_token()
    kiro.enqueue(Text("after refresh"))
    reply = oai(bridge).chat.completions.create(model="claude-sonnet-4-5", messages=[{"role": "user", "content": "hi"}])
    assert reply.choices[0].message.content == "after refresh"
    assert kiro.refresh_count == 1
    stored = json.loads(token_file.read_text())
    assert stored["refreshToken"] != old_refresh and stored["accessToken"] == kiro.access_token
    assert token_file.stat().st_mode & 0o777 == 0o600


def test_improperly_formed_is_400_and_suspension_is_explained(bridge, kiro):
    kiro.enqueue(HttpError(400, {"message": "Improperly formed request.", "reason": None}))
    with pytest.raises(openai.BadRequestError):
        oai(bridge).chat.completions.create(model="claude-sonnet-4-5", messages=[{"role": "user", "content": "x"}])
    kiro.enqueue(HttpError(403, "Your User ID (abc) temporarily is suspended. We've locked your account."))
    with pytest.raises(openai.APIStatusError) as info:
        oai(bridge).chat.completions.create(model="claude-sonnet-4-5", messages=[{"role": "user", "content": "x"}])
    assert "suspended" in str(info.value)
    time.sleep(0.1)
    # the account is out of rotation now: no further upstream call is made
    before = len(kiro.generate_requests())
    with pytest.raises(openai.APIStatusError):
        oai(bridge).chat.completions.create(model="claude-sonnet-4-5", messages=[{"role": "user", "content": "x"}])
    assert len(kiro.generate_requests()) == before


def test_unsupported_parameter_named(bridge):
    with pytest.raises(openai.BadRequestError) as info:
        oai(bridge).chat.completions.create(
            model="claude-sonnet-4-5", stop=["END"], messages=[{"role": "user", "content": "x"}]
        )
    assert "stop" in str(info.value)


# --- the account's own model list (ListAvailableModels, as the Kiro IDE lists it) ---------------------


def test_models_come_from_the_accounts_listing_and_new_ones_are_served(bridge, kiro):
    kiro.models = kiro.models | {"claude-opus-4.7"}
    kiro.listed = ["claude-opus-4.7", "claude-sonnet-4.5", "auto"]
    listed = {m.id for m in oai(bridge).models.list().data}
    assert {"claude-opus-4-7", "claude-sonnet-4-5", "claude-sonnet-4-5-20250929"} <= listed
    assert "claude-haiku-4-5" not in listed and "auto" not in listed  # not in this account's listing
    kiro.enqueue(Text("new model"))
    answer = oai(bridge).chat.completions.create(model="claude-opus-4-7", messages=[{"role": "user", "content": "hi"}])
    assert answer.choices[0].message.content == "new model"
    assert (
        kiro.generate_requests()[-1].body["conversationState"]["currentMessage"]["userInputMessage"]["modelId"]
        == "claude-opus-4.7"
    )
    oai(bridge).models.list()
    (listing,) = [r for r in kiro.listing_requests if r.path == "/ListAvailableModels"]  # paced: once
    assert listing.body == {"origin": "AI_EDITOR", "maxResults": "50", "profileArn": kiro.profile_arn}
    assert listing.headers["authorization"] == f"Bearer {kiro.access_token}" and listing.rejection is None


def test_a_model_new_in_the_listing_is_found_on_first_use(bridge, kiro):
    kiro.models = kiro.models | {"claude-opus-4.8"}
    kiro.listed = ["claude-opus-4.8"]
    kiro.enqueue(Text("first use"))
    answer = oai(bridge).chat.completions.create(model="claude-opus-4-8", messages=[{"role": "user", "content": "hi"}])
    assert answer.choices[0].message.content == "first use"


def test_a_failed_listing_keeps_the_built_in_list(bridge, kiro):
    kiro.listing_status = 500
    listed = {m.id for m in oai(bridge).models.list().data}
    assert {"claude-sonnet-4-5", "claude-haiku-4-5", "claude-opus-4-5"} <= listed
    deadline = time.time() + 5
    while "listing the models failed (HTTP 500)" not in bridge.output() and time.time() < deadline:
        time.sleep(0.05)
    assert "listing the models failed (HTTP 500); using the built-in list" in bridge.output()
