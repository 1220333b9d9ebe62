"""Canonical request -> the chat completions body Qwen Code sends to Qwen.

The OpenAI-compatible body comes from the openai provider's builder (`max_tokens`, as on any server
other than api.openai.com), in Qwen Code's field order and with its default `max_tokens`; on top of
it, what Qwen Code 0.24's DashScope provider adds (`provider/dashscope.ts` `buildRequest`; checked
against a capture of 0.24.4):

* prompt-cache markers: the system message's content becomes a list of text parts whose last part
  carries `cache_control: {type: "ephemeral"}`; on a stream (always, here) the last message's last
  part and the last tool get the same marker;
* `metadata: {sessionId, promptId}`: the session is one per client conversation and the prompt id is
  `<session>########<prompt number>`, as in a Qwen Code session;
* `vl_high_resolution_images: true` for vision models (`coder-model`, `qwen-vl*`, `qwen3-vl-plus`,
  `qwen3.5/3.6/3.7-plus`), and `preserve_thinking: true` always;
* the thinking switch: `enable_thinking: true` when the client asks for thinking (qwen models and
  `coder-model`), or a `reasoning_effort` tier for the qwen3.8-max family; nothing otherwise;
* earlier reasoning goes back as the assistant message's `reasoning_content` (Qwen Code does so, and
  `preserve_thinking` asks Qwen to use it).
"""

from __future__ import annotations

from typing import Any

from llmbridge.canonical import ChatRequest, ReasoningPart
from llmbridge.providers.openai_api.request import build_body as build_openai_body
from llmbridge.providers.openai_api.request import reasoning_effort

CACHE_CONTROL = {"type": "ephemeral"}
VISION_MODELS = {"coder-model"}
VISION_PREFIXES = ("qwen-vl", "qwen3-vl-plus", "qwen3.5-plus", "qwen3.6-plus", "qwen3.7-plus")
TIERED_EFFORT_PREFIX = "qwen3.8-max"  # the family that takes `reasoning_effort` tiers
TIERED_EFFORTS = ("low", "medium", "high")
# What Qwen Code sends as `max_tokens` to coder-model when the user set no limit (its output ceiling)
DEFAULT_MAX_TOKENS = 64_000
TAIL_FIELDS = ("stream", "stream_options", "tools", "tool_choice", "parallel_tool_calls")


def build_body(request: ChatRequest, upstream_model: str, session_id: str, prompt_id: str) -> dict[str, Any]:
    # Qwen Code sends a user message's text as a list of parts (as the client gave them), never joined
    body = _in_qwen_codes_order(build_openai_body(request, upstream_model, legacy_max_tokens=True, text_parts=True))
    body.pop("reasoning_effort", None)  # replaced by Qwen's own thinking switch below
    _reasoning_history(request, body["messages"])
    body["messages"] = _cache_marked(body["messages"])
    if body.get("tools"):
        body["tools"][-1] = {**body["tools"][-1], "cache_control": dict(CACHE_CONTROL)}
    if is_qwen_model(upstream_model):
        body["metadata"] = {"sessionId": session_id, "promptId": prompt_id}
    if is_vision_model(upstream_model):
        body["vl_high_resolution_images"] = True
    body["preserve_thinking"] = True
    body.update(thinking_switch(request, upstream_model))
    return body


def _in_qwen_codes_order(body: dict[str, Any]) -> dict[str, Any]:
    """Qwen Code's field order: model, messages, the generation settings (with `max_tokens`, which it
    always sends: the model's output limit when the user set none), stream, stream_options, tools,
    tool_choice; the DashScope extras follow."""
    body.setdefault("max_tokens", DEFAULT_MAX_TOKENS)
    head = {"model": body.pop("model"), "messages": body.pop("messages")}
    tail = {k: body.pop(k) for k in TAIL_FIELDS if k in body}
    return {**head, **body, **tail}


def is_qwen_model(model: str) -> bool:
    """Qwen's own models: the ones Qwen Code sends `metadata` and thinking switches to."""
    low = model.lower()
    return low.startswith("qwen") or low == "coder-model"


def is_vision_model(model: str) -> bool:
    low = model.lower()
    return low in VISION_MODELS or low.startswith(VISION_PREFIXES)


def thinking_switch(request: ChatRequest, model: str) -> dict[str, Any]:
    """`enable_thinking: true`, or the effort tier of the qwen3.8-max family, when the client asks for
    thinking; nothing when it does not (the model's default, as Qwen Code leaves it)."""
    effort = reasoning_effort(request)
    if effort is None or effort == "none" or not is_qwen_model(model):
        return {}
    if request.reasoning is not None and request.reasoning.budget_tokens == 0:
        return {}
    if model.lower().startswith(TIERED_EFFORT_PREFIX):
        return {"reasoning_effort": effort if effort in TIERED_EFFORTS else _nearest_tier(effort)}
    return {"enable_thinking": True}


def _nearest_tier(effort: str) -> str:
    return "high" if effort == "xhigh" else "low"


def _reasoning_history(request: ChatRequest, messages: list[dict[str, Any]]) -> None:
    """Put each earlier assistant turn's reasoning back as `reasoning_content`. The openai builder makes
    exactly one message per assistant turn, in order, so the turns pair up with its assistant messages."""
    rendered = iter(m for m in messages if m["role"] == "assistant")
    for message in request.messages:
        if message.role != "assistant":
            continue
        target = next(rendered)
        thinking = "".join(p.text for p in message.parts if isinstance(p, ReasoningPart) and not p.redacted)
        if thinking:
            if target["content"] is None and not target.get("tool_calls"):
                target["content"] = ""  # content with reasoning is a string, as Qwen Code sends it
            target["reasoning_content"] = thinking


def _cache_marked(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The system message and the last message with their content as parts, the last part marked."""
    system = next((i for i, m in enumerate(messages) if m["role"] == "system"), None)
    marked = {len(messages) - 1} | ({system} if system is not None else set())
    return [_mark(m) if i in marked else m for i, m in enumerate(messages)]


def _mark(message: dict[str, Any]) -> dict[str, Any]:
    content = message.get("content")
    if content is None:
        return message
    parts = [{"type": "text", "text": content}] if isinstance(content, str) else list(content)
    if not parts:
        return message
    parts[-1] = {**parts[-1], "cache_control": dict(CACHE_CONTROL)}
    return {**message, "content": parts}
