"""Canonical request -> Gemini's `GenerateContentRequest`, built as the Gemini CLI builds it.

    {contents, systemInstruction, tools, toolConfig, generationConfig}

The body of the public Gemini API and the inner `request` of the Code Assist envelope. Absent fields
are omitted (the CLI's JSON.stringify drops undefined). Gemini is strict: an unknown field, an empty
part or a tool result without its call is a 400, so everything that cannot be sent faithfully is
refused in `check_request` with the parameter named, before any attempt.

Thought signatures: only Gemini's own (`canonical.gemini_signature`) are sent back, on the part they
came with. A `ReasoningPart.signature` is Anthropic's (Claude thinking from the anthropic or kiro
provider), which Gemini cannot validate and would refuse. A Gemini 3 model turn whose first function
call has no signature gets `SKIP_SIGNATURE`.
"""

from __future__ import annotations

import re
from typing import Any

from llmbridge.canonical import (
    ChatRequest,
    ImagePart,
    Message,
    ReasoningPart,
    TextPart,
    ToolCallPart,
    ToolResultPart,
    gemini_function_response,
    gemini_signature,
)
from llmbridge.errors import InvalidRequest
from llmbridge.providers.google import models
from llmbridge.providers.google.schema import function_parameters, json_schema_parameters, response_json_schema

# Sent when a Gemini 3 function call has no signature we know (GC geminiChat.ts uses the same value).
SKIP_SIGNATURE = "skip_thought_signature_validator"
MAX_STOP_SEQUENCES = 5
DEFAULT_THINKING_BUDGET = 8192  # the CLI's default for Gemini 2.5 chat models
_TOOL_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.:-]{0,63}$")
_DATA_URL = re.compile(r"^data:([^;,]+);base64,(.*)$", re.S)
_EFFORT_BUDGET = {"low": 1024, "medium": 8192, "high": 24_576}
Json = dict[str, Any]


# --- validation ------------------------------------------------------------------------------------


def check_request(request: ChatRequest, model: str, service: str) -> None:
    """Raise InvalidRequest naming the first parameter Gemini cannot honour; `service` names the API
    in messages ("Code Assist", "the Gemini API")."""
    if not request.messages:
        raise InvalidRequest("messages must not be empty", param="messages")
    if len(request.stop) > MAX_STOP_SEQUENCES:
        raise InvalidRequest(f"Gemini accepts at most {MAX_STOP_SEQUENCES} stop sequences", param="stop")
    if request.parallel_tool_calls is False and request.tools:
        raise InvalidRequest(
            "Gemini cannot be told to avoid parallel tool calls; omit parallel_tool_calls", param="parallel_tool_calls"
        )
    _check_tools(request)
    _check_messages(request, service)
    _check_response_format(request)
    problem = thinking_problem(request, model)
    if problem:
        raise InvalidRequest(problem, param="reasoning_effort")


def _check_tools(request: ChatRequest) -> None:
    names = {tool.name for tool in request.tools}
    for tool in request.tools:
        if not _TOOL_NAME.match(tool.name):
            raise InvalidRequest(
                f"tool name {tool.name!r} is not accepted by Gemini (letters, digits, "
                f"_ . : -, at most 64, not starting with a digit)",
                param="tools",
            )
    choice = request.tool_choice
    if choice and choice.mode in ("required", "tool") and not request.tools:
        raise InvalidRequest(f"tool_choice {choice.mode!r} needs tools", param="tool_choice")
    if choice and choice.mode == "tool" and choice.name not in names:
        raise InvalidRequest(f"tool_choice names {choice.name!r}, which is not among the tools", param="tool_choice")


def _check_messages(request: ChatRequest, service: str) -> None:
    calls = _tool_call_names(request.messages)
    for message in request.messages:
        for part in message.parts:
            if isinstance(part, ImagePart) and not (part.data or _DATA_URL.match(part.url or "")):
                raise InvalidRequest(
                    f"{service[:1].upper()}{service[1:]} takes images inline only (base64 "
                    f"data or a data: URL), not by remote URL",
                    param="messages",
                )
            if isinstance(part, ToolResultPart) and not (part.name or calls.get(part.tool_call_id)):
                raise InvalidRequest(
                    f"tool result {part.tool_call_id!r} has no name and no earlier tool "
                    f"call with that id; Gemini needs the function name",
                    param="messages",
                )
            if message.role == "user" and isinstance(part, (ToolCallPart, ReasoningPart)):
                raise InvalidRequest(f"a user message cannot hold a {part.type} part", param="messages")
    if not build_contents(request.messages, gemini3=False):
        raise InvalidRequest("the messages hold no content Gemini can take (all parts are empty)", param="messages")


def _check_response_format(request: ChatRequest) -> None:
    fmt = request.response_format
    if fmt and fmt.type == "json_schema" and not fmt.json_schema:
        raise InvalidRequest("response_format json_schema needs a schema", param="response_format")


def thinking_problem(request: ChatRequest, model: str) -> str | None:
    """Why the requested reasoning cannot be honoured by `model`, or None."""
    reasoning = request.reasoning
    if reasoning is None or (reasoning.effort is None and reasoning.budget_tokens is None):
        return None
    if models.is_gemma(model):
        return f"{model} takes no reasoning settings; omit reasoning_effort"
    # Thinking "off" on a model that always thinks (Gemini 3, 2.5 Pro) is its least thinking, with no
    # thoughts shown (see _cli_thinking): clients send "off" as a matter of course (Claude Code's titles).
    return None


# --- the request -----------------------------------------------------------------------------------


def generate_content_request(
    request: ChatRequest, model: str, *, cli_thinking: bool, json_schema_tools: bool = False
) -> Json:
    """The Gemini `GenerateContentRequest` (contents, systemInstruction, tools, toolConfig,
    generationConfig) for `model` (the upstream id); `cli_thinking` as in `thinking_config`.
    With `json_schema_tools` the tools' JSON Schemas go out as `parametersJsonSchema`, unchanged, as
    the Gemini CLI sends its own; else reduced to the OpenAPI `parameters` form (`schema.py`)."""
    inner: Json = {"contents": build_contents(request.messages, gemini3=models.is_gemini3(model))}
    system = system_instruction(request)
    if system:
        inner["systemInstruction"] = system
    if request.tools:
        declare = _json_schema_declaration if json_schema_tools else _declaration
        inner["tools"] = [{"functionDeclarations": [declare(tool) for tool in request.tools]}]
    config = tool_config(request)
    if config:
        inner["toolConfig"] = config
    generation = generation_config(request, model, cli_thinking=cli_thinking)
    if generation:
        inner["generationConfig"] = generation
    return inner


def system_instruction(request: ChatRequest) -> Json | None:
    parts = [{"text": p.text} for p in request.system if p.text]
    return {"role": "user", "parts": parts} if parts else None


def _declaration(tool: Any) -> Json:
    declaration: Json = {"name": tool.name}
    if tool.description:
        declaration["description"] = tool.description
    parameters = function_parameters(tool.parameters)
    if parameters:
        declaration["parameters"] = parameters
    return declaration


def _json_schema_declaration(tool: Any) -> Json:
    declaration: Json = {"name": tool.name}
    if tool.description:
        declaration["description"] = tool.description
    if isinstance(tool.parameters, dict):
        declaration["parametersJsonSchema"] = json_schema_parameters(tool.parameters)
    return declaration


def tool_config(request: ChatRequest) -> Json | None:
    choice = request.tool_choice
    if choice is None or not request.tools and choice.mode in ("auto", "none"):
        return None
    mode = {"auto": "AUTO", "none": "NONE", "required": "ANY", "tool": "ANY"}[choice.mode]
    config: Json = {"mode": mode}
    if choice.mode == "tool" and choice.name:
        config["allowedFunctionNames"] = [choice.name]
    return {"functionCallingConfig": config}


# --- contents --------------------------------------------------------------------------------------


def build_contents(messages: list[Message], gemini3: bool) -> list[Json]:
    """Gemini `contents`: user/model turns, consecutive same-role turns merged, empty turns dropped."""
    names = _tool_call_names(messages)
    contents: list[Json] = []
    for message in messages:
        role = "model" if message.role == "assistant" else "user"
        parts = [wire for part in message.parts for wire in _wire_parts(part, names)]
        if not parts:
            continue
        if contents and contents[-1]["role"] == role:
            contents[-1]["parts"].extend(parts)
        else:
            contents.append({"role": role, "parts": parts})
    if gemini3:
        for content in contents:
            _sign_first_call(content)
    return contents


def _tool_call_names(messages: list[Message]) -> dict[str, str]:
    return {p.id: p.name for m in messages for p in m.parts if isinstance(p, ToolCallPart)}


def _wire_parts(part: Any, names: dict[str, str]) -> list[Json]:
    if isinstance(part, TextPart):
        return _signed({"text": part.text}, part) if part.text or gemini_signature(part.provider_metadata) else []
    if isinstance(part, ReasoningPart):
        return _reasoning(part)
    if isinstance(part, ImagePart):
        return [_inline_data(part)]
    if isinstance(part, ToolCallPart):
        call = {"name": part.name, "args": part.arguments, "id": part.id}
        return _signed({"functionCall": call}, part)
    if isinstance(part, ToolResultPart):
        return _tool_result(part, names)
    return []


def _signed(wire: Json, part: TextPart | ReasoningPart | ToolCallPart) -> list[Json]:
    signature = gemini_signature(part.provider_metadata)
    if signature:
        wire["thoughtSignature"] = signature
    return [wire]


def _reasoning(part: ReasoningPart) -> list[Json]:
    if part.redacted or not (part.text or gemini_signature(part.provider_metadata)):
        return []  # another provider's opaque thinking means nothing to Gemini
    return _signed({"text": part.text, "thought": True}, part)


def _inline_data(part: ImagePart) -> Json:
    if part.data:
        return {"inlineData": {"mimeType": part.media_type, "data": part.data}}
    match = _DATA_URL.match(part.url or "")
    if not match:
        raise InvalidRequest("images must be inline (base64 or data: URL)", param="messages")
    return {"inlineData": {"mimeType": match.group(1), "data": match.group(2)}}


def _tool_result(part: ToolResultPart, names: dict[str, str]) -> list[Json]:
    name = part.name or names.get(part.tool_call_id)
    if not name:
        raise InvalidRequest(f"tool result {part.tool_call_id!r} has no function name", param="messages")
    # a Gemini client's own response object goes back unchanged; other clients' results are text
    response = gemini_function_response(part.provider_metadata) or (
        {"error": part.text()} if part.is_error else {"output": part.text()}
    )
    wire = [{"functionResponse": {"name": name, "response": response, "id": part.tool_call_id}}]
    return wire + [_inline_data(p) for p in part.content if isinstance(p, ImagePart)]


def _sign_first_call(content: Json) -> None:
    """Gemini 3 rejects a model turn whose first functionCall carries no thoughtSignature."""
    if content["role"] != "model":
        return
    for part in content["parts"]:
        if "functionCall" in part:
            part.setdefault("thoughtSignature", SKIP_SIGNATURE)
            return


# --- generation settings ---------------------------------------------------------------------------


def generation_config(request: ChatRequest, model: str, *, cli_thinking: bool) -> Json:
    config: Json = {}
    for key, value in (
        ("temperature", request.temperature),
        ("topP", request.top_p),
        ("topK", request.top_k),
        ("maxOutputTokens", request.max_tokens),
        ("seed", request.seed),
        ("presencePenalty", request.presence_penalty),
        ("frequencyPenalty", request.frequency_penalty),
    ):
        if value is not None:
            config[key] = value
    if request.stop:
        config["stopSequences"] = list(request.stop)
    fmt = request.response_format
    if fmt and fmt.type in ("json_object", "json_schema"):
        config["responseMimeType"] = "application/json"
        if fmt.type == "json_schema" and fmt.json_schema:
            config["responseJsonSchema"] = response_json_schema(fmt.json_schema)
    thinking = thinking_config(request, model, cli_thinking=cli_thinking)
    if thinking:
        config["thinkingConfig"] = thinking
    return config


def thinking_config(request: ChatRequest, model: str, *, cli_thinking: bool) -> Json | None:
    """includeThoughts plus a level (Gemini 3) or a budget (2.5) for the client's effort or budget.

    With `cli_thinking` (Code Assist, as the Gemini CLI sends it) thoughts are always asked for, and a
    client that set no effort and no budget gets the CLI's defaults (8192 tokens, level HIGH).
    Without (the public API), such a client gets only `includeThoughts`, so the model's own default
    applies, and a client that asked not to see thoughts gets `includeThoughts: false`."""
    if models.is_gemma(model):
        return None
    reasoning = request.reasoning
    effort = reasoning.effort if reasoning else None
    budget = reasoning.budget_tokens if reasoning else None
    if cli_thinking or effort is not None or budget is not None:
        config = _cli_thinking(model, effort, budget)
    else:
        config = {"includeThoughts": True}
    if not cli_thinking and reasoning is not None and reasoning.include_thoughts is False:
        config["includeThoughts"] = False
    return config


def _cli_thinking(model: str, effort: str | None, budget: int | None) -> Json:
    off = budget == 0 if budget is not None else effort == "none"
    if models.is_gemini3(model):
        return {"includeThoughts": not off, "thinkingLevel": "LOW" if off else _level(effort, budget)}
    limits = models.budget_range(model)
    if budget is None:
        budget = _effort_budget(effort, limits)
    if budget == 0:
        return {"includeThoughts": False, "thinkingBudget": 0 if limits.can_disable else limits.low}
    return {"includeThoughts": True, "thinkingBudget": max(limits.low, min(limits.high, budget))}


def _level(effort: str | None, budget: int | None) -> str:
    if budget is not None:
        return "LOW" if budget < DEFAULT_THINKING_BUDGET else "HIGH"
    return "LOW" if effort in ("minimal", "low") else "HIGH"


def _effort_budget(effort: str | None, limits: models.BudgetRange) -> int:
    if effort is None:
        return DEFAULT_THINKING_BUDGET
    if effort == "none":
        return 0
    if effort == "minimal":
        return limits.low
    if effort == "xhigh":
        return limits.high
    return _EFFORT_BUDGET[effort]
