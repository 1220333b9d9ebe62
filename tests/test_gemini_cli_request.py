"""Canonical request -> the Code Assist envelope (the GenerateContentRequest inside it:
test_google_request.py)."""

from __future__ import annotations

from llmbridge.canonical import ChatRequest, Message, Reasoning, TextPart, Tool
from llmbridge.providers.gemini_cli.request import build_count_request, build_request


def req(**kw) -> ChatRequest:
    kw.setdefault("messages", [Message(role="user", parts=[TextPart(text="hi")])])
    return ChatRequest(model=kw.pop("model", "gemini-2.5-pro"), **kw)


def test_envelope_shape_and_omitted_fields():
    body = build_request(req(), "gemini-2.5-flash", "proj-1", "sess########3", "sess")
    assert list(body) == ["model", "project", "user_prompt_id", "request"]
    assert body["model"] == "gemini-2.5-flash" and body["project"] == "proj-1"
    assert body["user_prompt_id"] == "sess########3"
    inner = body["request"]
    assert set(inner) == {"contents", "generationConfig", "session_id"}
    assert inner["contents"] == [{"role": "user", "parts": [{"text": "hi"}]}]
    assert inner["session_id"] == "sess"
    assert "project" not in build_request(req(), "gemini-2.5-flash", None, "p", "s")


def test_thinking_is_the_clis_default():
    inner = build_request(req(), "gemini-2.5-pro", None, "p", "s")["request"]
    assert inner["generationConfig"]["thinkingConfig"] == {"includeThoughts": True, "thinkingBudget": 8192}
    asked = build_request(req(reasoning=Reasoning(include_thoughts=False)), "gemini-2.5-pro", None, "p", "s")
    assert asked["request"]["generationConfig"]["thinkingConfig"]["includeThoughts"] is True


def test_count_request_holds_only_the_contents():
    body = build_count_request(req(system=[TextPart(text="sys")], tools=[Tool(name="t")]), "gemini-2.5-pro")
    assert body == {
        "request": {"model": "models/gemini-2.5-pro", "contents": [{"role": "user", "parts": [{"text": "hi"}]}]}
    }
