"""The OpenAI-compatible provider's request builder: canonical request -> chat completions body."""

from __future__ import annotations

import pytest

from llmbridge.canonical import (
    ChatRequest,
    ImagePart,
    Message,
    Reasoning,
    ReasoningPart,
    TextPart,
    ToolCallPart,
    ToolResultPart,
)
from llmbridge.config import AccountConfig
from llmbridge.errors import AccountUnusable, PermissionDenied
from llmbridge.providers.openai_api.provider import OpenAIProvider, classify
from llmbridge.providers.openai_api.request import build_body, check_request


def request(reasoning: Reasoning | None) -> ChatRequest:
    return ChatRequest(model="m", messages=[Message(role="user", parts=[TextPart(text="hi")])], reasoning=reasoning)


def test_a_stream_asks_for_usage_and_a_non_stream_body_has_neither_field():
    streamed = build_body(request(None), "gpt")
    assert (streamed["stream"], streamed["stream_options"]) == (True, {"include_usage": True})
    whole = build_body(request(None), "gpt", stream=False)
    assert whole == {"model": "gpt", "messages": [{"role": "user", "content": "hi"}]}


@pytest.mark.parametrize(
    ("budget", "effort"), [(1024, "low"), (4096, "low"), (8192, "medium"), (10_000, "medium"), (31_999, "high")]
)
def test_thinking_budget_becomes_the_nearest_reasoning_effort(budget, effort):
    # an Anthropic `thinking: {budget_tokens}` or Gemini `thinkingBudget` client must not lose its thinking
    assert build_body(request(Reasoning(budget_tokens=budget)), "m")["reasoning_effort"] == effort


def test_explicit_effort_wins_and_no_reasoning_sends_none():
    assert build_body(request(Reasoning(effort="high", budget_tokens=1024)), "m")["reasoning_effort"] == "high"
    assert build_body(request(Reasoning(effort="none")), "m")["reasoning_effort"] == "none"
    assert "reasoning_effort" not in build_body(request(None), "m")
    assert "reasoning_effort" not in build_body(request(Reasoning(include_thoughts=True)), "m")


def user(*parts) -> Message:
    return Message(role="user", parts=[TextPart(text=p) if isinstance(p, str) else p for p in parts])


def test_consecutive_user_text_parts_are_separated():
    body = build_body(ChatRequest(model="m", messages=[user("What is 2+2?", "Answer briefly.")]), "m")
    assert body["messages"] == [{"role": "user", "content": "What is 2+2?\n\nAnswer briefly."}]


def test_top_k_is_left_out_not_refused():
    """Gemini CLI sends topK on every request; chat completions has no such control."""
    request = ChatRequest(model="m", messages=[user("hi")], top_k=64, temperature=1)
    check_request(request)
    body = build_body(request, "m")
    assert "top_k" not in body and body["temperature"] == 1


def test_tool_result_images_follow_in_a_user_message():
    image = ImagePart(media_type="image/png", data="iVBORw0KGgo=")
    messages = [
        user("shoot"),
        Message(role="assistant", parts=[ToolCallPart(id="c1", name="screenshot")]),
        user(ToolResultPart(tool_call_id="c1", name="screenshot", content=[image]), "what do you see?"),
    ]
    sent = build_body(ChatRequest(model="m", messages=messages), "m")["messages"]
    assert sent[2]["role"] == "tool" and "image" in sent[2]["content"]
    assert sent[3]["role"] == "user" and sent[3]["content"] == [
        {"type": "text", "text": "[image output of tool call c1 (screenshot)]"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
        {"type": "text", "text": "what do you see?"},
    ]


def test_reasoning_is_not_sent_back():
    messages = [
        user("hi"),
        Message(role="assistant", parts=[ReasoningPart(text="hmm"), TextPart(text="hello")]),
        user("again"),
    ]
    sent = build_body(ChatRequest(model="m", messages=messages), "m")["messages"]
    assert sent[1] == {"role": "assistant", "content": "hello"}


def test_max_tokens_field_depends_on_the_server():
    limited = ChatRequest(model="m", messages=[user("hi")], max_tokens=99)
    assert build_body(limited, "m")["max_completion_tokens"] == 99
    legacy = build_body(limited, "m", legacy_max_tokens=True)
    assert legacy["max_tokens"] == 99 and "max_completion_tokens" not in legacy


@pytest.mark.parametrize(
    ("base_url", "legacy"), [(None, False), ("https://api.openai.com/v1/", False), ("http://127.0.0.1:8000/v1", True)]
)
def test_provider_picks_the_max_tokens_field_from_base_url(base_url, legacy):
    account = AccountConfig(name="o", provider="openai", api_key="k", base_url=base_url)
    assert OpenAIProvider(account, http=None).is_openai is not legacy


@pytest.mark.parametrize(
    ("body", "kind"),
    [
        (
            b'{"error":{"message":"Project proj_1 does not have access to model gpt-5","code":"model_not_found"}}',
            PermissionDenied,
        ),
        (b'{"error":{"message":"Your account has been deactivated.","code":"account_deactivated"}}', AccountUnusable),
        (
            b'{"error":{"message":"Country, region, or territory not supported","code":'
            b'"unsupported_country_region_territory"}}',
            AccountUnusable,
        ),
    ],
)
def test_forbidden_is_dead_only_when_the_account_is(body, kind):
    error = classify(403, body, None)
    assert type(error) is kind and error.status == 403


def test_bad_key_takes_the_account_out_instead_of_refreshing():
    error = classify(401, b'{"error":{"message":"Incorrect API key provided","code":"invalid_api_key"}}', None)
    assert type(error) is AccountUnusable and error.action == "dead"
    assert "api_key" in error.message and "Incorrect API key provided" in error.message
