"""Canonical request -> OpenAI chat completions request body (for OpenAI-compatible upstreams)."""

from __future__ import annotations

import json
from typing import Any

from llmbridge.canonical import (
    ChatRequest,
    ImagePart,
    Message,
    ReasoningPart,
    TextPart,
    ToolCallPart,
    ToolResultPart,
)

# Largest thinking budget that still maps to each effort (the same steps the Kiro provider uses).
BUDGET_EFFORTS: list[tuple[float, str]] = [(4096, "low"), (10_000, "medium"), (float("inf"), "high")]


def build_body(request: ChatRequest, upstream_model: str) -> dict[str, Any]:
    body: dict[str, Any] = {"model": upstream_model, "messages": _messages(request), "stream": True,
                            "stream_options": {"include_usage": True}}
    if request.tools:
        body["tools"] = [{"type": "function", "function": {"name": t.name, "description": t.description,
                                                           "parameters": t.parameters}} for t in request.tools]
    if request.tool_choice:
        choice = request.tool_choice
        body["tool_choice"] = ({"type": "function", "function": {"name": choice.name}}
                               if choice.mode == "tool" else choice.mode)
    if request.parallel_tool_calls is not None and request.tools:
        body["parallel_tool_calls"] = request.parallel_tool_calls
    _generation(request, body)
    return body


def _generation(request: ChatRequest, body: dict[str, Any]) -> None:
    simple = {"temperature": request.temperature, "top_p": request.top_p, "seed": request.seed,
              "max_completion_tokens": request.max_tokens, "presence_penalty": request.presence_penalty,
              "frequency_penalty": request.frequency_penalty}
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


def _messages(request: ChatRequest) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    if request.system:
        out.append({"role": "system", "content": request.system_text()})
    for message in request.messages:
        out += _assistant(message) if message.role == "assistant" else _user(message)
    return out


def _user(message: Message) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    content: list[dict[str, Any]] = []
    for part in message.parts:
        if isinstance(part, ToolResultPart):
            out.append({"role": "tool", "tool_call_id": part.tool_call_id,
                        "content": ("Error: " if part.is_error else "") + part.text()})
        elif isinstance(part, TextPart):
            content.append({"type": "text", "text": part.text})
        elif isinstance(part, ImagePart):
            url = part.url or f"data:{part.media_type};base64,{part.data}"
            content.append({"type": "image_url", "image_url": {"url": url}})
    if content:
        only_text = all(c["type"] == "text" for c in content)
        out.append({"role": "user",
                    "content": "".join(c["text"] for c in content) if only_text else content})
    return out


def _assistant(message: Message) -> list[dict[str, Any]]:
    text = "".join(p.text for p in message.parts if isinstance(p, TextPart))
    reasoning = "".join(p.text for p in message.parts if isinstance(p, ReasoningPart))
    calls = [p for p in message.parts if isinstance(p, ToolCallPart)]
    rendered: dict[str, Any] = {"role": "assistant", "content": text or None}
    if reasoning:
        rendered["reasoning_content"] = reasoning
    if calls:
        rendered["tool_calls"] = [{"id": c.id, "type": "function", "function": {
            "name": c.name, "arguments": json.dumps(c.arguments, ensure_ascii=False)}} for c in calls]
    return [rendered]
