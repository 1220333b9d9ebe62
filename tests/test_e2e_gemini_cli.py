"""End to end: the openai SDK -> real mitmdump bridge -> strict fake Code Assist + Google token server."""

from __future__ import annotations

import json
import threading
import time

import openai
import pytest

from tests.bridge_process import CLIENT_KEY, BridgeProcess, write_config
from tests.fakes.code_assist import FakeCodeAssist, error_reply, rpc_error, text_reply, tool_call_reply

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Weather for a city",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
                "additionalProperties": False,
            },
        },
    }
]


@pytest.fixture
def fake():
    with FakeCodeAssist(onboarded=False, onboard_polls=0) as server:
        yield server


@pytest.fixture
def creds(tmp_path, fake):
    path = tmp_path / "oauth_creds.json"
    fake.write_credentials(path, expired=True)
    return path


@pytest.fixture
def bridge(tmp_path, fake, creds):
    config = write_config(
        tmp_path / "bridge.toml",
        [
            {
                "name": "g1",
                "provider": "gemini-cli",
                "credentials": str(creds),
                "base_url": fake.base_url,
                "token_url": fake.token_url,
                "requests_per_minute": 1000,
                "max_concurrent": 50,
            }
        ],
        record=False,
    )
    with BridgeProcess(tmp_path, config) as process:
        yield process


def client(bridge) -> openai.OpenAI:
    return openai.OpenAI(base_url=bridge.base_url + "/v1", api_key=CLIENT_KEY, max_retries=0, timeout=30)


def test_text_with_reasoning_refresh_and_onboarding(bridge, fake, creds):
    fake.enqueue(text_reply("Hello ", "world", thoughts=("pondering",), signature="S1"))
    reply = client(bridge).chat.completions.create(
        model="gemini-2.5-pro",
        messages=[{"role": "system", "content": "terse"}, {"role": "user", "content": "hi"}],
        reasoning_effort="low",
    )
    message = reply.choices[0].message
    assert message.content == "Hello world"
    assert message.model_extra["reasoning_content"] == "pondering"
    assert reply.usage.prompt_tokens == 12 and reply.usage.completion_tokens == 5
    assert fake.refresh_count == 1
    stored = json.loads(creds.read_text())
    assert stored["access_token"] in fake.access_tokens and stored["expiry_date"] > time.time() * 1000
    assert stored["refresh_token"] and creds.stat().st_mode & 0o777 == 0o600
    sent = fake.generate_requests[-1]
    assert sent["model"] == "gemini-2.5-pro" and sent["project"]
    assert sent["request"]["systemInstruction"]["parts"][0]["text"] == "terse"
    assert sent["request"]["generationConfig"]["thinkingConfig"]["includeThoughts"] is True
    assert [c.path for c in fake.calls("onboardUser")]  # discovery ran


def test_stream_first_token_arrives_while_upstream_still_generating(bridge, fake):
    fake.enqueue(text_reply("first ", "second ", "third", delay=0.6))
    started = time.time()
    arrivals = []
    for chunk in client(bridge).chat.completions.create(
        model="gemini-2.5-flash", messages=[{"role": "user", "content": "go"}], stream=True
    ):
        if chunk.choices and chunk.choices[0].delta.content:
            arrivals.append((time.time() - started, chunk.choices[0].delta.content))
    assert "".join(text for _, text in arrivals) == "first second third"
    assert arrivals[0][0] < arrivals[-1][0] - 0.8  # the first token came long before the last


def test_gemini3_tool_call_signature_round_trip(bridge, fake):
    fake.enqueue(tool_call_reply("get_weather", {"city": "Paris"}, signature="SIGX"))
    c = client(bridge)
    messages = [{"role": "user", "content": "weather in Paris?"}]
    chunks = list(c.chat.completions.create(model="gemini-3-pro-preview", messages=messages, tools=TOOLS, stream=True))
    calls = [tc for ch in chunks if ch.choices for tc in (ch.choices[0].delta.tool_calls or [])]
    arguments = "".join(tc.function.arguments or "" for tc in calls)
    assert calls[0].function.name == "get_weather" and json.loads(arguments) == {"city": "Paris"}
    assert [ch.choices[0].finish_reason for ch in chunks if ch.choices][-1] == "tool_calls"
    fake.enqueue(text_reply("Sunny in Paris."))
    messages += [
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": calls[0].id, "type": "function", "function": {"name": "get_weather", "arguments": arguments}}
            ],
        },
        {"role": "tool", "tool_call_id": calls[0].id, "content": "sunny"},
    ]
    reply = c.chat.completions.create(model="gemini-3-pro-preview", messages=messages, tools=TOOLS)
    assert reply.choices[0].message.content == "Sunny in Paris."
    model_turn = fake.generate_requests[-1]["request"]["contents"][1]
    assert model_turn["parts"][0]["thoughtSignature"] == "SIGX"  # echoed, so Gemini 3 accepts the turn
    function_schema = fake.generate_requests[0]["request"]["tools"][0]["functionDeclarations"][0]
    # the client's JSON Schema as parametersJsonSchema, unchanged, as Gemini CLI declares its tools
    assert function_schema["parametersJsonSchema"] == TOOLS[0]["function"]["parameters"]


def test_image_and_json_schema(bridge, fake):
    fake.enqueue(text_reply('{"colour": "red"}'))
    reply = client(bridge).chat.completions.create(
        model="gemini-2.5-flash",
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "colour?"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
                ],
            }
        ],
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "c", "schema": {"type": "object", "properties": {"colour": {"type": "string"}}}},
        },
    )
    assert json.loads(reply.choices[0].message.content) == {"colour": "red"}
    request = fake.generate_requests[-1]["request"]
    assert request["contents"][0]["parts"][1]["inlineData"] == {"mimeType": "image/png", "data": "iVBORw0KGgo="}
    assert request["generationConfig"]["responseMimeType"] == "application/json"


RATE_LIMIT = rpc_error(
    429,
    "You have exhausted your capacity on this model.",
    "RESOURCE_EXHAUSTED",
    [
        {
            "@type": "type.googleapis.com/google.rpc.ErrorInfo",
            "reason": "RATE_LIMIT_EXCEEDED",
            "domain": "cloudcode-pa.googleapis.com",
            "metadata": {"quotaResetDelay": "2.5s"},
        },
        {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "2.5s"},
    ],
)


def test_rate_limit_is_429_with_retry_after_and_a_plain_message(bridge, fake):
    fake.enqueue(error_reply(429, RATE_LIMIT))
    with pytest.raises(openai.RateLimitError) as info:
        client(bridge).chat.completions.create(model="gemini-2.5-pro", messages=[{"role": "user", "content": "x"}])
    assert info.value.response.headers["retry-after"] == "3"
    assert "retry" in str(info.value).lower()


def test_validation_required_is_503_with_link(bridge, fake):
    """The account needs the user's attention, not the client's key: 503 (its only account is out of
    rotation), never a 403 the client's SDK would read as its own key refused."""
    fake.enqueue(
        error_reply(
            403,
            rpc_error(
                403,
                "Verify your account to continue.",
                "PERMISSION_DENIED",
                [
                    {
                        "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                        "reason": "VALIDATION_REQUIRED",
                        "domain": "cloudcode-pa.googleapis.com",
                        "metadata": {"validation_link": "https://accounts.google.com/verify"},
                    }
                ],
            ),
        )
    )
    with pytest.raises(openai.InternalServerError) as info:
        client(bridge).chat.completions.create(model="gemini-2.5-pro", messages=[{"role": "user", "content": "x"}])
    assert info.value.status_code == 503 and "https://accounts.google.com/verify" in str(info.value)
    assert "g1: dead:" in str(info.value)


def test_five_concurrent_requests_on_an_expired_token_refresh_once(bridge, fake):
    for _ in range(5):
        fake.enqueue(text_reply("ok"))
    results, errors = [], []

    def call():
        try:
            reply = client(bridge).chat.completions.create(
                model="gemini-2.5-flash", messages=[{"role": "user", "content": "x"}]
            )
            results.append(reply.choices[0].message.content)
        except Exception as e:  # collected and asserted below
            errors.append(e)

    threads = [threading.Thread(target=call) for _ in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors and results == ["ok"] * 5
    assert fake.refresh_count == 1


def test_standard_credential_file_becomes_an_account_without_config(tmp_path, fake):
    home = tmp_path / "userhome"
    fake.write_credentials(home / ".gemini" / "oauth_creds.json")
    with BridgeProcess(tmp_path, None) as bridge:
        assert "discovered from standard credential files" in bridge.output()
        key = (bridge.home / "client_key").read_text().strip()
        models = openai.OpenAI(base_url=bridge.base_url + "/v1", api_key=key).models.list()
        ids = {m.id for m in models}
        assert {"gemini-2.5-pro", "gemini-cli/gemini-2.5-pro"} <= ids
