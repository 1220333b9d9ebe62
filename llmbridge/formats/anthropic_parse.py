"""Anthropic Messages request (`POST /v1/messages`) -> canonical `ChatRequest`.

Tolerant reader: unknown fields are ignored, a field we cannot honour (server tools, MCP servers) is a
400 naming it. `role: "system"` messages inside `messages` (Claude Code sends them to every model whose
name it does not know) are system text: they join the top-level `system`, in order, and the turns
around them join up (as Anthropic joins consecutive turns of one role). `cache_control` markers are
kept in `provider_metadata["anthropic"]` so an Anthropic upstream can reuse them; other providers
ignore them. `metadata` is accepted and not forwarded.

Thinking signatures the bridge made (`anthropic_signature`) are no Anthropic signatures: a Gemini one
goes back to `provider_metadata["gemini"]` of the part Gemini gave it on (the thought part, the first
tool call or the first text part of the same assistant message), the unsigned placeholder is dropped.
"""

from __future__ import annotations

import mimetypes
from typing import Any, Callable, Mapping, cast

from llmbridge.canonical import (
    ChatRequest,
    ImagePart,
    Message,
    Part,
    Reasoning,
    ReasoningEffort,
    ReasoningPart,
    ResponseFormat,
    Role,
    TextPart,
    Tool,
    ToolCallPart,
    ToolChoice,
    ToolChoiceMode,
    ToolResultPart,
    gemini_signature,
    with_gemini_signature,
)
from llmbridge.formats.anthropic_signature import is_bridge_made, read_gemini
from llmbridge.formats.fields import (
    as_dict,
    as_list,
    at,
    field,
    get_bool,
    get_float,
    get_int,
    get_str,
    get_str_list,
    invalid,
    root,
    validation_as_invalid,
)
from llmbridge.formats.openai_parse import split_tool_call_id

PASSTHROUGH_HEADERS = ("anthropic-version", "anthropic-beta")
TOOL_CHOICES: dict[str, ToolChoiceMode] = {"auto": "auto", "any": "required", "tool": "tool", "none": "none"}
EFFORTS: dict[str, ReasoningEffort] = {
    "low": "low",
    "medium": "medium",
    "high": "high",
    "xhigh": "xhigh",
    "max": "xhigh",
}
DEFAULT_MAX_TOKENS = 4096  # count_tokens requests carry no max_tokens


def parse_messages_request(
    body: Any,
    *,
    model: str | None = None,
    stream: bool | None = None,
    headers: Mapping[str, str] | None = None,
    require_max_tokens: bool = True,
) -> ChatRequest:
    """The canonical request; `model`/`stream` override the body where given."""
    body = root(body)
    if body.get("mcp_servers"):
        raise invalid("mcp_servers", "MCP connector servers are not supported")
    max_tokens = get_int(body, "max_tokens", "", required=require_max_tokens, minimum=1)
    tool_choice, parallel = _tool_choice(body.get("tool_choice"))
    model = model or get_str(body, "model", "", required=True) or ""
    if not model:
        raise invalid("model", "must not be empty")
    with validation_as_invalid():
        inline_system, messages = _messages(field(body, "messages", "", list, required=True))
        return ChatRequest(
            model=model,
            system=_system(body.get("system")) + inline_system,
            messages=messages,
            tools=[_tool(t, at("tools", i)) for i, t in enumerate(field(body, "tools", "", list) or [])],
            tool_choice=tool_choice,
            parallel_tool_calls=parallel,
            temperature=get_float(body, "temperature", ""),
            top_p=get_float(body, "top_p", ""),
            top_k=get_int(body, "top_k", ""),
            max_tokens=max_tokens if max_tokens is not None else DEFAULT_MAX_TOKENS,
            stop=get_str_list(body, "stop_sequences", ""),
            response_format=_response_format(body.get("output_config")),
            reasoning=_reasoning(body.get("thinking"), body.get("output_config")),
            stream=stream if stream is not None else bool(get_bool(body, "stream", "")),
            passthrough_headers=_passthrough(headers),
        )


def _passthrough(headers: Mapping[str, str] | None) -> dict[str, str]:
    lowered = {k.lower(): v for k, v in (headers or {}).items()}
    return {name: lowered[name] for name in PASSTHROUGH_HEADERS if name in lowered}


def _cache_meta(block: dict[str, Any]) -> dict[str, Any]:
    control = block.get("cache_control")
    return {"anthropic": {"cache_control": control}} if control else {}


def _system(system: Any, path: str = "system") -> list[TextPart]:
    if system is None:
        return []
    if isinstance(system, str):
        return [TextPart(text=system)] if system else []
    blocks = as_list(system, path)
    return [_text_block(as_dict(b, at(path, i)), at(path, i)) for i, b in enumerate(blocks)]


def _text_block(block: dict[str, Any], path: str) -> TextPart:
    kind = get_str(block, "type", path, required=True)
    if kind != "text":
        raise invalid(at(path, "type"), f"expected 'text', got {kind!r}")
    return TextPart(text=get_str(block, "text", path, required=True) or "", provider_metadata=_cache_meta(block))


# --- messages --------------------------------------------------------------------------------------


def _messages(raw: list[Any]) -> tuple[list[TextPart], list[Message]]:
    """(the system text found among the messages, the conversation turns); see the module docstring."""
    names: dict[str, str] = {}  # tool_use id -> tool name, to name the tool_results that answer it
    system: list[TextPart] = []
    turns: list[Message] = []
    for i, item in enumerate(raw):
        path = at("messages", i)
        message = as_dict(item, path)
        if get_str(message, "role", path, required=True) == "system":
            system += _system(message.get("content"), at(path, "content"))
            continue
        turn = _message(message, path, names)
        if not turn.parts:
            if turn.role == "assistant" and i == len(raw) - 1:
                continue  # Anthropic allows an empty final assistant message: it adds nothing
            raise invalid(at(path, "content"), "must not be empty (only the final assistant message may be)")
        if turns and turns[-1].role == turn.role and _joinable(raw, i):
            turns[-1].parts.extend(turn.parts)
        else:
            turns.append(turn)
    if not turns:
        raise invalid("messages", "at least one user or assistant message is required")
    return system, turns


def _joinable(raw: list[Any], i: int) -> bool:
    """Turns of one role meet only where system messages stood between them (consecutive turns
    the client sent itself stay as sent: providers already handle those)."""
    return i > 0 and isinstance(raw[i - 1], dict) and raw[i - 1].get("role") == "system"


def _message(raw: dict[str, Any], path: str, names: dict[str, str]) -> Message:
    raw_role = get_str(raw, "role", path, required=True)
    if raw_role not in ("user", "assistant"):
        raise invalid(at(path, "role"), f"expected 'user', 'assistant' or 'system', got {raw_role!r}")
    role = cast(Role, raw_role)
    content = raw.get("content")
    if isinstance(content, str):
        return Message(role=role, parts=[TextPart(text=content)])
    blocks = field(raw, "content", path, list, required=True)
    parts = [_block(b, at(at(path, "content"), i), role, names) for i, b in enumerate(blocks)]
    _place_bridge_signatures(parts)
    return Message(role=role, parts=parts)


def _place_bridge_signatures(parts: list[Part]) -> None:
    """Thinking signatures the bridge made go back where they came from (module docstring)."""
    for part in parts:
        if not (isinstance(part, ReasoningPart) and part.signature and is_bridge_made(part.signature)):
            continue
        marked, part.signature = read_gemini(part.signature), None
        if marked is None:
            continue  # the unsigned placeholder (or a marker this bridge does not know)
        placement, signature = marked
        target: Part | None = part
        if placement != "thought":
            kind = ToolCallPart if placement == "call" else TextPart
            target = next((p for p in parts if isinstance(p, kind)), None)
        if target is not None and not gemini_signature(target.provider_metadata):
            target.provider_metadata = with_gemini_signature(target.provider_metadata, signature)


def _block(raw: Any, path: str, role: str, names: dict[str, str]) -> Part:
    block = as_dict(raw, path)
    kind = get_str(block, "type", path, required=True) or ""
    parser = _BLOCK_PARSERS.get(kind)
    if parser is None:
        raise invalid(at(path, "type"), f"content block type {kind!r} is not supported")
    allowed = _BLOCK_ROLES.get(kind)
    if allowed and role != allowed:
        raise invalid(at(path, "type"), f"{kind} blocks belong in {allowed} messages")
    return parser(block, path, names)


def _text(block: dict[str, Any], path: str, names: dict[str, str]) -> Part:
    return _text_block(block, path)


def _image(block: dict[str, Any], path: str, names: dict[str, str]) -> Part:
    source = as_dict(field(block, "source", path, dict, required=True), at(path, "source"))
    where = at(path, "source")
    kind = get_str(source, "type", where, required=True)
    meta = _cache_meta(block)
    if kind == "base64":
        return ImagePart(
            media_type=get_str(source, "media_type", where, required=True) or "",
            data=get_str(source, "data", where, required=True),
            provider_metadata=meta,
        )
    if kind == "url":
        url = get_str(source, "url", where, required=True) or ""
        return ImagePart(url=url, media_type=mimetypes.guess_type(url)[0] or "image/png", provider_metadata=meta)
    if kind == "text" and block.get("type") == "document":
        return TextPart(text=get_str(source, "data", where, required=True) or "", provider_metadata=meta)
    raise invalid(at(where, "type"), f"source type {kind!r} is not supported")


def _tool_use(block: dict[str, Any], path: str, names: dict[str, str]) -> Part:
    call_id, signature = split_tool_call_id(get_str(block, "id", path, required=True) or "")
    name = get_str(block, "name", path, required=True) or ""
    names[call_id] = name
    meta = with_gemini_signature(_cache_meta(block), signature)
    return ToolCallPart(
        id=call_id, name=name, arguments=field(block, "input", path, dict) or {}, provider_metadata=meta
    )


def _tool_result(block: dict[str, Any], path: str, names: dict[str, str]) -> Part:
    call_id, _ = split_tool_call_id(get_str(block, "tool_use_id", path, required=True) or "")
    content = block.get("content")
    if content is None or isinstance(content, str):
        parts: list[TextPart | ImagePart] = [TextPart(text=content)] if content else []
    else:
        where = at(path, "content")
        parts = [_result_part(b, at(where, i)) for i, b in enumerate(as_list(content, where))]
    return ToolResultPart(
        tool_call_id=call_id,
        name=names.get(call_id),
        content=parts,
        is_error=bool(get_bool(block, "is_error", path)),
        provider_metadata=_cache_meta(block),
    )


def _result_part(raw: Any, path: str) -> TextPart | ImagePart:
    block = as_dict(raw, path)
    kind = get_str(block, "type", path, required=True)
    if kind == "text":
        return _text_block(block, path)
    if kind in ("image", "document"):
        part = _image(block, path, {})
        assert isinstance(part, TextPart | ImagePart)
        return part
    raise invalid(at(path, "type"), f"tool_result content type {kind!r} is not supported")


def _thinking(block: dict[str, Any], path: str, names: dict[str, str]) -> Part:
    return ReasoningPart(
        text=get_str(block, "thinking", path) or "", signature=get_str(block, "signature", path) or None
    )


def _redacted_thinking(block: dict[str, Any], path: str, names: dict[str, str]) -> Part:
    return ReasoningPart(redacted=get_str(block, "data", path, required=True))


_BLOCK_PARSERS: dict[str, Callable[[dict[str, Any], str, dict[str, str]], Part]] = {
    "text": _text,
    "image": _image,
    "document": _image,
    "tool_use": _tool_use,
    "tool_result": _tool_result,
    "thinking": _thinking,
    "redacted_thinking": _redacted_thinking,
}
_BLOCK_ROLES = {
    "tool_use": "assistant",
    "thinking": "assistant",
    "redacted_thinking": "assistant",
    "tool_result": "user",
}


# --- tools and generation options ------------------------------------------------------------------


def _tool(raw: Any, path: str) -> Tool:
    tool = as_dict(raw, path)
    kind = tool.get("type")
    if kind not in (None, "custom"):
        name = tool.get("name") or kind
        raise invalid(
            at(path, "type"),
            f"server tool {name!r} (type {kind!r}) is not supported; only custom tools with an input_schema are",
        )
    return Tool(
        name=get_str(tool, "name", path, required=True) or "",
        description=get_str(tool, "description", path) or "",
        parameters=field(tool, "input_schema", path, dict, required=True),
    )


def _tool_choice(raw: Any) -> tuple[ToolChoice | None, bool | None]:
    if raw is None:
        return None, None
    choice = as_dict(raw, "tool_choice")
    kind = get_str(choice, "type", "tool_choice", required=True) or ""
    if kind not in TOOL_CHOICES:
        raise invalid("tool_choice.type", f"expected one of {sorted(TOOL_CHOICES)}, got {kind!r}")
    name = get_str(choice, "name", "tool_choice", required=kind == "tool")
    disable = get_bool(choice, "disable_parallel_tool_use", "tool_choice")
    return ToolChoice(mode=TOOL_CHOICES[kind], name=name), (None if disable is None else not disable)


def _effort(output_config: Any) -> ReasoningEffort | None:
    if output_config is None:
        return None
    effort = get_str(as_dict(output_config, "output_config"), "effort", "output_config")
    if effort is None:
        return None
    if effort not in EFFORTS:
        raise invalid("output_config.effort", f"expected one of {sorted(EFFORTS)}, got {effort!r}")
    return EFFORTS[effort]


def _reasoning(raw: Any, output_config: Any) -> Reasoning | None:
    """enabled -> a token budget; disabled -> effort none; adaptive -> the output_config effort
    (Anthropic's default effort is high)."""
    effort = _effort(output_config)
    if raw is None:
        return Reasoning(effort=effort) if effort else None
    thinking = as_dict(raw, "thinking")
    kind = get_str(thinking, "type", "thinking", required=True)
    # include_thoughts: Anthropic returns thinking blocks only when thinking is on.
    shown = _display(thinking) != "omitted"  # "omitted": think, but send no thinking text back
    if kind == "enabled":
        budget = get_int(thinking, "budget_tokens", "thinking", required=True, minimum=1)
        return Reasoning(budget_tokens=budget, effort=effort, include_thoughts=shown)
    if kind == "disabled":
        return Reasoning(effort="none")
    if kind == "adaptive":
        return Reasoning(effort=effort or "high", include_thoughts=shown)
    raise invalid("thinking.type", f"expected 'enabled', 'disabled' or 'adaptive', got {kind!r}")


def _display(thinking: dict[str, Any]) -> str | None:
    display = get_str(thinking, "display", "thinking")
    # "updates" is what Claude Code asks for in stream-json mode: the thinking is shown as it comes
    if display not in (None, "summarized", "updates", "omitted"):
        raise invalid("thinking.display", f"expected 'summarized', 'updates' or 'omitted', got {display!r}")
    return display


def _response_format(output_config: Any) -> ResponseFormat | None:
    if output_config is None:
        return None
    fmt = field(as_dict(output_config, "output_config"), "format", "output_config", dict)
    if fmt is None:
        return None
    kind = get_str(fmt, "type", "output_config.format", required=True)
    if kind != "json_schema":
        raise invalid("output_config.format.type", f"expected 'json_schema', got {kind!r}")
    schema = field(fmt, "schema", "output_config.format", dict, required=True)
    return ResponseFormat(type="json_schema", json_schema=schema)
