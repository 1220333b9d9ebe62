"""End to end: the official google-genai SDK (and raw HTTP) -> real mitmdump bridge -> the strict fake of
every provider (gemini-cli, kiro, openai, anthropic, gemini, qwen). The anthropic half is in
test_e2e_anthropic_gemini_clients.py.

One bridge per backend (module scope); the rate-limit test runs last in each backend's group because it
makes the single account cool down.
"""

from __future__ import annotations

import json
import time

import httpx
import pytest
from google import genai
from google.genai import errors, types

from tests.bridge_process import CLIENT_KEY
from tests.e2e_backends import BACKENDS, Backend, start_backend

pytestmark = pytest.mark.timeout(60)

WEATHER = types.Tool(
    function_declarations=[
        types.FunctionDeclaration(
            name="get_weather",
            description="Weather for a city",
            parameters_json_schema={
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
                "additionalProperties": False,
            },
        )
    ]
)


@pytest.fixture(scope="module", params=BACKENDS)
def backend(request, tmp_path_factory):
    with start_backend(request.param, tmp_path_factory.mktemp(request.param)) as started:
        yield started


_clients: dict[tuple[int, str], genai.Client] = {}


def client(backend: Backend, key: str = CLIENT_KEY) -> genai.Client:
    """Kept alive here: a genai.Client closes its HTTP client when collected, which would happen
    mid-call in `client(backend).models.generate_content(...)`."""
    made = _clients.get((backend.bridge.port, key))
    if made is None:
        made = _clients[(backend.bridge.port, key)] = genai.Client(
            api_key=key,
            http_options=types.HttpOptions(
                base_url=backend.bridge.base_url, timeout=20_000, retry_options=types.HttpRetryOptions(attempts=1)
            ),
        )
    return made


def test_generate_content_text(backend):
    backend.text("Hello ", "world")
    response = client(backend).models.generate_content(
        model=backend.model,
        contents="hi",
        config=types.GenerateContentConfig(system_instruction="Answer tersely.", temperature=0.2),
    )
    assert response.text == "Hello world"
    assert response.candidates[0].finish_reason == types.FinishReason.STOP
    assert response.usage_metadata.prompt_token_count > 0 and response.usage_metadata.candidates_token_count > 0
    backend.assert_accepted()
    sent = json.dumps(backend.last())
    assert "Answer tersely." in sent and "hi" in sent


def test_generate_content_stream(backend):
    backend.text("one ", "two ", "three")
    chunks = list(client(backend).models.generate_content_stream(model=backend.model, contents="count"))
    assert len(chunks) >= 2
    assert "".join(c.text or "" for c in chunks) == "one two three"
    assert chunks[-1].candidates[0].finish_reason == types.FinishReason.STOP
    assert all(c.candidates[0].finish_reason is None for c in chunks[:-1])
    backend.assert_accepted()


def check_models_list_and_get(c: genai.Client, backend: Backend) -> None:
    names = {m.name for m in c.models.list()}
    assert f"models/{backend.model}" in names
    model = c.models.get(model=backend.model)
    assert model.name == f"models/{backend.model}"
    assert "generateContent" in model.supported_actions
    with pytest.raises(errors.ClientError) as info:
        c.models.get(model="no-such-model")
    assert info.value.code == 404 and info.value.status == "NOT_FOUND"


def test_models_list_and_get_v1beta(backend):
    c = genai.Client(
        api_key=CLIENT_KEY,
        http_options=types.HttpOptions(base_url=backend.bridge.base_url, api_version="v1beta", timeout=20_000),
    )
    check_models_list_and_get(c, backend)


def test_models_list_and_get_default_v1_path(backend):
    # with a custom base_url google-genai lists and gets models under /v1, where OpenAI clients also
    # ask: the bridge tells them apart by the Gemini auth header
    check_models_list_and_get(client(backend), backend)


def test_function_call_round_trip_over_two_turns(backend):
    backend.tool_call("get_weather", "call_g1", {"city": "Paris"})
    c = client(backend)
    config = types.GenerateContentConfig(tools=[WEATHER])
    question = types.Content(role="user", parts=[types.Part(text="Weather in Paris?")])
    first = c.models.generate_content(model=backend.model, contents=[question], config=config)
    calls = first.function_calls
    assert calls and calls[0].name == "get_weather" and calls[0].args == {"city": "Paris"}
    assert "get_weather" in backend.tool_names_sent()
    backend.assert_accepted()

    backend.text("Sunny in Paris.")
    answer = types.Part.from_function_response(name="get_weather", response={"result": "sunny, 24C"})
    if calls[0].id:
        answer.function_response.id = calls[0].id
    second = c.models.generate_content(
        model=backend.model,
        config=config,
        contents=[question, first.candidates[0].content, types.Content(role="user", parts=[answer])],
    )
    assert second.text == "Sunny in Paris."
    backend.assert_accepted()  # the strict fake took the functionCall / functionResponse history
    key, result = backend.last_tool_result()
    assert key in ("call_g1", "get_weather", calls[0].id) and "sunny, 24C" in result


def test_function_call_streamed(backend):
    backend.tool_call("get_weather", "call_g2", {"city": "Oslo"}, text="Checking.")
    chunks = list(
        client(backend).models.generate_content_stream(
            model=backend.model, contents="Weather in Oslo?", config=types.GenerateContentConfig(tools=[WEATHER])
        )
    )
    calls = [call for chunk in chunks for call in chunk.function_calls or []]
    assert [(call.name, call.args) for call in calls] == [("get_weather", {"city": "Oslo"})]
    assert "".join(c.text or "" for c in chunks if c.candidates[0].content.parts[0].text) == "Checking."


def test_thoughts_only_with_include_thoughts(backend):
    backend.text("The answer.", thinking="Considering it.")
    c = client(backend)
    thinking = types.ThinkingConfig(include_thoughts=True, thinking_budget=2048)
    response = c.models.generate_content(
        model=backend.model, contents="think first", config=types.GenerateContentConfig(thinking_config=thinking)
    )
    parts = response.candidates[0].content.parts
    assert [(bool(p.thought), p.text) for p in parts] == [(True, "Considering it."), (False, "The answer.")]
    assert response.text == "The answer."
    assert backend.thinking_sent(2048)
    backend.assert_accepted()

    backend.text("Streamed.", thinking="Streamed thought.")
    chunks = list(
        c.models.generate_content_stream(
            model=backend.model, contents="again", config=types.GenerateContentConfig(thinking_config=thinking)
        )
    )
    thoughts = [p.text for ch in chunks for p in ch.candidates[0].content.parts or [] if p.thought]
    assert thoughts == ["Streamed thought."]

    backend.text("No thoughts shown.", thinking="hidden thought")
    hidden = c.models.generate_content(
        model=backend.model,
        contents="quietly",
        config=types.GenerateContentConfig(thinking_config=types.ThinkingConfig(thinking_budget=2048)),
    )
    assert [p.text for p in hidden.candidates[0].content.parts] == ["No thoughts shown."]


def test_count_tokens_and_method_header(backend):
    before = backend.upstream_counts()
    contents = "How many tokens is this sentence? " * 20
    counted = client(backend).models.count_tokens(model=backend.model, contents=contents)
    assert counted.total_tokens > 20
    raw = httpx.post(
        f"{backend.bridge.base_url}/v1beta/models/{backend.model}:countTokens",
        timeout=20,
        headers={"x-goog-api-key": CLIENT_KEY},
        json={"contents": [{"role": "user", "parts": [{"text": contents}]}]},
    )
    assert raw.status_code == 200 and raw.json()["totalTokens"] == counted.total_tokens
    assert raw.headers["x-llmbridge-token-count-method"] == backend.count_method
    assert backend.upstream_counts() - before == (2 if backend.count_method.startswith("upstream") else 0)


def test_stream_without_alt_sse_is_a_json_array_and_key_query_auth(backend):
    backend.text("alpha ", "beta")
    url = f"{backend.bridge.base_url}/v1beta/models/{backend.model}:streamGenerateContent?key={CLIENT_KEY}"
    body = {"contents": [{"role": "user", "parts": [{"text": "go"}]}]}
    with httpx.stream("POST", url, json=body, timeout=20) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("application/json")
        raw = response.read().decode()
    pieces = json.loads(raw)
    assert isinstance(pieces, list) and len(pieces) >= 2
    assert "".join(p["text"] for piece in pieces for p in piece["candidates"][0]["content"]["parts"]) == "alpha beta"
    assert pieces[-1]["candidates"][0]["finishReason"] == "STOP"
    backend.assert_accepted()

    backend.text("sse")
    sse = httpx.post(url + "&alt=sse", json=body, timeout=20)
    assert sse.headers["content-type"].startswith("text/event-stream")
    assert [json.loads(line[5:]) for line in sse.text.splitlines() if line.startswith("data:")]

    wrong = httpx.post(url.replace(CLIENT_KEY, "sk-wrong"), json=body, timeout=20)
    assert wrong.status_code == 401 and wrong.json()["error"]["status"] == "UNAUTHENTICATED"


def test_unknown_model_is_404_not_found(backend):
    calls = backend.calls()
    with pytest.raises(errors.ClientError) as info:
        client(backend).models.generate_content(model="no-such-model", contents="x")
    assert info.value.code == 404 and info.value.status == "NOT_FOUND"
    assert backend.calls() == calls


def test_a_provider_pinned_model_as_listed_works_through_the_sdk_and_percent_encoded(backend):
    # every model is listed as `model` and `provider/model`; google-genai sends the slash raw
    # (POST /v1/models/openai/gpt-test:generateContent), other clients may send it as %2F
    pinned = f"{backend.name}/{backend.model}"
    c = client(backend)
    assert f"models/{pinned}" in {m.name for m in c.models.list()}
    assert c.models.get(model=pinned).name == f"models/{pinned}"
    assert c.models.get(model=f"models/{pinned}").name == f"models/{pinned}"
    v1beta = genai.Client(
        api_key=CLIENT_KEY,
        http_options=types.HttpOptions(base_url=backend.bridge.base_url, api_version="v1beta", timeout=20_000),
    )
    assert v1beta.models.get(model=pinned).name == f"models/{pinned}"

    backend.text("pinned ", "answer")
    assert c.models.generate_content(model=pinned, contents="hi").text == "pinned answer"
    backend.assert_accepted()
    backend.text("pinned ", "stream")
    chunks = list(c.models.generate_content_stream(model=pinned, contents="hi"))
    assert "".join(ch.text or "" for ch in chunks) == "pinned stream"
    assert c.models.count_tokens(model=pinned, contents="How many tokens? " * 10).total_tokens > 10

    encoded = pinned.replace("/", "%2F")
    headers = {"x-goog-api-key": CLIENT_KEY}
    body = {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}
    base = f"{backend.bridge.base_url}/v1beta/models/{encoded}"
    backend.text("encoded")
    generated = httpx.post(f"{base}:generateContent", json=body, headers=headers, timeout=20)
    assert generated.status_code == 200, generated.text
    assert generated.json()["candidates"][0]["content"]["parts"][0]["text"] == "encoded"
    backend.text("encoded ", "array")
    array = httpx.post(f"{base}:streamGenerateContent", json=body, headers=headers, timeout=20)
    assert array.status_code == 200 and isinstance(array.json(), list)
    backend.text("encoded sse")
    sse = httpx.post(f"{base}:streamGenerateContent?alt=sse", json=body, headers=headers, timeout=20)
    assert sse.status_code == 200 and "encoded sse" in sse.text
    assert httpx.post(f"{base}:countTokens", json=body, headers=headers, timeout=20).status_code == 200
    assert httpx.get(base, headers=headers, timeout=20).json()["name"] == f"models/{pinned}"
    got = httpx.get(f"{backend.bridge.base_url}/v1/models/{encoded}", headers=headers, timeout=20)
    assert got.json()["name"] == f"models/{pinned}"


def test_bad_key_is_401_unauthenticated(backend):
    with pytest.raises(errors.ClientError) as info:
        client(backend, "sk-wrong-key").models.generate_content(model=backend.model, contents="x")
    assert info.value.code == 401 and info.value.status == "UNAUTHENTICATED"


# --- last: makes the account cool down --------------------------------------------------------------


def test_zz_upstream_rate_limit_is_resource_exhausted(backend):
    calls = backend.calls()
    backend.rate_limit(1)
    with pytest.raises(errors.ClientError) as info:
        client(backend).models.generate_content(model=backend.model, contents="x")
    assert backend.calls() == calls + 1  # the upstream said it, not the bridge's own pacing
    assert info.value.code == 429 and info.value.status == "RESOURCE_EXHAUSTED"
    assert info.value.response.headers["retry-after"] == "1"
    time.sleep(1.2)  # let the account's cool-down pass
