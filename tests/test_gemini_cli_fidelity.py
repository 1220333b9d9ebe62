"""The gemini-cli provider sends what Gemini CLI 0.61.0 sends (issue 15): headers and their order,
the emulated release and its override, tools as parametersJsonSchema, conversation identity,
function call ids, and the start-up calls around the first generation."""

from __future__ import annotations

import re

import pytest

from llmbridge.canonical import ChatRequest, Message, TextPart, Tool, ToolCallPart, ToolResultPart
from llmbridge.config import AccountConfig
from llmbridge.conversation import conversation_scope, prompt_number, session_uuid
from llmbridge.errors import ConfigError
from llmbridge.providers.gemini_cli import client
from llmbridge.providers.gemini_cli.provider import GeminiCodeAssistProvider
from llmbridge.providers.gemini_cli.request import build_request
from tests.fakes.code_assist import FakeCodeAssist, tool_call_reply
from tests.fakes.code_assist_rules import Rejected, check_generate
from tests.test_gemini_cli_provider import account, chat, complete, with_provider

UUID4 = r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}"
WEATHER = Tool(
    name="get_weather",
    description="Weather for a city",
    parameters={
        "$schema": "http://json-schema.org/draft-07/schema#",
        "type": "object",
        "properties": {"city": {"type": "string"}, "days": {"type": ["integer", "null"]}},
        "required": ["city"],
        "additionalProperties": False,
    },
)


@pytest.fixture
def fake():
    with FakeCodeAssist() as server:
        yield server


@pytest.fixture
def creds(fake, tmp_path):
    path = tmp_path / "oauth_creds.json"
    fake.write_credentials(path)
    return path


def user(text: str) -> Message:
    return Message(role="user", parts=[TextPart(text=text)])


# --- (a) headers and the emulated release ------------------------------------------------------------


def test_headers_are_the_clis_in_its_order():
    stream = client.headers("tok", "gemini-2.5-pro", stream=True)
    assert list(stream) == [
        "accept",
        "accept-encoding",
        "authorization",
        "content-type",
        "user-agent",
        "x-goog-api-client",
    ]
    assert stream["accept"] == "*/*" and stream["accept-encoding"] == "gzip, deflate, br"
    assert re.fullmatch(
        r"GeminiCLI-tui/0\.61\.0/gemini-2\.5-pro \(\w+; \w+; terminal\) google-api-nodejs-client/10\.9\.0",
        stream["user-agent"],
    )
    assert re.fullmatch(r"gl-node/\d+\.\d+\.\d+", stream["x-goog-api-client"])
    assert client.headers("tok", "m", stream=False)["accept"] == "application/json"
    wire = client.wire_headers(stream, "example.test", b"{}")
    assert [name for name, _ in wire] == [
        "accept",
        "accept-encoding",
        "authorization",
        "content-length",
        "content-type",
        "user-agent",
        "x-goog-api-client",
        "Host",
        "Connection",
    ]
    assert dict(wire)["content-length"] == "2"
    assert "content-type" not in dict(client.wire_headers(stream, "h", None))  # a GET


def test_json_calls_accept_json_and_the_version_is_overridable(fake, creds):
    async def body(provider):
        await complete(provider, chat())

    with_provider(account(fake, creds, client_version="0.62.1"), body)
    load = fake.calls(":loadCodeAssist")[0].headers
    assert load["accept"] == "application/json"
    assert load["user-agent"].startswith("GeminiCLI-tui/0.62.1/")
    generate = fake.calls(":streamGenerateContent")[0].headers
    assert generate["accept"] == "*/*" and generate["user-agent"].startswith("GeminiCLI-tui/0.62.1/gemini-2.5-pro ")
    experiments = fake.calls(":listExperiments")[0].body
    assert experiments["metadata"]["ideVersion"] == "0.62.1"


def test_a_bad_client_version_is_a_config_error(creds):
    acc = AccountConfig(name="g", provider="gemini-cli", credentials=str(creds), client_version="latest")
    with pytest.raises(ConfigError, match="client_version 'latest'"):
        GeminiCodeAssistProvider.validate_account(acc)


# --- (b) tools as the CLI declares them --------------------------------------------------------------


def test_tools_go_as_parameters_json_schema_unchanged():
    request = chat(tools=[WEATHER, Tool(name="ping")])
    body = build_request(request, "gemini-2.5-pro", "p", "s########1", "s")
    declarations = body["request"]["tools"][0]["functionDeclarations"]
    assert declarations[0] == {
        "name": "get_weather",
        "description": "Weather for a city",
        "parametersJsonSchema": WEATHER.parameters,
    }
    assert list(declarations[0]) == ["name", "description", "parametersJsonSchema"]
    assert declarations[1] == {"name": "ping", "parametersJsonSchema": {"type": "object", "properties": {}}}
    check_generate(body, gemini3=False)  # the strict fake takes it


def test_the_fake_refuses_an_openapi_schema_as_json_schema():
    body = build_request(chat(tools=[WEATHER]), "gemini-2.5-pro", "p", "s", "s")
    body["request"]["tools"][0]["functionDeclarations"][0]["parametersJsonSchema"] = {"type": "OBJECT"}
    with pytest.raises(Rejected, match="invalid JSON Schema type 'OBJECT'"):
        check_generate(body, gemini3=False)


# --- (c) conversation identity and call ids ----------------------------------------------------------


def conversation(*later: Message) -> list[Message]:
    return [user("Plan my trip"), *later]


def test_session_follows_the_conversation_not_the_process():
    secret = b"k" * 32
    scope = conversation_scope("key1", {})
    first = session_uuid(secret, scope, conversation())
    assert re.fullmatch(UUID4, first)
    turn2 = conversation(Message(role="assistant", parts=[TextPart(text="Where to?")]), user("Rome"))
    assert session_uuid(secret, scope, turn2) == first  # same conversation, later turn
    assert session_uuid(secret, scope, [user("Something else")]) != first  # another conversation
    assert session_uuid(secret, conversation_scope("key2", {}), conversation()) != first  # another client
    assert session_uuid(b"x" * 32, scope, conversation()) != first  # another account or bridge


def test_a_client_session_header_names_the_conversation():
    secret = b"k" * 32
    scope = conversation_scope("key1", {"X-Claude-Code-Session-Id": "abc"})
    assert session_uuid(secret, scope, [user("one")]) == session_uuid(secret, scope, [user("two")])
    assert conversation_scope("key1", {"session-id": "abc"}) != scope


def test_prompt_number_counts_user_prompts_and_tool_results_keep_it():
    call = Message(role="assistant", parts=[ToolCallPart(id="c1", name="ls", arguments={})])
    result = Message(role="user", parts=[ToolResultPart(tool_call_id="c1", name="ls", content=[TextPart(text="a")])])
    assert prompt_number(conversation()) == 1
    assert prompt_number(conversation(call, result)) == 1
    answered = Message(role="assistant", parts=[TextPart(text="ok")])
    assert prompt_number(conversation(call, result, answered, user("x"))) == 2


def test_the_provider_sends_the_conversations_ids(fake, creds):
    turn1 = chat(user("Plan my trip"), conversation=conversation_scope("k", {}))
    turn2 = chat(
        user("Plan my trip"),
        Message(role="assistant", parts=[TextPart(text="Where to?")]),
        user("Rome"),
        conversation=conversation_scope("k", {}),
    )
    other = chat(user("Another chat"), conversation=conversation_scope("k", {}))

    async def body(provider):
        for request in (turn1, turn2, other):
            await complete(provider, request)

    with_provider(account(fake, creds), body)
    sent = fake.generate_requests
    sessions = [b["request"]["session_id"] for b in sent]
    assert sessions[0] == sessions[1] != sessions[2]
    assert [b["user_prompt_id"] for b in sent] == [
        f"{sessions[0]}########1",
        f"{sessions[0]}########2",
        f"{sessions[2]}########1",
    ]


def test_a_minted_call_id_is_the_clis_and_goes_back_upstream(fake, creds):
    fake.enqueue(tool_call_reply("get_weather", {"city": "Rome"}))

    async def body(provider):
        return await complete(provider, chat(user("Weather?"), tools=[WEATHER]))

    result = with_provider(account(fake, creds), body)
    call = next(p for p in result.parts if isinstance(p, ToolCallPart))
    assert re.fullmatch(r"get_weather_\d{13}_0", call.id)


def test_the_active_loop_gets_the_skip_signature_on_every_model():
    call = Message(role="assistant", parts=[ToolCallPart(id="c1", name="get_weather", arguments={"city": "Rome"})])
    result = Message(
        role="user", parts=[ToolResultPart(tool_call_id="c1", name="get_weather", content=[TextPart(text="sun")])]
    )
    body = build_request(chat(user("Weather?"), call, result, tools=[WEATHER]), "gemini-2.5-pro", "p", "s", "s")
    model_turn = body["request"]["contents"][1]
    assert model_turn["parts"][0]["thoughtSignature"] == "skip_thought_signature_validator"
    sunny = Message(role="assistant", parts=[TextPart(text="Sunny")])
    earlier = chat(user("Weather?"), call, result, sunny, user("ok"))
    body = build_request(earlier, "gemini-2.5-pro", "p", "s", "s")
    assert "thoughtSignature" not in body["request"]["contents"][1]["parts"][0]  # before the last prompt


# --- (d) the calls around generation -----------------------------------------------------------------


def test_start_up_calls_come_once_before_the_first_generation(fake, creds):
    async def body(provider):
        await complete(provider, chat())
        await complete(provider, chat())

    with_provider(account(fake, creds), body)
    methods = [r.path.removeprefix("/v1internal").split("?")[0] for r in fake.requests if r.path != "/token"]
    # the two start-up calls go concurrently, as the CLI sends them: in either order
    assert methods[0] == ":loadCodeAssist" and sorted(methods[1:3]) == [":listExperiments", ":retrieveUserQuota"]
    assert methods[3:] == [":streamGenerateContent", ":streamGenerateContent"]
    experiments = fake.calls(":listExperiments")[0].body
    assert list(experiments) == ["project", "metadata"]
    assert list(experiments["metadata"]) == [
        "ideName",
        "pluginType",
        "ideVersion",
        "platform",
        "updateChannel",
        "duetProject",
    ]
    assert fake.calls(":retrieveUserQuota")[0].body == {"project": fake.project}


def test_a_failed_start_up_call_does_not_stop_the_generation(fake, creds):
    async def body(provider):
        return await complete(provider, ChatRequest(model="gemini-2.5-pro", messages=[user("hi")]))

    original = fake.list_experiments
    fake.list_experiments = lambda body: (500, {"error": {"code": 500, "message": "boom", "status": "INTERNAL"}})
    try:
        result = with_provider(account(fake, creds), body)
    finally:
        fake.list_experiments = original
    assert result.text()
