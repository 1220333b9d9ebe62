"""Canonical request -> the public Gemini API's bodies (the shared builder: test_google_request.py)."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest

from llmbridge.canonical import (
    ChatRequest,
    ImagePart,
    Message,
    Reasoning,
    TextPart,
    Tool,
    ToolCallPart,
    ToolChoice,
    ToolResultPart,
)
from llmbridge.config import AccountConfig
from llmbridge.errors import InvalidRequest
from llmbridge.providers.gemini_api.provider import GeminiAPIProvider
from llmbridge.providers.gemini_api.request import build_body, build_count_body
from llmbridge.providers.gemini_cli.request import build_request
from llmbridge.providers.google.decoder import GeminiDecoder
from llmbridge.whole_body import WholeBodyDecoder
from tests.fakes.gemini_api import GENERATION_FIELDS, REQUEST_FIELDS, check_contents


def req(**kw) -> ChatRequest:
    kw.setdefault("messages", [Message(role="user", parts=[TextPart(text="hi")])])
    return ChatRequest(model="gemini-2.5-flash", **kw)


def test_body_is_the_code_assist_inner_request_without_session():
    request = req(
        system=[TextPart(text="sys")],
        temperature=0.3,
        max_tokens=99,
        stop=["x"],
        tools=[Tool(name="get", parameters={"type": "object", "properties": {}})],
        tool_choice=ToolChoice(mode="required"),
        reasoning=Reasoning(budget_tokens=2048),
    )
    body = build_body(request, "gemini-2.5-flash")
    inner = build_request(request, "gemini-2.5-flash", "p", "id", "s")["request"]
    inner.pop("session_id")
    # tools differ by design: Code Assist gets the CLI's parametersJsonSchema, the public API the
    # reduced OpenAPI `parameters` (llmbridge/providers/google/schema.py)
    assert inner.pop("tools") == [
        {"functionDeclarations": [{"name": "get", "parametersJsonSchema": {"type": "object", "properties": {}}}]}
    ]
    assert body.pop("tools") == [{"functionDeclarations": [{"name": "get"}]}]
    assert body == inner
    assert set(body) <= REQUEST_FIELDS and set(body["generationConfig"]) <= GENERATION_FIELDS
    assert body["generationConfig"]["thinkingConfig"] == {"includeThoughts": True, "thinkingBudget": 2048}


def test_thinking_defaults_to_the_model():
    """Unlike Code Assist (the CLI's 8192-token default), no effort and no budget: the model decides."""
    body = build_body(req(), "gemini-2.5-flash")
    assert body["generationConfig"]["thinkingConfig"] == {"includeThoughts": True}


def test_tool_turns_are_valid_for_the_fake():
    messages = [
        Message(role="user", parts=[TextPart(text="q")]),
        Message(role="assistant", parts=[ToolCallPart(id="c1", name="get", arguments={"a": 1})]),
        Message(role="user", parts=[ToolResultPart(tool_call_id="c1", content=[TextPart(text="r")])]),
    ]
    body = build_body(req(messages=messages), "gemini-2.5-flash")
    assert check_contents(body["contents"]) is None
    assert body["contents"][2]["parts"][0]["functionResponse"] == {
        "name": "get",
        "response": {"output": "r"},
        "id": "c1",
    }


def test_count_body_holds_the_whole_prompt():
    request = req(system=[TextPart(text="sys")], tools=[Tool(name="get")], temperature=0.5)
    body = build_count_body(request, "gemini-2.5-pro")
    inner = body["generateContentRequest"]
    assert set(inner) == {"model", "contents", "systemInstruction", "tools"}
    assert inner["model"] == "models/gemini-2.5-pro" and inner["systemInstruction"]["parts"] == [{"text": "sys"}]


def test_check_request_names_this_api():
    image = ImagePart(url="https://x.test/a.png")
    provider = GeminiAPIProvider(AccountConfig(name="g", provider="gemini", api_key="k"), None)  # type: ignore[arg-type]
    with pytest.raises(InvalidRequest) as info:
        provider.check_request(req(messages=[Message(role="user", parts=[image])]))
    assert "Gemini API" in info.value.message and "Code Assist" not in info.value.message
    assert info.value.param == "messages"


def test_provider_urls_and_headers():
    provider = GeminiAPIProvider(
        AccountConfig(name="g", provider="gemini", api_key="AIza1", base_url="http://h:1/v1beta/"), None
    )  # type: ignore[arg-type]
    assert provider.url("gemini-2.5-pro", "countTokens") == "http://h:1/v1beta/models/gemini-2.5-pro:countTokens"
    assert provider.headers()["x-goog-api-key"] == "AIza1"
    assert provider.upstream_model("models/gemini-2.5-pro") == "gemini-2.5-pro"
    assert provider.upstream_model("gemini-9") is None


@pytest.mark.parametrize(
    ("stream", "path"),
    [
        (True, "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse"),
        (False, "/v1beta/models/gemini-2.5-flash:generateContent"),
    ],
)
def test_a_request_goes_to_the_method_of_its_kind_with_the_same_body(stream, path):
    sent: list[httpx.Request] = []

    def upstream(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(200, json={})

    async def run():
        http = httpx.AsyncClient(transport=httpx.MockTransport(upstream))
        provider = GeminiAPIProvider(AccountConfig(name="g", provider="gemini", api_key="k", base_url="http://h"), http)
        call = await provider.open(req(stream=stream), "gemini-2.5-flash")
        await call.aclose()
        return call

    call = asyncio.run(run())
    assert str(sent[0].url) == "http://h" + path
    assert json.loads(sent[0].content) == build_body(req(stream=stream), "gemini-2.5-flash")
    assert isinstance(call.decoder, GeminiDecoder if stream else WholeBodyDecoder)
