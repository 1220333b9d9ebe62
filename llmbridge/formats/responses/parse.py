"""OpenAI Responses request (`POST /v1/responses`) -> canonical `ChatRequest`.

Tolerant of the shapes OpenAI accepts (a string or a list of items as `input`, messages with or
without `type`, string or part-list content), strict about meaning: a parameter or item the bridge
cannot honour is a 400 naming it, never a silent drop. The exceptions are the hosted tools
(`web_search`, `file_search`, `code_interpreter`, `image_generation`, remote `mcp`, `tool_search`):
they run on OpenAI's servers, no backend here can run them, and clients such as Codex send
`web_search` on every request, so they are left out visibly (`ChatRequest.dropped_tools`: a response
header and the recorded request name them) rather than refused.

Conversation state: with `previous_response_id` the stored conversation (see `store.py`) comes first,
then this request's input. Items of one role in a row make one canonical message (an assistant turn
is its reasoning, text and function calls; a user turn its text, images and function call outputs);
`system` and `developer` messages become the canonical system prompt, after `instructions`.

Tools in a `namespace` are flattened to `<namespace>__<name>` for the backends (the names every
backend accepts); the answer's function calls give the client back its own `name` and `namespace`.
Thought signatures come back in reasoning items' `encrypted_content` (`carrier.py`) or, for clients
that did not ask for it, in the function call's `call_id` (`<id>__thought__<signature>`).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, cast

from llmbridge.canonical import (
    ChatRequest,
    ImagePart,
    Message,
    Part,
    Reasoning,
    ReasoningEffort,
    ReasoningPart,
    ResponseFormat,
    TextPart,
    Tool,
    ToolCallPart,
    ToolChoice,
    ToolChoiceMode,
    ToolResultPart,
    gemini_signature,
    with_gemini_signature,
)
from llmbridge.errors import InvalidRequest
from llmbridge.formats.fields import loads_json_text, validation_as_invalid
from llmbridge.formats.openai_parse import split_tool_call_id
from llmbridge.formats.responses.carrier import unseal

# Accepted and deliberately not forwarded: they do not change what the model generates.
IGNORED_PARAMS = frozenset(
    {
        "user",
        "metadata",
        "service_tier",
        "prompt_cache_key",
        "prompt_cache_retention",
        "safety_identifier",
        "truncation",
        "top_logprobs",
        "stream_options",
        "client_metadata",
        "max_tool_calls",  # limits calls to hosted tools, which the bridge leaves out anyway
    }
)
HANDLED_PARAMS = frozenset(
    {
        "model",
        "input",
        "instructions",
        "tools",
        "tool_choice",
        "parallel_tool_calls",
        "reasoning",
        "max_output_tokens",
        "text",
        "temperature",
        "top_p",
        "stream",
        "store",
        "include",
        "previous_response_id",
        "background",
        "conversation",
        "prompt",
    }
)
# Tools OpenAI runs on its own servers: left out, and named in the answer's header.
HOSTED_TOOLS = frozenset(
    {
        "web_search",
        "web_search_preview",
        "web_search_2025_08_26",
        "web_search_preview_2025_03_11",
        "file_search",
        "code_interpreter",
        "image_generation",
        "mcp",
        "tool_search",
    }
)
ENCRYPTED_REASONING = "reasoning.encrypted_content"
REASONING_EFFORTS = ("none", "minimal", "low", "medium", "high", "xhigh")
SUMMARIES = ("auto", "concise", "detailed")
NAMESPACE_SEPARATOR = "__"
DATA_URL = re.compile(r"^data:(?P<type>[\w/+.-]+);base64,(?P<data>.*)$", re.S)
SYSTEM_ROLES = ("system", "developer")


@dataclass
class Conversation:
    """What a stored response gives the next request: the conversation up to and including its
    answer. `system` holds only the system/developer input messages (`instructions` are not
    carried over, as at OpenAI)."""

    system: list[TextPart] = field(default_factory=list)
    messages: list[Message] = field(default_factory=list)


Lookup = Callable[[str], Conversation | None]


def flat_name(namespace: str | None, name: str) -> str:
    return f"{namespace}{NAMESPACE_SEPARATOR}{name}" if namespace else name


# --- typed getters (paths as OpenAI names them: input[2].content[0].text) --------------------------

_JSON_TYPES = {dict: "an object", list: "an array", str: "a string", int: "an integer", bool: "a boolean"}


def _at(path: str, key: str | int) -> str:
    return f"{path}[{key}]" if isinstance(key, int) else (f"{path}.{key}" if path else key)


def _invalid(path: str, problem: str) -> InvalidRequest:
    return InvalidRequest(f"Invalid '{path}': {problem}", param=path)


def _typed(value: Any, path: str, kind: type | tuple[type, ...]) -> Any:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if isinstance(value, bool) and bool not in kinds:
        ok = False
    elif float in kinds and isinstance(value, int):
        ok = True
    else:
        ok = isinstance(value, kinds)
    if not ok:
        names = " or ".join(_JSON_TYPES.get(k, "a number") for k in kinds)
        raise _invalid(path, f"expected {names}")
    return value


def _get(obj: dict[str, Any], key: str, path: str, kind: type | tuple[type, ...], required: bool = False) -> Any:
    value = obj.get(key)
    if value is None:
        if required:
            raise InvalidRequest(f"Missing required parameter: '{_at(path, key)}'", param=_at(path, key))
        return None
    return _typed(value, _at(path, key), kind)


def _number(body: dict[str, Any], key: str, low: float, high: float) -> float | None:
    value: float | None = _get(body, key, "", float)
    if value is not None and not low <= value <= high:
        raise _invalid(key, f"must be between {low} and {high}")
    return value


# --- the request ---------------------------------------------------------------------------------


def parse_responses_request(body: Any, lookup: Lookup) -> ChatRequest:
    if not isinstance(body, dict):
        raise InvalidRequest("the request body must be a JSON object")
    _reject_unknown(body)
    _reject_unhonourable(body)
    model = _get(body, "model", "", str, required=True)
    if not model:
        raise _invalid("model", "must not be empty")
    with validation_as_invalid():
        return _build(body, model, lookup)


def _reject_unknown(body: dict[str, Any]) -> None:
    unknown = sorted(set(body) - IGNORED_PARAMS - HANDLED_PARAMS)
    if unknown:
        raise InvalidRequest(
            f"Unsupported parameter: '{unknown[0]}': this bridge does not know it and will not drop it "
            "silently; remove it from the request",
            param=unknown[0],
        )


def _reject_unhonourable(body: dict[str, Any]) -> None:
    if body.get("background"):
        raise _invalid("background", "background responses are not supported by this bridge; omit it or send false")
    for name, why in (
        ("conversation", "the Conversations API is not served by this bridge; send the items in 'input'"),
        ("prompt", "stored prompt templates are not served by this bridge; send 'instructions' and 'input'"),
    ):
        if body.get(name) is not None:
            raise _invalid(name, why)


def _build(body: dict[str, Any], model: str, lookup: Lookup) -> ChatRequest:
    tools = ToolSet.parse(body.get("tools"))
    instructions = _get(body, "instructions", "", str)
    history = _history(body, lookup)
    turns = Turns(tools, history)
    raw_input = body.get("input")
    if isinstance(raw_input, str):
        turns.add_user_text(raw_input)
    elif raw_input is not None:
        for i, item in enumerate(_typed(raw_input, "input", list)):
            turns.add(item, _at("input", i))
    elif history is None:
        raise InvalidRequest("Missing required parameter: 'input'", param="input")
    if not turns.messages:
        raise _invalid("input", "must contain at least one message or item")
    turns.place_signatures()
    includes = _includes(body.get("include"))
    reasoning, summary = _reasoning(body.get("reasoning"))
    instruction_parts = [TextPart(text=instructions)] if instructions else []
    choice, allowed = _tool_choice(body.get("tool_choice"), tools)
    store = _get(body, "store", "", bool)
    options: dict[str, Any] = {
        "instruction_parts": len(instruction_parts),
        "encrypted_reasoning": ENCRYPTED_REASONING in includes,
        "summary": summary is not None,
        "store": store is not False,  # OpenAI stores unless told not to
        "tool_names": tools.originals,
        "echo": _echo(body, store),
    }
    kept = [t for t in tools.tools if allowed is None or t.name in allowed]
    return ChatRequest(
        model=model,
        system=instruction_parts + turns.system,
        messages=turns.messages,
        tools=kept,
        tool_choice=choice if kept else None,
        parallel_tool_calls=_get(body, "parallel_tool_calls", "", bool) if kept else None,
        temperature=_number(body, "temperature", 0, 2),
        top_p=_number(body, "top_p", 0, 1),
        max_tokens=_max_output_tokens(body),
        response_format=_text_format(body.get("text")),
        reasoning=reasoning,
        stream=bool(_get(body, "stream", "", bool)),
        dropped_tools=tools.dropped,
        client_options=options,
    )


def _history(body: dict[str, Any], lookup: Lookup) -> Conversation | None:
    previous = _get(body, "previous_response_id", "", str)
    if previous is None:
        return None
    found = lookup(previous)
    if found is None:
        raise InvalidRequest(
            f"Previous response with id '{previous}' not found. This bridge keeps responses in memory "
            "while it runs, only those made with 'store' true (the default), and only the most recent ones.",
            param="previous_response_id",
            code="previous_response_not_found",
        )
    return found


def _max_output_tokens(body: dict[str, Any]) -> int | None:
    value: int | None = _get(body, "max_output_tokens", "", int)
    if value is not None and value < 1:
        raise _invalid("max_output_tokens", "must be at least 1")
    return value


def _includes(raw: Any) -> list[str]:
    if raw is None:
        return []
    includes = [_typed(v, _at("include", i), str) for i, v in enumerate(_typed(raw, "include", list))]
    if "message.output_text.logprobs" in includes:
        raise _invalid("include", "logprobs are not supported by the backends behind this bridge")
    return includes  # the others concern hosted tools (left out) or echo inputs: nothing to add


def _reasoning(raw: Any) -> tuple[Reasoning | None, str | None]:
    """(canonical reasoning, the summary the client asked for)."""
    if raw is None:
        return None, None
    raw = _typed(raw, "reasoning", dict)
    effort = _get(raw, "effort", "reasoning", str)
    if effort is not None and effort not in REASONING_EFFORTS:
        raise _invalid("reasoning.effort", f"must be one of {', '.join(REASONING_EFFORTS)}")
    summary = _get(raw, "summary", "reasoning", str) or _get(raw, "generate_summary", "reasoning", str)
    if summary is not None and summary not in SUMMARIES:
        raise _invalid("reasoning.summary", f"must be one of {', '.join(SUMMARIES)}")
    if effort is None and summary is None:
        return None, None
    # A summary asked for is the thinking text shown; without one the thinking stays hidden (as at
    # OpenAI), and the backend's own default decides whether to ask for it at all.
    return Reasoning(effort=cast(ReasoningEffort | None, effort), include_thoughts=True if summary else None), summary


def _text_format(raw: Any) -> ResponseFormat | None:
    if raw is None:
        return None
    text = _typed(raw, "text", dict)
    fmt = _get(text, "format", "text", dict)  # text.verbosity: accepted, not forwarded
    if fmt is None:
        return None
    kind = fmt.get("type")
    if kind in ("text", "json_object"):
        return ResponseFormat(type=kind)
    if kind == "json_schema":
        return ResponseFormat(
            type="json_schema",
            name=_get(fmt, "name", "text.format", str, required=True),
            json_schema=_get(fmt, "schema", "text.format", dict, required=True),
            strict=_get(fmt, "strict", "text.format", bool),
        )
    raise _invalid("text.format.type", "must be 'text', 'json_object' or 'json_schema'")


ECHOED = ("instructions", "max_output_tokens", "previous_response_id", "temperature", "top_p", "metadata", "user")


def _echo(body: dict[str, Any], store: bool | None) -> dict[str, Any]:
    """The request fields a Response object repeats back."""
    echo = {k: body[k] for k in ECHOED if body.get(k) is not None}
    echo["tool_choice"] = body.get("tool_choice") or "auto"
    echo["parallel_tool_calls"] = body.get("parallel_tool_calls") is not False
    echo["store"] = store is not False
    echo["truncation"] = body.get("truncation") or "disabled"
    if isinstance(body.get("text"), dict):
        echo["text"] = body["text"]
    if isinstance(body.get("reasoning"), dict):
        reasoning = body["reasoning"]
        echo["reasoning"] = {"effort": reasoning.get("effort"), "summary": reasoning.get("summary")}
    return echo


# --- tools ---------------------------------------------------------------------------------------


@dataclass
class ToolSet:
    tools: list[Tool] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)
    originals: dict[str, list[str]] = field(default_factory=dict)  # flat name -> [namespace, name]

    @classmethod
    def parse(cls, raw: Any) -> ToolSet:
        found = cls()
        if raw is None:
            return found
        for i, tool in enumerate(_typed(raw, "tools", list)):
            found._add(_typed(tool, _at("tools", i), dict), _at("tools", i))
        return found

    def _add(self, tool: dict[str, Any], path: str) -> None:
        kind = _get(tool, "type", path, str, required=True)
        if kind in HOSTED_TOOLS:
            if kind not in self.dropped:
                self.dropped.append(kind)
        elif kind == "function":
            self._function(tool, path, None, "")
        elif kind == "namespace":
            namespace = _get(tool, "name", path, str, required=True)
            description = _get(tool, "description", path, str) or ""
            for j, inner in enumerate(_get(tool, "tools", path, list, required=True)):
                inner_path = _at(_at(path, "tools"), j)
                inner = _typed(inner, inner_path, dict)
                if inner.get("type") != "function":
                    raise _invalid(_at(inner_path, "type"), "only function tools are supported inside a namespace")
                self._function(inner, inner_path, namespace, description)
        else:
            raise _invalid(
                _at(path, "type"),
                f"tool type {kind!r} is not supported by this bridge (function and namespace tools are; "
                f"hosted tools ({', '.join(sorted(HOSTED_TOOLS))}) are left out)",
            )

    def _function(self, tool: dict[str, Any], path: str, namespace: str | None, context: str) -> None:
        name = _get(tool, "name", path, str, required=True)
        flat = flat_name(namespace, name)
        if any(t.name == flat for t in self.tools):
            raise _invalid(_at(path, "name"), f"a tool named {flat!r} is declared twice")
        parameters = _get(tool, "parameters", path, dict) or {"type": "object", "properties": {}}
        _get(tool, "strict", path, bool)  # accepted: the backends follow the schema as given
        description = _get(tool, "description", path, str) or ""
        if namespace and context:
            description = f"{description}\n\n(Part of {namespace}: {context})".strip()
        self.tools.append(Tool(name=flat, description=description, parameters=parameters))
        if namespace:
            self.originals[flat] = [namespace, name]


def _tool_choice(raw: Any, tools: ToolSet) -> tuple[ToolChoice | None, set[str] | None]:
    """(the canonical choice, the tool names `allowed_tools` keeps; None: all)."""
    if raw is None:
        return None, None
    if raw in ("auto", "none", "required"):
        return ToolChoice(mode=cast(ToolChoiceMode, raw)), None
    choice = _typed(raw, "tool_choice", (dict, str))
    if isinstance(choice, str):
        raise _invalid("tool_choice", "must be 'auto', 'none', 'required' or an object")
    kind = choice.get("type")
    known = {t.name for t in tools.tools}
    if kind == "function":
        name = flat_name(
            _get(choice, "namespace", "tool_choice", str), _get(choice, "name", "tool_choice", str, required=True)
        )
        if name not in known:
            raise _invalid("tool_choice.name", f"no function tool named {name!r} is declared in 'tools'")
        return ToolChoice(mode="tool", name=name), None
    if kind == "allowed_tools":
        mode = choice.get("mode")
        if mode not in ("auto", "required"):
            raise _invalid("tool_choice.mode", "must be 'auto' or 'required'")
        allowed: set[str] = set()
        for j, entry in enumerate(_get(choice, "tools", "tool_choice", list, required=True)):
            path = _at("tool_choice.tools", j)
            entry = _typed(entry, path, dict)
            if entry.get("type") in HOSTED_TOOLS:
                continue
            if entry.get("type") != "function":
                raise _invalid(_at(path, "type"), "only function tools can be allowed here")
            name = flat_name(_get(entry, "namespace", path, str), _get(entry, "name", path, str, required=True))
            if name not in known:
                raise _invalid(_at(path, "name"), f"no function tool named {name!r} is declared in 'tools'")
            allowed.add(name)
        return ToolChoice(mode=cast(ToolChoiceMode, mode)), allowed
    if kind in HOSTED_TOOLS:
        raise _invalid("tool_choice", f"{kind!r} is a hosted tool, which this bridge leaves out; it cannot be forced")
    raise _invalid("tool_choice.type", "must be 'function' or 'allowed_tools'")


# --- input items ---------------------------------------------------------------------------------

Side = Literal["user", "assistant"]


class Turns:
    """Builds the canonical conversation from input items, in order."""

    def __init__(self, tools: ToolSet, history: Conversation | None) -> None:
        self.tools = tools
        self.system: list[TextPart] = [p.model_copy(deep=True) for p in history.system] if history else []
        self.messages: list[Message] = [m.model_copy(deep=True) for m in history.messages] if history else []
        self.call_names: dict[str, str] = {
            p.id: p.name for m in self.messages for p in m.parts if isinstance(p, ToolCallPart)
        }
        # Gemini signatures a reasoning item carries for a later part of its turn: (message, after
        # how many parts, placement, signature)
        self.pending: list[tuple[int, int, str, str]] = []

    def _append(self, role: Side, parts: list[Part]) -> None:
        if not parts:
            return
        if self.messages and self.messages[-1].role == role:
            self.messages[-1].parts.extend(parts)
        else:
            self.messages.append(Message(role=role, parts=parts))

    def add_user_text(self, text: str) -> None:
        self._append("user", [TextPart(text=text)] if text else [])

    def add(self, raw: Any, path: str) -> None:
        item = _typed(raw, path, dict)
        kind = item.get("type") or ("message" if "role" in item else None)
        if kind == "message":
            self._message(item, path)
        elif kind == "function_call":
            self._function_call(item, path)
        elif kind == "function_call_output":
            self._function_call_output(item, path)
        elif kind == "reasoning":
            self._reasoning(item, path)
        elif kind == "item_reference":
            raise _invalid(path, "item references need OpenAI's stored items; send the item itself")
        else:
            raise _invalid(
                _at(path, "type"),
                f"input item type {kind!r} is not supported by this bridge (message, function_call, "
                "function_call_output and reasoning are)",
            )

    def _message(self, item: dict[str, Any], path: str) -> None:
        role = _get(item, "role", path, str, required=True)
        content = item.get("content")
        if role in SYSTEM_ROLES:
            self.system += [p for p in self._content(content, path, images=False) if isinstance(p, TextPart)]
        elif role == "user":
            self._append("user", self._content(content, path, images=True))
        elif role == "assistant":
            self._append("assistant", self._content(content, path, images=False))
        else:
            raise _invalid(_at(path, "role"), "must be 'user', 'assistant', 'system' or 'developer'")

    def _content(self, content: Any, path: str, images: bool) -> list[Part]:
        if content is None:
            return []
        if isinstance(content, str):
            return [TextPart(text=content)] if content else []
        parts: list[Part] = []
        for j, raw in enumerate(_typed(content, _at(path, "content"), (list, str))):
            part = _content_part(_typed(raw, _at(_at(path, "content"), j), dict), _at(_at(path, "content"), j), images)
            if part is not None:
                parts.append(part)
        return parts

    def _function_call(self, item: dict[str, Any], path: str) -> None:
        call_id, signature = split_tool_call_id(_get(item, "call_id", path, str, required=True))
        name = flat_name(_get(item, "namespace", path, str), _get(item, "name", path, str, required=True))
        raw_args = _get(item, "arguments", path, str) or "{}"
        try:
            arguments = loads_json_text(raw_args)
        except ValueError:
            raise _invalid(_at(path, "arguments"), "is not valid JSON") from None
        if not isinstance(arguments, dict):
            raise _invalid(_at(path, "arguments"), "must be a JSON object")
        self.call_names[call_id] = name
        meta = with_gemini_signature({}, signature)
        self._append("assistant", [ToolCallPart(id=call_id, name=name, arguments=arguments, provider_metadata=meta)])

    def _function_call_output(self, item: dict[str, Any], path: str) -> None:
        call_id, _ = split_tool_call_id(_get(item, "call_id", path, str, required=True))
        output = item.get("output")
        if output is None:
            raise InvalidRequest(f"Missing required parameter: '{_at(path, 'output')}'", param=_at(path, "output"))
        if isinstance(output, str):
            content: list[TextPart | ImagePart] = [TextPart(text=output)]
        else:
            content = [
                p
                for p in self._content(_typed(output, _at(path, "output"), list), path, images=True)
                if isinstance(p, (TextPart, ImagePart))
            ]
        result = ToolResultPart(tool_call_id=call_id, name=self.call_names.get(call_id), content=content)
        self._append("user", [result])

    def _reasoning(self, item: dict[str, Any], path: str) -> None:
        summary = _get(item, "summary", path, list) or []
        texts = [
            _get(_typed(s, _at(_at(path, "summary"), k), dict), "text", _at(_at(path, "summary"), k), str) or ""
            for k, s in enumerate(summary)
        ]
        encrypted = _get(item, "encrypted_content", path, str)
        sealed = unseal(encrypted) if encrypted else None
        if sealed is None:  # no content the bridge made: the summary is all there is (unsigned)
            text = "\n\n".join(t for t in texts if t)
            self._append("assistant", [ReasoningPart(text=text)] if text else [])
            return
        meta = with_gemini_signature({}, sealed.gemini if sealed.placement == "thought" else None)
        if sealed.text or sealed.signature or sealed.redacted or meta:
            part = ReasoningPart(
                text=sealed.text, signature=sealed.signature, redacted=sealed.redacted, provider_metadata=meta
            )
            self._append("assistant", [part])
        if sealed.gemini and sealed.placement != "thought":
            # the next call (or text) of this turn: in the assistant message now open, or the next one
            last = self.messages[-1] if self.messages else None
            if last is not None and last.role == "assistant":
                self.pending.append((len(self.messages) - 1, len(last.parts), sealed.placement, sealed.gemini))
            else:
                self.pending.append((len(self.messages), 0, sealed.placement, sealed.gemini))

    def place_signatures(self) -> None:
        """A signature a reasoning item carried for the next function call (or text) of its turn
        goes onto that part, unless it has one already."""
        for index, after, placement, signature in self.pending:
            if index >= len(self.messages) or self.messages[index].role != "assistant":
                continue
            kind = ToolCallPart if placement == "call" else TextPart
            target = next((p for p in self.messages[index].parts[after:] if isinstance(p, kind)), None)
            if target is not None and not gemini_signature(target.provider_metadata):
                target.provider_metadata = with_gemini_signature(target.provider_metadata, signature)


def _content_part(part: dict[str, Any], path: str, images: bool) -> Part | None:
    kind = part.get("type")
    if kind in ("input_text", "output_text", "text"):
        return TextPart(text=_get(part, "text", path, str, required=True))
    if kind == "refusal":
        return TextPart(text=_get(part, "refusal", path, str) or "")
    if kind == "input_image" and images:
        if part.get("file_id") is not None:
            raise _invalid(_at(path, "file_id"), "images by file id need OpenAI's Files API; send a data URL")
        return _image(_get(part, "image_url", path, str, required=True), _at(path, "image_url"))
    if kind in ("input_image", "input_file", "input_audio"):
        raise _invalid(_at(path, "type"), f"content type {kind!r} is not supported here")
    raise _invalid(_at(path, "type"), f"content type {kind!r} is not supported (input_text and input_image are)")


def _image(url: str, path: str) -> ImagePart:
    match = DATA_URL.match(url)
    if match:
        return ImagePart(media_type=match["type"], data=match["data"])
    if url.startswith(("http://", "https://")):
        return ImagePart(url=url)
    raise _invalid(path, "must be a data: URL (data:image/png;base64,...) or an http(s) URL")
