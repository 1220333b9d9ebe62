"""Canonical request -> the Code Assist envelope, built as the Gemini CLI builds it.

    {model, project, user_prompt_id, request: {contents, systemInstruction, tools, toolConfig,
     generationConfig, session_id}}

The inner `request` is Gemini's `GenerateContentRequest` (`llmbridge.providers.google.request`), with
the CLI's thinking defaults, plus Code Assist's own `session_id`. Absent fields are omitted (the
CLI's JSON.stringify drops undefined).
"""

from __future__ import annotations

from typing import Any

from llmbridge.canonical import ChatRequest
from llmbridge.providers.google import models
from llmbridge.providers.google.request import build_contents, generate_content_request

Json = dict[str, Any]


def build_request(request: ChatRequest, model: str, project: str | None, user_prompt_id: str, session_id: str) -> Json:
    """The JSON body of `v1internal:streamGenerateContent` for `model` (the upstream id)."""
    inner = generate_content_request(request, model, cli_thinking=True)
    inner["session_id"] = session_id
    envelope: Json = {"model": model}
    if project:
        envelope["project"] = project
    envelope["user_prompt_id"] = user_prompt_id
    envelope["request"] = inner
    return envelope


def build_count_request(request: ChatRequest, model: str) -> Json:
    """The JSON body of `v1internal:countTokens`: Code Assist counts only `contents`."""
    contents = build_contents(request.messages, gemini3=models.is_gemini3(model))
    return {"request": {"model": f"models/{model}", "contents": contents}}
