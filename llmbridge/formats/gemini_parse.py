"""Gemini API request (`models/{model}:generateContent`) -> canonical `ChatRequest`.

Fields are read in camelCase or snake_case, as the REST API accepts both. `thoughtSignature`s go to
the part's `provider_metadata` (`canonical.with_gemini_signature`). Tool call ids are optional in
Gemini: missing ones are generated deterministically (`call_<n>`, so a resent history hashes the
same) and a `functionResponse` without an id answers the earliest unanswered call of the same name.
`safetySettings` and `generationConfig.mediaResolution` are accepted and ignored: the backends apply
their own. `allowedFunctionNames` restricts the tools sent to the allowed ones (the model may call
only those); `thinkingBudget: -1` (dynamic) is read as effort "medium", which every provider maps to
its own middle setting.
"""

from __future__ import annotations

import json
import re
from typing import Any

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
    ToolResultPart,
    with_gemini_function_response,
    with_gemini_signature,
)
from llmbridge.formats.fields import (
    as_dict,
    as_list,
    at,
    field,
    get_bool,
    get_float,
    get_int,
    invalid,
    root,
    validation_as_invalid,
)

UNSUPPORTED_TOOLS = (
    "googleSearch",
    "googleSearchRetrieval",
    "codeExecution",
    "urlContext",
    "retrieval",
    "computerUse",
    "fileSearch",
    "googleMaps",
    "enterpriseWebSearch",
)
UNSUPPORTED_PARTS = ("executableCode", "codeExecutionResult", "toolCall", "toolResponse")
THINKING_LEVELS: dict[str, ReasoningEffort] = {"MINIMAL": "minimal", "LOW": "low", "MEDIUM": "medium", "HIGH": "high"}
SCHEMA_CHILDREN = ("items", "anyOf", "oneOf", "allOf", "not", "additionalProperties", "prefixItems")

GEMINI_ROLES: dict[str, Role] = {"user": "user", "model": "assistant", "function": "user", "tool": "user"}


def snake(name: str) -> str:
    return re.sub(r"(?<!^)([A-Z])", r"_\1", name).lower()


def camel_keys(obj: dict[str, Any]) -> dict[str, Any]:
    """A copy with snake_case keys spelled in camelCase (a camelCase key wins over its twin)."""
    out = {re.sub(r"_([a-z])", lambda m: m.group(1).upper(), k): v for k, v in obj.items()}
    out.update({k: v for k, v in obj.items() if k in out})
    return out


def get(obj: dict[str, Any], name: str) -> Any:
    """obj[name] in camelCase, or its snake_case spelling."""
    value = obj.get(name)
    return value if value is not None else obj.get(snake(name))


def model_name(model: str) -> str:
    return model.removeprefix("models/")


class CallLedger:
    """Pairs functionResponses with the functionCalls they answer, generating missing ids."""

    def __init__(self) -> None:
        self._count = 0
        self._open: list[tuple[str, str]] = []  # (id, name) of calls not yet answered

    def call(self, name: str, call_id: str | None) -> str:
        call_id = call_id or f"call_{self._count}"
        self._count += 1
        self._open.append((call_id, name))
        return call_id

    def answer(self, name: str, call_id: str | None) -> str:
        for i, (open_id, open_name) in enumerate(self._open):
            if open_id == call_id or (call_id is None and open_name == name):
                del self._open[i]
                return open_id
        return call_id or self.call(name, None)  # answers no call we saw: keep it paired anyway


def parse_generate_request(body: Any, *, model: str | None, stream: bool) -> ChatRequest:
    body = camel_keys(root(body))
    name = model or body.get("model")
    if not isinstance(name, str) or not name:
        raise invalid("model", "field required")
    if get(body, "cachedContent"):
        raise invalid("cachedContent", "cached content is not supported")
    ledger = CallLedger()
    contents = field(body, "contents", "", list, required=True)
    if not contents:
        raise invalid("contents", "must not be empty: a request needs at least one turn")
    config = camel_keys(as_dict(body.get("generationConfig") or {}, "generationConfig"))
    with validation_as_invalid():
        return ChatRequest(
            model=model_name(name),
            system=_system(get(body, "systemInstruction")),
            messages=[_content(c, at("contents", i), ledger) for i, c in enumerate(contents)],
            **_tools_and_choice(get(body, "tools"), get(body, "toolConfig")),
            stream=stream,
            **_generation(config),
        )


def _system(raw: Any) -> list[TextPart]:
    if raw is None:
        return []
    if isinstance(raw, str):
        return [TextPart(text=raw)]
    content = _content_object(raw, "systemInstruction")
    parts = as_list(get(content, "parts") or [], "systemInstruction.parts")
    texts: list[TextPart] = []
    for i, raw_part in enumerate(parts):
        path = at("systemInstruction.parts", i)
        part = _part_object(raw_part, path)
        if not isinstance(part.get("text"), str):
            raise invalid(path, "system instruction parts must be text parts")
        texts.append(TextPart(text=part["text"]))
    return texts


# --- contents --------------------------------------------------------------------------------------

# Gemini's `Part`: exactly one kind of data, plus metadata. Gemini itself refuses a field it does not
# know ("Invalid JSON payload received. Unknown name ..."), so the door does too: a typo must not turn
# into a silently dropped part. `partMetadata` (the client's own annotations, never shown to the
# model) and `mediaResolution` (the backends choose the image resolution) are accepted and ignored.
PART_DATA = ("text", "inlineData", "fileData", "functionCall", "functionResponse")
PART_META = ("thought", "thoughtSignature")
PART_IGNORED = ("partMetadata", "mediaResolution")
PART_REFUSED = (*UNSUPPORTED_PARTS, "videoMetadata")
PART_FIELDS = frozenset(PART_DATA + PART_META + PART_IGNORED + PART_REFUSED)
CONTENT_FIELDS = frozenset(("role", "parts"))


def _camel(name: str) -> str:
    return re.sub(r"_([a-z])", lambda m: m.group(1).upper(), name)


def _known_fields(raw: Any, path: str, allowed: frozenset[str], what: str) -> dict[str, Any]:
    """`raw` as an object with camelCase keys, null fields left out; 400 naming a field Gemini does not know."""
    obj = as_dict(raw, path)
    for key in obj:
        if _camel(key) not in allowed:
            raise invalid(at(path, key), f"unknown field in a {what} (known: {', '.join(sorted(allowed))})")
    return {k: v for k, v in camel_keys(obj).items() if v is not None}


def _content_object(raw: Any, path: str) -> dict[str, Any]:
    return _known_fields(raw, path, CONTENT_FIELDS, "Content")


def _part_object(raw: Any, path: str) -> dict[str, Any]:
    """A part checked field by field: known names, typed metadata, exactly one kind of data (or only
    a thoughtSignature, which is kept as empty thinking)."""
    part = _known_fields(raw, path, PART_FIELDS, "Part")
    for key in PART_REFUSED:
        if key in part:
            raise invalid(at(path, key), f"{key} parts are not supported")
    field(part, "thought", path, bool)
    field(part, "thoughtSignature", path, str)
    field(part, "text", path, str)
    data = [key for key in PART_DATA if key in part]
    if len(data) > 1:
        raise invalid(path, f"a part holds exactly one kind of data, got {', '.join(data)}")
    if not data and "thoughtSignature" not in part:
        raise invalid(path, f"a part needs one of {', '.join(PART_DATA)}")
    return part


def _content(raw: Any, path: str, ledger: CallLedger) -> Message:
    content = _content_object(raw, path)
    role_name = field(content, "role", path, str) or "user"
    role = GEMINI_ROLES.get(role_name)
    if role is None:
        raise invalid(at(path, "role"), f"expected 'user' or 'model', got {role_name!r}")
    parts = field(content, "parts", path, list, required=True)
    if not parts:
        raise invalid(at(path, "parts"), "must not be empty")
    parsed = [_part(p, at(at(path, "parts"), i), role, ledger) for i, p in enumerate(parts)]
    return Message(role=role, parts=parsed)


def _part(raw: Any, path: str, role: str, ledger: CallLedger) -> Part:
    part = _part_object(raw, path)
    signature = part.get("thoughtSignature")
    meta = with_gemini_signature({}, signature)
    if "text" in part:
        if part.get("thought"):
            return ReasoningPart(text=part["text"], provider_metadata=meta)
        return TextPart(text=part["text"], provider_metadata=meta)
    if "inlineData" in part:
        where = at(path, "inlineData")
        data = as_dict(part["inlineData"], where)
        return ImagePart(
            media_type=_str(data, "mimeType", where) or "image/png",
            data=_str(data, "data", where, required=True),
            provider_metadata=meta,
        )
    if "fileData" in part:
        where = at(path, "fileData")
        data = as_dict(part["fileData"], where)
        uri = _str(data, "fileUri", where, required=True)
        return ImagePart(media_type=_str(data, "mimeType", where) or "image/png", url=uri, provider_metadata=meta)
    if "functionCall" in part:
        return _function_call(part["functionCall"], at(path, "functionCall"), role, ledger, meta)
    if "functionResponse" in part:
        return _function_response(part["functionResponse"], at(path, "functionResponse"), role, ledger)
    # A part carrying only a signature keeps the signature as empty thinking.
    return ReasoningPart(provider_metadata=meta)


def _str(obj: dict[str, Any], name: str, path: str, *, required: bool = False) -> str:
    """A string field read in camelCase or snake_case ("" when absent and not required)."""
    value = get(obj, name)
    if value is None:
        if required:
            raise invalid(at(path, name), "field required")
        return ""
    if not isinstance(value, str):
        raise invalid(at(path, name), "expected a string")
    return value


def _name(obj: dict[str, Any], path: str) -> str:
    name = field(obj, "name", path, str, required=True)
    return str(name)


def _function_call(raw: Any, path: str, role: str, ledger: CallLedger, meta: dict[str, Any]) -> ToolCallPart:
    if role != "assistant":
        raise invalid(path, "functionCall parts belong in model turns")
    call = as_dict(raw, path)
    name = _name(call, path)
    return ToolCallPart(
        id=ledger.call(name, field(call, "id", path, str)),
        name=name,
        arguments=field(call, "args", path, dict) or {},
        provider_metadata=meta,
    )


def _function_response(raw: Any, path: str, role: str, ledger: CallLedger) -> ToolResultPart:
    """The response object is kept whole for a Gemini upstream and given to other models as JSON
    text; `{"error": ...}` marks a failure."""
    if role != "user":
        raise invalid(path, "functionResponse parts belong in user turns")
    response = as_dict(raw, path)
    name = _name(response, path)
    value = field(response, "response", path, dict) or {}  # a google.protobuf.Struct: an object
    content: list[TextPart | ImagePart] = [TextPart(text=json.dumps(value, ensure_ascii=False))]
    for i, extra in enumerate(as_list(response.get("parts") or [], at(path, "parts"))):
        where = at(at(path, "parts"), i)
        inline = get(as_dict(extra, where), "inlineData")
        if inline is None:
            raise invalid(at(where, "inlineData"), "field required (functionResponse parts hold inline data)")
        inline = as_dict(inline, at(where, "inlineData"))
        content.append(
            ImagePart(
                media_type=_str(inline, "mimeType", at(where, "inlineData")) or "image/png",
                data=_str(inline, "data", at(where, "inlineData"), required=True),
            )
        )
    is_error = set(value) == {"error"}
    return ToolResultPart(
        tool_call_id=ledger.answer(name, field(response, "id", path, str)),
        name=name,
        content=content,
        is_error=is_error,
        provider_metadata=with_gemini_function_response({}, value),
    )


# --- tools -----------------------------------------------------------------------------------------


def openapi_to_json_schema(schema: Any) -> Any:
    """Gemini's OpenAPI subset -> JSON Schema: type names lowercased ("OBJECT" -> "object")."""
    if isinstance(schema, list):
        return [openapi_to_json_schema(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key == "type" and isinstance(value, str):
            out[key] = value.lower()
        elif key in ("properties", "$defs", "definitions") and isinstance(value, dict):
            out[key] = {name: openapi_to_json_schema(s) for name, s in value.items()}
        elif key in SCHEMA_CHILDREN:
            out[key] = openapi_to_json_schema(value)
        else:
            out[key] = value
    return out


def _tools(raw: Any) -> list[Tool]:
    tools: list[Tool] = []
    for i, entry in enumerate(as_list(raw or [], "tools")):
        path = at("tools", i)
        entry = as_dict(entry, path)
        for key in UNSUPPORTED_TOOLS:
            if get(entry, key) is not None:
                raise invalid(at(path, key), f"the built-in tool {key} is not supported")
        where = at(path, "functionDeclarations")
        declarations = as_list(get(entry, "functionDeclarations") or [], where)
        tools += [_declaration(d, at(where, j)) for j, d in enumerate(declarations)]
    return tools


def _declaration(raw: Any, path: str) -> Tool:
    decl = as_dict(raw, path)
    schema = get(decl, "parametersJsonSchema")
    if schema is None and get(decl, "parameters") is not None:
        schema = openapi_to_json_schema(as_dict(get(decl, "parameters"), at(path, "parameters")))
    tool = Tool(name=_name(decl, path), description=field(decl, "description", path, str) or "")
    if schema is not None:
        tool.parameters = as_dict(schema, at(path, "parametersJsonSchema"))
    return tool


def _tools_and_choice(raw_tools: Any, raw_config: Any) -> dict[str, Any]:
    """`tools` and `tool_choice`; allowedFunctionNames keeps only the allowed tools."""
    tools = _tools(raw_tools)
    choice, allowed = _tool_choice(raw_config)
    if allowed and choice is not None and choice.mode != "none":
        where = "toolConfig.functionCallingConfig.allowedFunctionNames"
        unknown = sorted(set(allowed) - {tool.name for tool in tools})
        if unknown:
            raise invalid(where, f"{unknown[0]!r} is not among the function declarations")
        tools = [tool for tool in tools if tool.name in allowed]
    return {"tools": tools, "tool_choice": choice}


def _tool_choice(raw: Any) -> tuple[ToolChoice | None, list[str]]:
    """The tool choice and the allowedFunctionNames."""
    if raw is None:
        return None, []
    config = get(as_dict(raw, "toolConfig"), "functionCallingConfig")
    if config is None:
        return None, []
    path = "toolConfig.functionCallingConfig"
    config = as_dict(config, path)
    mode = str(config.get("mode") or "AUTO").upper()
    where = at(path, "allowedFunctionNames")
    allowed = as_list(get(config, "allowedFunctionNames") or [], where)
    for i, name in enumerate(allowed):
        if not isinstance(name, str):
            raise invalid(at(where, i), "expected a string")
    if mode == "NONE":
        return ToolChoice(mode="none"), allowed
    if mode == "ANY":
        return (ToolChoice(mode="tool", name=allowed[0]) if len(allowed) == 1 else ToolChoice(mode="required")), allowed
    if mode in ("AUTO", "VALIDATED", "MODE_UNSPECIFIED"):
        return ToolChoice(mode="auto"), allowed
    raise invalid(at(path, "mode"), f"expected AUTO, ANY, NONE or VALIDATED, got {mode!r}")


# --- generation config -----------------------------------------------------------------------------


def _generation(config: dict[str, Any]) -> dict[str, Any]:
    path = "generationConfig"
    count = get_int(config, "candidateCount", path)
    if count is not None and count > 1:
        raise invalid(at(path, "candidateCount"), "only one candidate is supported")
    _reject_unsupported_output(config)
    top_k = get_float(config, "topK", path)
    stops = as_list(get(config, "stopSequences") or [], at(path, "stopSequences"))
    return {
        "temperature": get_float(config, "temperature", path),
        "top_p": get_float(config, "topP", path),
        "top_k": int(top_k) if top_k is not None else None,
        "max_tokens": get_int(config, "maxOutputTokens", path),
        "stop": [str(s) for s in stops],
        "seed": get_int(config, "seed", path),
        "presence_penalty": get_float(config, "presencePenalty", path),
        "frequency_penalty": get_float(config, "frequencyPenalty", path),
        "response_format": _response_format(config),
        "reasoning": _thinking(get(config, "thinkingConfig")),
    }


def _reject_unsupported_output(config: dict[str, Any]) -> None:
    """Output the backends cannot give: other modalities than text, log probabilities."""
    path = "generationConfig"
    modalities = as_list(get(config, "responseModalities") or [], at(path, "responseModalities"))
    if any(str(m).upper() != "TEXT" for m in modalities):
        raise invalid(at(path, "responseModalities"), "only TEXT output is supported")
    if get_bool(config, "responseLogprobs", path):
        raise invalid(at(path, "responseLogprobs"), "log probabilities are not supported")
    if get(config, "logprobs") is not None:
        raise invalid(at(path, "logprobs"), "log probabilities are not supported")


def _response_format(config: dict[str, Any]) -> ResponseFormat | None:
    path = "generationConfig"
    mime = get(config, "responseMimeType")
    schema = get(config, "responseJsonSchema")
    if schema is None and get(config, "responseSchema") is not None:
        schema = openapi_to_json_schema(as_dict(get(config, "responseSchema"), at(path, "responseSchema")))
    if mime in (None, "text/plain") and schema is None:
        return None
    if mime not in (None, "application/json"):
        raise invalid(at(path, "responseMimeType"), f"{mime!r} is not supported (text/plain or application/json)")
    if schema is None:
        return ResponseFormat(type="json_object")
    schema = as_dict(schema, at(path, "responseJsonSchema"))
    return ResponseFormat(type="json_schema", name="response", json_schema=schema)


def _thinking(raw: Any) -> Reasoning | None:
    """thinkingBudget: -1 dynamic (read as effort "medium"), 0 off, N a budget; thinkingLevel: an
    effort."""
    if raw is None:
        return None
    path = "generationConfig.thinkingConfig"
    config = camel_keys(as_dict(raw, path))
    budget = get_int(config, "thinkingBudget", path)
    level = get(config, "thinkingLevel")
    effort: ReasoningEffort | None = None
    if isinstance(level, str) and level.upper() in THINKING_LEVELS:
        effort = THINKING_LEVELS[level.upper()]
    elif level not in (None, "THINKING_LEVEL_UNSPECIFIED"):
        raise invalid(at(path, "thinkingLevel"), f"expected one of {sorted(THINKING_LEVELS)}")
    if budget == 0:
        effort = "none"
    elif budget == -1 and effort is None:
        effort = "medium"  # dynamic: the providers have no common "model decides" setting
    elif budget is not None and budget < -1:
        raise invalid(at(path, "thinkingBudget"), "expected -1 (dynamic), 0 (off) or a positive budget")
    include = get_bool(config, "includeThoughts", path)
    return Reasoning(effort=effort, budget_tokens=budget if budget and budget > 0 else None, include_thoughts=include)
