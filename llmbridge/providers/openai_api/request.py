"""Canonical request -> OpenAI chat completions request body (for OpenAI-compatible upstreams).

* consecutive text parts of a user message (or of a tool result) are joined with a blank line, unless
  `text_parts` asks for them as they came (Qwen Code sends a user message's parts as a list);
* images in a tool result cannot go in a `tool` message: they follow in a user message, after the
  tool messages, introduced by a line naming the tool call they belong to;
* earlier reasoning (`reasoning_content`) is not sent back: chat completions takes no reasoning as
  input and OpenAI rejects unknown message fields;
* the output limit is `max_completion_tokens` for api.openai.com and `max_tokens` for any other
  server (`legacy_max_tokens`): many OpenAI-compatible servers know only the older name.
"""

from __future__ import annotations

import json
from typing import Any

from llmbridge.canonical import (
    ChatRequest,
    ImagePart,
    Message,
    TextPart,
    ToolCallPart,
    ToolResultPart,
)

# Largest thinking budget that still maps to each effort (the same steps the Kiro provider uses).
BUDGET_EFFORTS: list[tuple[float, str]] = [(4096, "low"), (10_000, "medium"), (float("inf"), "high")]


def build_body(
    request: ChatRequest,
    upstream_model: str,
    *,
    legacy_max_tokens: bool = False,
    text_parts: bool = False,
    stream: bool = True,
) -> dict[str, Any]:
    """The JSON body of `POST /chat/completions`; with `stream=False` a non-stream request, as the
    official SDK sends one (no `stream`, no `stream_options`: OpenAI refuses `stream_options`
    without streaming)."""
    body: dict[str, Any] = {"model": upstream_model, "messages": _messages(request, text_parts)}
    if stream:
        body |= {"stream": True, "stream_options": {"include_usage": True}}
    if request.tools:
        body["tools"] = [
            {"type": "function", "function": {"name": t.name, "description": t.description, "parameters": t.parameters}}
            for t in request.tools
        ]
    if request.tool_choice:
        choice = request.tool_choice
        body["tool_choice"] = (
            {"type": "function", "function": {"name": choice.name}} if choice.mode == "tool" else choice.mode
        )
    if request.parallel_tool_calls is not None and request.tools:
        body["parallel_tool_calls"] = request.parallel_tool_calls
    _generation(request, body, "max_tokens" if legacy_max_tokens else "max_completion_tokens")
    return body


def _generation(request: ChatRequest, body: dict[str, Any], max_tokens_field: str) -> None:
    simple = {
        "temperature": request.temperature,
        "top_p": request.top_p,
        "seed": request.seed,
        max_tokens_field: request.max_tokens,
        "presence_penalty": request.presence_penalty,
        "frequency_penalty": request.frequency_penalty,
    }
    body.update({k: v for k, v in simple.items() if v is not None})
    if request.stop:
        body["stop"] = request.stop
    effort = reasoning_effort(request)
    if effort:
        body["reasoning_effort"] = effort
    fmt = request.response_format
    if fmt and fmt.type == "json_object":
        body["response_format"] = {"type": "json_object"}
    elif fmt and fmt.type == "json_schema":
        spec: dict[str, Any] = {"name": fmt.name or "response", "schema": fmt.json_schema or {}}
        if fmt.strict is not None:
            spec["strict"] = fmt.strict
        body["response_format"] = {"type": "json_schema", "json_schema": spec}


def check_request(request: ChatRequest) -> None:
    """Raise InvalidRequest naming a parameter chat completions cannot take. None today: `top_k`, the
    one sampling control it lacks, is left out rather than refused, because Gemini CLI sends
    `topK: 64` on every request as a default, not as a choice (the README says so)."""


def reasoning_effort(request: ChatRequest) -> str | None:
    """The client's effort, else its thinking budget (Anthropic `budget_tokens`, Gemini
    `thinkingBudget`) as the nearest effort: chat completions has no budget control."""
    reasoning = request.reasoning
    if reasoning is None:
        return None
    if reasoning.effort:
        return reasoning.effort
    if reasoning.budget_tokens is None:
        return None
    return next(effort for limit, effort in BUDGET_EFFORTS if reasoning.budget_tokens <= limit)


def _messages(request: ChatRequest, text_parts: bool = False) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    if request.system:
        out.append({"role": "system", "content": request.system_text()})
    for message in request.messages:
        out += _assistant(message) if message.role == "assistant" else _user(message, text_parts)
    return out


def _user(message: Message, text_parts: bool = False) -> list[dict[str, Any]]:
    """Tool messages first (in order), then one user message with the text, images and any images
    that came in tool results; text alone is one string unless `text_parts`."""
    out: list[dict[str, Any]] = []
    content: list[dict[str, Any]] = []
    for part in message.parts:
        if isinstance(part, ToolResultPart):
            out.append(_tool_message(part))
            content += _tool_result_images(part)
        elif isinstance(part, TextPart):
            content.append({"type": "text", "text": part.text})
        elif isinstance(part, ImagePart):
            content.append(_image(part))
    if content:
        only_text = all(c["type"] == "text" for c in content)
        joined = only_text and not text_parts
        out.append({"role": "user", "content": "\n\n".join(c["text"] for c in content) if joined else content})
    return out


def _image(part: ImagePart) -> dict[str, Any]:
    url = part.url or f"data:{part.media_type};base64,{part.data}"
    return {"type": "image_url", "image_url": {"url": url}}


def _tool_message(part: ToolResultPart) -> dict[str, Any]:
    text = "\n\n".join(p.text for p in part.content if isinstance(p, TextPart))
    if not text and any(isinstance(p, ImagePart) for p in part.content):
        text = "(the output is an image; it follows in the next user message)"
    return {"role": "tool", "tool_call_id": part.tool_call_id, "content": ("Error: " if part.is_error else "") + text}


def _tool_result_images(part: ToolResultPart) -> list[dict[str, Any]]:
    images = [_image(p) for p in part.content if isinstance(p, ImagePart)]
    if not images:
        return []
    label = f"[image output of tool call {part.tool_call_id}" + (f" ({part.name})]" if part.name else "]")
    return [{"type": "text", "text": label}, *images]


def _assistant(message: Message) -> list[dict[str, Any]]:
    # ReasoningParts are left out on purpose: chat completions takes no reasoning as input, and
    # OpenAI answers 400 to unknown message fields such as `reasoning_content`.
    text = "".join(p.text for p in message.parts if isinstance(p, TextPart))
    calls = [p for p in message.parts if isinstance(p, ToolCallPart)]
    rendered: dict[str, Any] = {"role": "assistant", "content": text or None}
    if calls:
        rendered["tool_calls"] = [
            {
                "id": c.id,
                "type": "function",
                "function": {"name": c.name, "arguments": json.dumps(c.arguments, ensure_ascii=False)},
            }
            for c in calls
        ]
    return [rendered]
