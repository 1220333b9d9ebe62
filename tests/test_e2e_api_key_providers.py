"""End to end: the official openai, anthropic and google-genai SDKs -> real mitmdump bridge -> the strict
fakes of the two API-key providers (`anthropic`: FakeAnthropic, `gemini`: FakeGeminiAPI).

One bridge for the module; the rate-limit tests run last (`test_zz_*`) because they make an account
cool down.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import anthropic
import httpx
import openai
import pytest
from google import genai
from google.genai import types

from tests.bridge_process import CLIENT_KEY, BridgeProcess, write_config
from tests.fakes import anthropic_api as fa
from tests.fakes import gemini_api as fg

pytestmark = [
    pytest.mark.timeout(60),
    pytest.mark.filterwarnings("ignore:The model .* is deprecated:DeprecationWarning"),
]

CLAUDE, GEMINI = "claude-test", "gemini-2.5-flash"
CLAUDE_CODE = json.loads((Path(__file__).parent / "data" / "claude_code_request.json").read_text())
WEATHER_FN = {
    "name": "get_weather",
    "description": "Weather for a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}
PACING = {"requests_per_minute": 10_000, "max_concurrent": 50}


@pytest.fixture(scope="module")
def fakes():
    with fa.FakeAnthropic() as claude, fg.FakeGeminiAPI() as gemini:
        yield claude, gemini


@pytest.fixture(scope="module")
def bridge(fakes, tmp_path_factory):
    claude, gemini = fakes
    workdir = tmp_path_factory.mktemp("apikeys")
    config = write_config(
        workdir / "bridge.toml",
        [
            {
                "name": "claude-key",
                "provider": "anthropic",
                "api_key": claude.api_key,
                "base_url": claude.base_url,
                "models": [CLAUDE],
                **PACING,
            },
            {
                "name": "gemini-key",
                "provider": "gemini",
                "api_key": gemini.api_key,
                "base_url": gemini.base_url,
                "models": [GEMINI],
                **PACING,
            },
        ],
        record=False,
    )
    with BridgeProcess(workdir, config) as process:
        yield process


@pytest.fixture
def claude(fakes):
    return fakes[0]


@pytest.fixture
def gemini(fakes):
    return fakes[1]


def oai(bridge: BridgeProcess) -> openai.OpenAI:
    return openai.OpenAI(base_url=bridge.base_url + "/v1", api_key=CLIENT_KEY, max_retries=0, timeout=20)


def ant(bridge: BridgeProcess) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=bridge.base_url, api_key=CLIENT_KEY, max_retries=0, timeout=20)


_genai: dict[int, genai.Client] = {}


def gen(bridge: BridgeProcess) -> genai.Client:
    if bridge.port not in _genai:  # kept alive: a collected client closes its HTTP connection mid-call
        _genai[bridge.port] = genai.Client(
            api_key=CLIENT_KEY,
            http_options=types.HttpOptions(
                base_url=bridge.base_url, timeout=20_000, retry_options=types.HttpRetryOptions(attempts=1)
            ),
        )
    return _genai[bridge.port]


# --- anthropic provider ----------------------------------------------------------------------------


def test_openai_client_text_to_anthropic(bridge, claude):
    claude.enqueue(fa.text_reply("Hello from Claude"))
    reply = oai(bridge).chat.completions.create(
        model=CLAUDE,
        messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}],
        temperature=0.5,
    )
    assert reply.choices[0].message.content == "Hello from Claude"
    assert reply.choices[0].finish_reason == "stop"
    assert reply.usage.prompt_tokens == 28 and reply.usage.prompt_tokens_details.cached_tokens == 5
    sent, headers = claude.requests[-1], claude.headers[-1]
    assert sent == {
        "model": CLAUDE,
        "system": [{"type": "text", "text": "Be brief."}],
        "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}],
        "max_tokens": 8192,
        "temperature": 0.5,
    }  # no "stream": a non-stream request goes upstream non-stream
    assert headers["x-api-key"] == claude.api_key and headers["anthropic-version"] == "2023-06-01"
    assert "authorization" not in headers and "anthropic-beta" not in headers


def test_openai_client_stream_to_anthropic(bridge, claude):
    claude.enqueue(fa.text_reply("abcdefghi"))
    chunks = list(
        oai(bridge).chat.completions.create(
            model=CLAUDE,
            messages=[{"role": "user", "content": "x"}],
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "abcdefghi"
    assert chunks[-1].usage.total_tokens == 28 + 9


def test_openai_client_tools_over_two_turns_to_anthropic(bridge, claude):
    args = {"city": "Paris"}
    claude.enqueue(fa.tool_reply("get_weather", "toolu_01A", args, text="Checking."))
    tools = [{"type": "function", "function": WEATHER_FN}]
    messages: list[dict] = [{"role": "user", "content": "Weather in Paris?"}]
    first = oai(bridge).chat.completions.create(model=CLAUDE, messages=messages, tools=tools)
    call = first.choices[0].message.tool_calls[0]
    assert first.choices[0].finish_reason == "tool_calls"
    assert (call.id, call.function.name, json.loads(call.function.arguments)) == ("toolu_01A", "get_weather", args)
    claude.enqueue(fa.text_reply("Sunny."))
    messages += [
        first.choices[0].message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": "sunny, 24C"},
    ]
    second = oai(bridge).chat.completions.create(model=CLAUDE, messages=messages, tools=tools)
    assert second.choices[0].message.content == "Sunny."
    sent = claude.requests[-1]
    assert sent["tools"][0]["input_schema"] == WEATHER_FN["parameters"]
    assert sent["messages"][1]["content"][-1] == {
        "type": "tool_use",
        "id": "toolu_01A",
        "name": "get_weather",
        "input": args,
    }
    assert sent["messages"][2]["content"] == [
        {"type": "tool_result", "tool_use_id": "toolu_01A", "content": [{"type": "text", "text": "sunny, 24C"}]}
    ]


def test_anthropic_client_thinking_signature_round_trip_and_beta_header(bridge, claude):
    claude.enqueue(fa.thinking_reply("Let me think about it.", "c2lnbmF0dXJl", "Forty-two."))
    beta = {"anthropic-beta": "interleaved-thinking-2025-05-14"}
    thinking = {"type": "enabled", "budget_tokens": 2048}
    first = ant(bridge).messages.create(
        model=CLAUDE,
        max_tokens=4096,
        thinking=thinking,
        extra_headers=beta,
        messages=[{"role": "user", "content": "meaning of life?"}],
    )
    assert [b.type for b in first.content] == ["thinking", "text"]
    assert first.content[0].signature == "c2lnbmF0dXJl" and first.content[0].thinking == "Let me think about it."
    assert claude.headers[-1]["anthropic-beta"] == beta["anthropic-beta"]
    assert claude.requests[-1]["thinking"] == thinking and claude.requests[-1]["max_tokens"] == 4096

    claude.enqueue(fa.text_reply("Because."))
    with ant(bridge).messages.stream(
        model=CLAUDE,
        max_tokens=4096,
        thinking=thinking,
        extra_headers=beta,
        messages=[
            {"role": "user", "content": "meaning of life?"},
            {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in first.content]},
            {"role": "user", "content": "why?"},
        ],
    ) as stream:
        assert stream.get_final_message().content[0].text == "Because."
    assert claude.requests[-1]["messages"][1]["content"][0] == {
        "type": "thinking",
        "thinking": "Let me think about it.",
        "signature": "c2lnbmF0dXJl",
    }
    assert not claude.rejections


def test_claude_code_request_reaches_anthropic_as_sent(bridge, claude):
    body = dict(copy.deepcopy(CLAUDE_CODE), model=CLAUDE, stream=True)
    # the recording's last tool-calling turn has no thinking block: Anthropic would refuse thinking
    assert body["messages"][-2]["role"] == "assistant" and body["messages"][-2]["content"][0]["type"] == "tool_use"
    claude.enqueue(fa.tool_reply("Glob", "toolu_cc", {"pattern": "**/*.py"}))
    response = httpx.post(
        bridge.base_url + "/v1/messages",
        json=body,
        timeout=30,
        headers={"x-api-key": CLIENT_KEY, "anthropic-version": "2023-06-01"},
    )
    assert response.status_code == 200 and "input_json_delta" in response.text
    assert not claude.rejections, claude.rejections
    assert "thinking" not in claude.requests[-1]  # left out rather than refused
    body["messages"][-2]["content"].insert(
        0,
        {
            "type": "thinking",
            "thinking": "Run the tests again.",
            "signature": "EqQBCkYIBxgCKkCFakeSignatureForTestingOnly0004==",
        },
    )
    claude.enqueue(fa.tool_reply("Glob", "toolu_cc", {"pattern": "**/*.py"}))
    response = httpx.post(
        bridge.base_url + "/v1/messages",
        json=body,
        timeout=30,
        headers={"x-api-key": CLIENT_KEY, "anthropic-version": "2023-06-01"},
    )
    assert response.status_code == 200 and "input_json_delta" in response.text
    sent = claude.requests[-1]
    assert not claude.rejections, claude.rejections
    assert sent["thinking"] == CLAUDE_CODE["thinking"] and sent["max_tokens"] == CLAUDE_CODE["max_tokens"]
    assert [t["name"] for t in sent["tools"]] == [t["name"] for t in CLAUDE_CODE["tools"]]
    assert len(sent["messages"]) == len(CLAUDE_CODE["messages"])


def test_count_tokens_uses_anthropic(bridge, claude):
    params = {"model": CLAUDE, "system": "terse", "messages": [{"role": "user", "content": "count me"}]}
    assert ant(bridge).messages.count_tokens(**params).input_tokens == 4242
    raw = httpx.post(
        bridge.base_url + "/v1/messages/count_tokens",
        json=params,
        timeout=20,
        headers={"x-api-key": CLIENT_KEY, "anthropic-version": "2023-06-01"},
    )
    assert raw.json() == {"input_tokens": 4242}
    assert raw.headers["x-llmbridge-token-count-method"] == "upstream:anthropic"
    assert claude.count_requests[-1] == {
        "model": CLAUDE,
        "system": [{"type": "text", "text": "terse"}],
        "messages": [{"role": "user", "content": [{"type": "text", "text": "count me"}]}],
    }


def test_error_event_mid_stream_reaches_the_client(bridge, claude):
    claude.enqueue(fa.error_event_reply("overloaded_error", "Overloaded"))
    response = httpx.post(
        bridge.base_url + "/v1/messages",
        timeout=30,
        headers={"x-api-key": CLIENT_KEY, "anthropic-version": "2023-06-01"},
        json={"model": CLAUDE, "max_tokens": 64, "stream": True, "messages": [{"role": "user", "content": "x"}]},
    )
    assert "event: error" in response.text and "Overloaded" in response.text


def test_refused_parameter_is_400_naming_it(bridge, claude):
    before = len(claude.requests)
    with pytest.raises(openai.BadRequestError) as info:
        oai(bridge).chat.completions.create(model=CLAUDE, messages=[{"role": "user", "content": "x"}], seed=3)
    assert "seed" in str(info.value) and len(claude.requests) == before


# --- gemini provider -------------------------------------------------------------------------------


def test_genai_client_text_and_stream_to_gemini(bridge, gemini):
    gemini.enqueue(fg.text_reply("Hello ", "world"))
    response = gen(bridge).models.generate_content(
        model=GEMINI,
        contents="hi",
        config=types.GenerateContentConfig(system_instruction="Answer tersely.", temperature=0.2),
    )
    assert response.text == "Hello world"
    assert response.usage_metadata.prompt_token_count == 12
    path, headers = gemini.paths[-1], gemini.headers[-1]
    assert path == f"/v1beta/models/{GEMINI}:generateContent" and "key=" not in path  # non-stream, as asked
    assert headers["x-goog-api-key"] == gemini.api_key
    sent = gemini.requests[-1]
    assert sent["systemInstruction"] == {"role": "user", "parts": [{"text": "Answer tersely."}]}
    assert sent["generationConfig"] == {"temperature": 0.2, "thinkingConfig": {"includeThoughts": True}}

    gemini.enqueue(fg.text_reply("one ", "two ", "three"))
    chunks = list(gen(bridge).models.generate_content_stream(model=GEMINI, contents="count"))
    assert "".join(c.text or "" for c in chunks) == "one two three" and len(chunks) >= 2
    assert gemini.paths[-1] == f"/v1beta/models/{GEMINI}:streamGenerateContent?alt=sse"
    assert not gemini.rejections


def test_genai_client_tools_over_two_turns_to_gemini(bridge, gemini):
    gemini.enqueue(fg.tool_reply("get_weather", {"city": "Paris"}, call_id="fc-1"))
    tool = types.Tool(
        function_declarations=[
            types.FunctionDeclaration(
                name="get_weather", description="Weather", parameters_json_schema=WEATHER_FN["parameters"]
            )
        ]
    )
    config = types.GenerateContentConfig(
        tools=[tool], automatic_function_calling=types.AutomaticFunctionCallingConfig(disable=True)
    )
    first = gen(bridge).models.generate_content(model=GEMINI, contents="Weather in Paris?", config=config)
    call = first.function_calls[0]
    assert (call.name, call.args) == ("get_weather", {"city": "Paris"})
    gemini.enqueue(fg.text_reply("Sunny."))
    contents = [
        types.Content(role="user", parts=[types.Part(text="Weather in Paris?")]),
        first.candidates[0].content,
        types.Content(
            role="user",
            parts=[
                types.Part(
                    function_response=types.FunctionResponse(
                        name="get_weather", id=call.id, response={"output": "sunny"}
                    )
                )
            ],
        ),
    ]
    second = gen(bridge).models.generate_content(model=GEMINI, contents=contents, config=config)
    assert second.text == "Sunny."
    assert not gemini.rejections
    assert gemini.requests[-1]["contents"][2]["parts"][0]["functionResponse"]["name"] == "get_weather"


def test_openai_client_to_gemini(bridge, gemini):
    gemini.enqueue(fg.text_reply("from gemini", thought="hmm"))
    reply = oai(bridge).chat.completions.create(
        model=GEMINI, messages=[{"role": "user", "content": "x"}], reasoning_effort="low"
    )
    assert reply.choices[0].message.content == "from gemini"
    assert gemini.requests[-1]["generationConfig"]["thinkingConfig"] == {
        "includeThoughts": True,
        "thinkingBudget": 1024,
    }


def test_count_tokens_uses_gemini(bridge, gemini):
    counted = gen(bridge).models.count_tokens(model=GEMINI, contents="count me")
    assert counted.total_tokens == 321
    raw = httpx.post(
        f"{bridge.base_url}/v1beta/models/{GEMINI}:countTokens",
        timeout=20,
        headers={"x-goog-api-key": CLIENT_KEY},
        json={"contents": [{"role": "user", "parts": [{"text": "count me"}]}]},
    )
    assert raw.json()["totalTokens"] == 321
    assert raw.headers["x-llmbridge-token-count-method"] == "upstream:gemini"
    inner = gemini.count_requests[-1]["generateContentRequest"]
    assert inner["model"] == f"models/{GEMINI}" and "key=" not in gemini.paths[-1]


# --- last: rate limits (the accounts cool down afterwards) ------------------------------------------


def test_zz_anthropic_429_is_client_429_with_retry_after(bridge, claude):
    claude.enqueue(fa.error_reply(429, "rate_limit_error", "Number of requests exceeded", retry_after="7"))
    with pytest.raises(openai.RateLimitError) as info:
        oai(bridge).chat.completions.create(model=CLAUDE, messages=[{"role": "user", "content": "x"}])
    assert info.value.response.headers["retry-after"] == "7"
    assert "Number of requests exceeded" in str(info.value)


def test_zz_gemini_429_is_client_429_with_retry_after(bridge, gemini):
    delay = [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "9s"}]
    gemini.enqueue(fg.status_reply(429, "RESOURCE_EXHAUSTED", "Resource has been exhausted", delay))
    with pytest.raises(openai.RateLimitError) as info:
        oai(bridge).chat.completions.create(model=GEMINI, messages=[{"role": "user", "content": "x"}])
    assert info.value.response.headers["retry-after"] == "9"
