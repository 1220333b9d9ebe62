"""Canonical request -> the Code Assist envelope, built as the Gemini CLI builds it.

    {model, project, user_prompt_id, request: {contents, systemInstruction, tools, toolConfig,
     generationConfig, session_id}}

The inner `request` is Gemini's `GenerateContentRequest` (`llmbridge.providers.google.request`), with
the CLI's thinking defaults, tools as `parametersJsonSchema`, plus Code Assist's own `session_id`.
Absent fields are omitted (the CLI's JSON.stringify drops undefined).

As the CLI does (`ensureActiveLoopHasThoughtSignatures`), on every model (not only Gemini 3) the
first function call of each model turn since the user's last prompt carries a thought signature:
its own when it came with one, else `skip_thought_signature_validator`.
"""

from __future__ import annotations

from typing import Any

from llmbridge.canonical import ChatRequest
from llmbridge.providers.google import models
from llmbridge.providers.google.request import SKIP_SIGNATURE, build_contents, generate_content_request

Json = dict[str, Any]


def build_request(request: ChatRequest, model: str, project: str | None, user_prompt_id: str, session_id: str) -> Json:
    """The JSON body of `v1internal:streamGenerateContent` for `model` (the upstream id)."""
    inner = generate_content_request(request, model, cli_thinking=True, json_schema_tools=True)
    sign_active_loop(inner["contents"])
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


def sign_active_loop(contents: list[Json]) -> None:
    """The first functionCall of each model turn after the last user prompt (a user turn with text
    and no function response) gets the skip signature when it has none."""
    start = next(
        (
            i
            for i in range(len(contents) - 1, -1, -1)
            if contents[i]["role"] == "user"
            and any(p.get("text") for p in contents[i]["parts"])
            and not any("functionResponse" in p for p in contents[i]["parts"])
        ),
        None,
    )
    if start is None:
        return
    for content in contents[start:]:
        if content["role"] != "model":
            continue
        for part in content["parts"]:
            if "functionCall" in part:
                part.setdefault("thoughtSignature", SKIP_SIGNATURE)
                break
