"""The OpenAI-compatible provider's request builder: canonical request -> chat completions body."""

from __future__ import annotations

import pytest

from llmbridge.canonical import ChatRequest, Message, Reasoning, TextPart
from llmbridge.providers.openai_api.request import build_body


def request(reasoning: Reasoning | None) -> ChatRequest:
    return ChatRequest(model="m", messages=[Message(role="user", parts=[TextPart(text="hi")])],
                       reasoning=reasoning)


@pytest.mark.parametrize(("budget", "effort"), [(1024, "low"), (4096, "low"), (8192, "medium"),
                                                (10_000, "medium"), (31_999, "high")])
def test_thinking_budget_becomes_the_nearest_reasoning_effort(budget, effort):
    # an Anthropic `thinking: {budget_tokens}` or Gemini `thinkingBudget` client must not lose its thinking
    assert build_body(request(Reasoning(budget_tokens=budget)), "m")["reasoning_effort"] == effort


def test_explicit_effort_wins_and_no_reasoning_sends_none():
    assert build_body(request(Reasoning(effort="high", budget_tokens=1024)), "m")["reasoning_effort"] == "high"
    assert build_body(request(Reasoning(effort="none")), "m")["reasoning_effort"] == "none"
    assert "reasoning_effort" not in build_body(request(None), "m")
    assert "reasoning_effort" not in build_body(request(Reasoning(include_thoughts=True)), "m")
