"""Canonical request -> the public Gemini API's request bodies.

`models/{model}:streamGenerateContent` (and `:generateContent`, the same body) takes Gemini's
`GenerateContentRequest` itself (`llmbridge.providers.google.request`): the body the gemini-cli
provider sends inside its Code Assist envelope, without Code Assist's `session_id`, and with the
API's thinking defaults (no effort and no budget from the client: only `includeThoughts`, so the
model's own default applies; a client that asked not to see thoughts gets `includeThoughts: false`).
`models/{model}:countTokens` wraps it.
"""

from __future__ import annotations

from typing import Any

from llmbridge.canonical import ChatRequest
from llmbridge.providers.google.request import generate_content_request

Json = dict[str, Any]


def build_body(request: ChatRequest, model: str) -> Json:
    """The JSON body of `models/{model}:streamGenerateContent` or `:generateContent` (the upstream id)."""
    return generate_content_request(request, model, cli_thinking=False)


def build_count_body(request: ChatRequest, model: str) -> Json:
    """The body of `models/{model}:countTokens`: the whole prompt (contents, system instruction and
    tools) as a `generateContentRequest`, so the count includes all of it."""
    full = build_body(request, model)
    inner: Json = {"model": f"models/{model}", "contents": full["contents"]}
    for key in ("systemInstruction", "tools"):
        if key in full:
            inner[key] = full[key]
    return {"generateContentRequest": inner}
