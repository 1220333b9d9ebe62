"""Canonical request -> the public Gemini API's `GenerateContentRequest`.

The body is the one the gemini-cli provider sends inside its Code Assist envelope (shared builder:
`gemini_cli.request.generate_content_request`), with two differences:

* no `session_id` (Code Assist's own field);
* thinking: when the client set no effort and no budget, only `includeThoughts` is sent and the
  model's own default applies (the Gemini CLI's fixed 8192-token default is a CLI choice); a client
  that asked not to see thoughts (`include_thoughts` false) gets `includeThoughts: false`.
"""

from __future__ import annotations

from typing import Any

from llmbridge.canonical import ChatRequest
from llmbridge.errors import InvalidRequest
from llmbridge.providers.gemini_cli import models
from llmbridge.providers.gemini_cli.request import (
    check_request as check_code_assist_request,
)
from llmbridge.providers.gemini_cli.request import (
    generate_content_request,
    system_instruction,
)

Json = dict[str, Any]


def check_request(request: ChatRequest, model: str) -> None:
    """The same limits as Code Assist (the same Gemini models behind both), named for this API."""
    try:
        check_code_assist_request(request, model)
    except InvalidRequest as e:
        raise InvalidRequest(e.message.replace("Code Assist", "The Gemini API"), param=e.param) from None


def build_body(request: ChatRequest, model: str) -> Json:
    """The JSON body of `models/{model}:streamGenerateContent` (the upstream id)."""
    body = generate_content_request(request, model)
    thinking = _thinking(request, model, body.get("generationConfig", {}).get("thinkingConfig"))
    generation = body.setdefault("generationConfig", {})
    generation.pop("thinkingConfig", None)
    if thinking:
        generation["thinkingConfig"] = thinking
    if not generation:
        body.pop("generationConfig")
    return body


def _thinking(request: ChatRequest, model: str, built: Json | None) -> Json | None:
    if built is None or models.is_gemma(model):
        return built
    reasoning = request.reasoning
    asked = reasoning is not None and (reasoning.effort is not None or reasoning.budget_tokens is not None)
    config = dict(built) if asked else {"includeThoughts": True}
    if reasoning is not None and reasoning.include_thoughts is False:
        config["includeThoughts"] = False
    return config


def build_count_body(request: ChatRequest, model: str) -> Json:
    """The body of `models/{model}:countTokens`: the whole prompt (contents, system instruction and
    tools) as a `generateContentRequest`, so the count includes all of it."""
    full = generate_content_request(request, model)
    inner: Json = {"model": f"models/{model}", "contents": full["contents"]}
    system = system_instruction(request)
    if system:
        inner["systemInstruction"] = system
    if "tools" in full:
        inner["tools"] = full["tools"]
    return {"generateContentRequest": inner}
