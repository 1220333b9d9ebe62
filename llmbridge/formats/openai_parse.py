"""OpenAI chat completions request -> canonical `ChatRequest`.

Tolerant of shapes OpenAI accepts, strict about meaning: a parameter we cannot honour is a 400
naming it, never a silent drop.
"""

from __future__ import annotations

import re
from typing import Any

from llmbridge.canonical import (
    ChatRequest,
    ImagePart,
    Message,
    Part,
    Reasoning,
    ReasoningPart,
    ResponseFormat,
    Role,
    TextPart,
    Tool,
    ToolCallPart,
    ToolChoice,
    ToolResultPart,
    with_gemini_signature,
)
from llmbridge.errors import InvalidRequest
from llmbridge.formats.fields import loads_json_text, validation_as_invalid

# Accepted and deliberately not forwarded: they do not change what the model generates.
IGNORED_PARAMS = frozenset(
    {
        "user",
        "metadata",
        "store",
        "service_tier",
        "prompt_cache_key",
        "safety_identifier",
        "stream_options",
        "modalities",
    }
)
HANDLED_PARAMS = frozenset(
    {
        "model",
        "messages",
        "tools",
        "tool_choice",
        "temperature",
        "top_p",
        "max_tokens",
        "max_completion_tokens",
        "stop",
        "seed",
        "presence_penalty",
        "frequency_penalty",
        "response_format",
        "reasoning_effort",
        "stream",
        "n",
        "logprobs",
        "top_k",
        "functions",
        "function_call",
        "parallel_tool_calls",
    }
)
REASONING_EFFORTS = ("none", "minimal", "low", "medium", "high", "xhigh")
DATA_URL = re.compile(r"^data:(?P<type>[\w/+.-]+);base64,(?P<data>.*)$", re.S)

# Gemini's thoughtSignature must come back with the tool call that carried it, but OpenAI clients
# keep only the fields they know. The call id is kept verbatim by every client, so the signature
# rides in it (the trick gcli2api popularised): "<id>__thought__<signature>".
SIGNATURE_SEPARATOR = "__thought__"


def split_tool_call_id(call_id: str) -> tuple[str, str | None]:
    base, sep, signature = call_id.partition(SIGNATURE_SEPARATOR)
    return (base, signature) if sep and signature else (call_id, None)


def join_tool_call_id(call_id: str, signature: str | None) -> str:
    return f"{call_id}{SIGNATURE_SEPARATOR}{signature}" if signature else call_id


def _require(body: dict[str, Any], name: str, kind: type | tuple[type, ...]) -> Any:
    if name not in body:
        raise InvalidRequest(f"missing required parameter '{name}'", param=name)
    return _typed(body[name], name, kind)


def _typed(value: Any, where: str, kind: type | tuple[type, ...]) -> Any:
    ok = isinstance(value, kind) and not (isinstance(value, bool) and bool not in _as_tuple(kind))
    if not ok:
        names = " or ".join(k.__name__ for k in _as_tuple(kind))
        raise InvalidRequest(f"'{where}' must be of type {_json_type(names)}", param=where)
    return value


def _as_tuple(kind: type | tuple[type, ...]) -> tuple[type, ...]:
    return kind if isinstance(kind, tuple) else (kind,)


def _json_type(names: str) -> str:
    return (
        names.replace("str", "string")
        .replace("dict", "object")
        .replace("list", "array")
        .replace("int", "integer")
        .replace("float", "number")
        .replace("bool", "boolean")
    )


def parse_chat_request(body: Any) -> ChatRequest:
    if not isinstance(body, dict):
        raise InvalidRequest("the request body must be a JSON object")
    _reject_unknown(body)
    _reject_unhonourable(body)
    model = _require(body, "model", str)
    if not model:
        raise InvalidRequest("'model' must not be empty", param="model")
    raw_messages = _require(body, "messages", list)
    if not raw_messages:
        raise InvalidRequest("'messages' must contain at least one message", param="messages")
    with validation_as_invalid():
        return _build(body, model, raw_messages)


def _build(body: dict[str, Any], model: str, raw_messages: list[Any]) -> ChatRequest:
    system, messages = _parse_messages(raw_messages)
    return ChatRequest(
        model=model,
        system=system,
        messages=messages,
        tools=_parse_tools(body.get("tools")),
        tool_choice=_parse_tool_choice(body.get("tool_choice")),
        parallel_tool_calls=_optional(body, "parallel_tool_calls", bool),
        temperature=_number(body, "temperature", 0, 2),
        top_p=_number(body, "top_p", 0, 1),
        top_k=_optional(body, "top_k", int),
        max_tokens=_max_tokens(body),
        stop=_parse_stop(body.get("stop")),
        seed=_optional(body, "seed", int),
        presence_penalty=_number(body, "presence_penalty", -2, 2),
        frequency_penalty=_number(body, "frequency_penalty", -2, 2),
        response_format=_parse_response_format(body.get("response_format")),
        reasoning=_parse_reasoning(body.get("reasoning_effort")),
        stream=bool(_optional(body, "stream", bool)),
        stream_usage=bool((_optional(body, "stream_options", dict) or {}).get("include_usage")),
    )


def _reject_unknown(body: dict[str, Any]) -> None:
    unknown = sorted(set(body) - IGNORED_PARAMS - HANDLED_PARAMS)
    if unknown:
        raise InvalidRequest(
            f"unsupported parameter '{unknown[0]}': this bridge does not know it and "
            "will not drop it silently; remove it from the request",
            param=unknown[0],
        )


def _reject_unhonourable(body: dict[str, Any]) -> None:
    if body.get("n") not in (None, 1):
        raise InvalidRequest("'n' must be 1: the backends behind this bridge return one choice", param="n")
    if body.get("logprobs"):
        raise InvalidRequest("'logprobs' is not supported by the backends behind this bridge", param="logprobs")
    if "functions" in body or "function_call" in body:
        name = "functions" if "functions" in body else "function_call"
        raise InvalidRequest(f"'{name}' is deprecated; use 'tools' and 'tool_choice'", param=name)
    if body.get("modalities") not in (None, ["text"]):
        raise InvalidRequest("only the 'text' modality is supported", param="modalities")


def _optional(body: dict[str, Any], name: str, kind: type | tuple[type, ...], where: str = "") -> Any:
    """body[name] checked against `kind` (None when absent); `where` is the path to name in errors."""
    value = body.get(name)
    return None if value is None else _typed(value, f"{where}.{name}" if where else name, kind)


def _number(body: dict[str, Any], name: str, low: float, high: float) -> float | None:
    value: float | None = _optional(body, name, (int, float))
    if value is not None and not low <= value <= high:
        raise InvalidRequest(f"'{name}' must be between {low} and {high}", param=name)
    return value


def _max_tokens(body: dict[str, Any]) -> int | None:
    for name in ("max_completion_tokens", "max_tokens"):
        value: int | None = _optional(body, name, int)
        if value is not None:
            if value < 1:
                raise InvalidRequest(f"'{name}' must be at least 1", param=name)
            return value
    return None


def _parse_stop(stop: Any) -> list[str]:
    if stop is None:
        return []
    if isinstance(stop, str):
        return [stop]
    if isinstance(stop, list) and all(isinstance(s, str) for s in stop):
        if len(stop) > 4:
            raise InvalidRequest("'stop' takes at most 4 sequences", param="stop")
        return stop
    raise InvalidRequest("'stop' must be a string or an array of strings", param="stop")


def _parse_reasoning(effort: Any) -> Reasoning | None:
    if effort is None:
        return None
    if effort not in REASONING_EFFORTS:
        raise InvalidRequest(
            f"'reasoning_effort' must be one of {', '.join(REASONING_EFFORTS)}", param="reasoning_effort"
        )
    return Reasoning(effort=effort)


def _parse_response_format(value: Any) -> ResponseFormat | None:
    if value is None:
        return None
    kind = _typed(value, "response_format", dict).get("type")
    if kind in ("text", "json_object"):
        return ResponseFormat(type=kind)
    if kind == "json_schema":
        spec = _typed(value.get("json_schema"), "response_format.json_schema", dict)
        schema = _typed(spec.get("schema", {}), "response_format.json_schema.schema", dict)
        where = "response_format.json_schema"
        return ResponseFormat(
            type="json_schema",
            name=_optional(spec, "name", str, where),
            json_schema=schema,
            strict=_optional(spec, "strict", bool, where),
        )
    raise InvalidRequest(
        "'response_format.type' must be text, json_object or json_schema", param="response_format.type"
    )


def _parse_tools(tools: Any) -> list[Tool]:
    if tools is None:
        return []
    result = []
    for i, tool in enumerate(_typed(tools, "tools", list)):
        where = f"tools[{i}]"
        if not isinstance(tool, dict) or tool.get("type") != "function":
            raise InvalidRequest(f"'{where}.type' must be 'function'", param=f"{where}.type")
        fn = _typed(tool.get("function"), f"{where}.function", dict)
        name = _typed(fn.get("name"), f"{where}.function.name", str)
        params = fn.get("parameters") or {"type": "object", "properties": {}}
        description = _optional(fn, "description", str, f"{where}.function") or ""
        result.append(
            Tool(name=name, description=description, parameters=_typed(params, f"{where}.function.parameters", dict))
        )
    return result


def _parse_tool_choice(choice: Any) -> ToolChoice | None:
    if choice is None:
        return None
    if choice in ("auto", "none", "required"):
        return ToolChoice(mode=choice)
    if isinstance(choice, dict) and choice.get("type") == "function":
        name = (choice.get("function") or {}).get("name")
        if isinstance(name, str):
            return ToolChoice(mode="tool", name=name)
    raise InvalidRequest(
        "'tool_choice' must be 'auto', 'none', 'required' or {\"type\": \"function\", \"function\": {\"name\": ...}}",
        param="tool_choice",
    )


def _parse_messages(raw: list[Any]) -> tuple[list[TextPart], list[Message]]:
    system: list[TextPart] = []
    messages: list[Message] = []
    call_names: dict[str, str] = {}
    for i, msg in enumerate(raw):
        where = f"messages[{i}]"
        if not isinstance(msg, dict):
            raise InvalidRequest(f"'{where}' must be an object", param=where)
        role = msg.get("role")
        if role in ("system", "developer"):
            system += [p for p in _content_parts(msg.get("content"), where, images=False) if isinstance(p, TextPart)]
        elif role == "user":
            _append(messages, "user", _content_parts(msg.get("content"), where, images=True))
        elif role == "assistant":
            parts = _assistant_parts(msg, where)
            call_names.update({p.id: p.name for p in parts if isinstance(p, ToolCallPart)})
            _append(messages, "assistant", parts)
        elif role == "tool":
            _append(messages, "user", [_tool_result(msg, where, call_names)])
        else:
            raise InvalidRequest(
                f"'{where}.role' must be system, developer, user, assistant or tool", param=f"{where}.role"
            )
    if not messages:
        raise InvalidRequest("'messages' must contain at least one user message", param="messages")
    return system, messages


def _append(messages: list[Message], role: Role, parts: list[Part]) -> None:
    """Consecutive messages of one role become one message (tool results join the user turn)."""
    if not parts:
        return
    if messages and messages[-1].role == role:
        messages[-1].parts.extend(parts)
    else:
        messages.append(Message(role=role, parts=parts))


def _content_parts(content: Any, where: str, images: bool) -> list[Part]:
    if content is None:
        return []
    if isinstance(content, str):
        return [TextPart(text=content)] if content else []
    if not isinstance(content, list):
        raise InvalidRequest(f"'{where}.content' must be a string or an array", param=f"{where}.content")
    parts: list[Part] = []
    for j, item in enumerate(content):
        parts.append(_content_part(item, f"{where}.content[{j}]", images))
    return parts


def _content_part(item: Any, where: str, images: bool) -> Part:
    kind = item.get("type") if isinstance(item, dict) else None
    if kind == "text":
        return TextPart(text=_typed(item.get("text"), f"{where}.text", str))
    if kind == "image_url" and images:
        url = _typed(item.get("image_url") or {}, f"{where}.image_url", dict).get("url")
        return _image(_typed(url, f"{where}.image_url.url", str), where)
    if kind in ("input_audio", "file", "image_url"):
        raise InvalidRequest(f"content part type '{kind}' is not supported here", param=f"{where}.type")
    raise InvalidRequest(f"'{where}.type' must be 'text' or 'image_url'", param=f"{where}.type")


def _image(url: str, where: str) -> ImagePart:
    match = DATA_URL.match(url)
    if match:
        return ImagePart(media_type=match["type"], data=match["data"])
    if url.startswith(("http://", "https://")):
        return ImagePart(url=url)
    raise InvalidRequest(
        "image urls must be data: URLs (data:image/png;base64,...) or http(s) URLs", param=f"{where}.image_url.url"
    )


def _assistant_parts(msg: dict[str, Any], where: str) -> list[Part]:
    parts: list[Part] = []
    reasoning = msg.get("reasoning_content")
    if isinstance(reasoning, str) and reasoning:
        parts.append(ReasoningPart(text=reasoning))
    parts += _content_parts(msg.get("content"), where, images=False)
    for k, call in enumerate(_typed(msg.get("tool_calls") or [], f"{where}.tool_calls", list)):
        parts.append(_tool_call(call, f"{where}.tool_calls[{k}]"))
    return parts


def _tool_call(call: Any, where: str) -> ToolCallPart:
    if not isinstance(call, dict):
        raise InvalidRequest(f"'{where}' must be an object", param=where)
    fn = _typed(call.get("function"), f"{where}.function", dict)
    name = _typed(fn.get("name"), f"{where}.function.name", str)
    call_id, signature = split_tool_call_id(_typed(call.get("id"), f"{where}.id", str))
    raw_args = fn.get("arguments") or "{}"
    try:
        arguments = loads_json_text(raw_args) if isinstance(raw_args, str) else raw_args
    except ValueError:
        raise InvalidRequest(
            f"'{where}.function.arguments' is not valid JSON", param=f"{where}.function.arguments"
        ) from None
    if not isinstance(arguments, dict):
        raise InvalidRequest(f"'{where}.function.arguments' must be a JSON object", param=f"{where}.function.arguments")
    return ToolCallPart(
        id=call_id, name=name, arguments=arguments, provider_metadata=with_gemini_signature({}, signature)
    )


def _tool_result(msg: dict[str, Any], where: str, call_names: dict[str, str]) -> ToolResultPart:
    call_id, _ = split_tool_call_id(_typed(msg.get("tool_call_id"), f"{where}.tool_call_id", str))
    content = [
        p for p in _content_parts(msg.get("content"), where, images=True) if isinstance(p, (TextPart, ImagePart))
    ]
    return ToolResultPart(tool_call_id=call_id, name=call_names.get(call_id), content=content)
