"""Canonical `ChatRequest` -> Kiro `conversationState` body.

The service answers 400 "Improperly formed request." to anything outside its structure, so the
builder enforces it:

* there is no system field: the system text goes at the start of the first user content;
* turns alternate strictly user/assistant (same-role runs are merged), the history starts with a
  user turn and ends with an assistant turn, and `currentMessage` is a userInputMessage;
* no nulls, no empty arrays/objects, no empty content: a turn with nothing to say gets a short
  placeholder (see PLACEHOLDERS; they only fill structural holes, never carry instructions);
* every toolResult pairs with a toolUse of the assistant turn just before it; orphan or duplicate
  results become text in the user turn, and tool uses that were never answered are dropped;
* when no tools are sent (the client sent none, or tool_choice "none" removed them), tool uses and
  tool results in the conversation become plain text (`[tool call NAME {...}]`, `[tool result for
  NAME: ...]`): the service rejects toolUses/toolResults without tool definitions;
* tool names over 64 characters are shortened reversibly (prefix + deterministic hash), and the
  decoder maps them back; empty descriptions become the tool's name; descriptions over
  MAX_DESCRIPTION characters move into the system text, the tool keeping a pointer to them;
* images are sent as `{format, source: {bytes}}`;
* when thinking is requested, the Kiro IDE's `<thinking_mode>` prefix starts the system text;
* Kiro has no structured output: a requested JSON answer (a schema, or any JSON object) becomes an
  instruction at the end of the system text, holding the schema. Claude follows it reliably, but it is
  an instruction, not a constraint the service enforces.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import uuid
from dataclasses import dataclass, field
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
from llmbridge.errors import InvalidRequest

ORIGIN = "AI_EDITOR"
MAX_TOOL_NAME = 64
MAX_DESCRIPTION = 10_000
IMAGE_FORMATS = {
    "image/png": "png",
    "image/jpeg": "jpeg",
    "image/jpg": "jpeg",
    "image/gif": "gif",
    "image/webp": "webp",
}

# Structural fillers, used only where the service forbids an empty field or a missing turn.
PLACEHOLDERS = {
    "tool_results_only": "(tool results)",
    "assistant_tools_only": "(tool use)",
    "assistant_empty": "(no answer)",
    "user_empty": "(empty message)",
    "conversation_start": "(conversation start)",
    "continue": "Continue",
    "empty_tool_result": "(no output)",
}

# Thinking budget per effort level when the client gave no explicit budget.
EFFORT_BUDGET = {"minimal": 1024, "low": 4096, "medium": 10_000, "high": 20_000, "xhigh": 32_000}
DEFAULT_THINKING_BUDGET = 10_000
MAX_THINKING_BUDGET = 32_000


def shorten_tool_name(name: str) -> str:
    """Names over 64 characters: the first 55 characters, `_`, and 8 hex of the name's SHA-256."""
    if len(name) <= MAX_TOOL_NAME:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:8]
    return f"{name[: MAX_TOOL_NAME - 9]}_{digest}"


def thinking_budget(request: ChatRequest) -> int | None:
    """Thinking tokens to ask for, or None when the client did not ask for thinking."""
    reasoning = request.reasoning
    if reasoning is None or reasoning.effort == "none" or reasoning.budget_tokens == 0:
        return None
    if reasoning.budget_tokens:
        return max(1024, min(reasoning.budget_tokens, MAX_THINKING_BUDGET))
    return EFFORT_BUDGET.get(reasoning.effort or "", DEFAULT_THINKING_BUDGET)


def thinking_prefix(budget: int) -> str:
    return f"<thinking_mode>enabled</thinking_mode><max_thinking_length>{budget}</max_thinking_length>"


def image_entry(part: ImagePart) -> dict[str, Any]:
    media_type, data = part.media_type.lower(), part.data
    if data is None and part.url:
        if not part.url.startswith("data:"):
            raise InvalidRequest("kiro accepts images only inline (base64 or data: URLs), not by URL", param="messages")
        header, _, data = part.url[5:].partition(",")
        if ";base64" not in header:
            raise InvalidRequest("kiro accepts data: URL images only base64-encoded", param="messages")
        media_type = header.split(";", 1)[0].lower() or media_type
    fmt = IMAGE_FORMATS.get(media_type)
    if fmt is None:
        raise InvalidRequest(f"kiro accepts png, jpeg, gif and webp images, not {media_type}", param="messages")
    if not data:
        raise InvalidRequest("an image has no data", param="messages")
    try:
        base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidRequest("an image's data is not valid base64", param="messages") from None
    return {"format": fmt, "source": {"bytes": data}}


def tool_call_text(part: ToolCallPart) -> str:
    """A tool call written as text, for conversations sent without tool definitions."""
    arguments = json.dumps(part.arguments, ensure_ascii=False, separators=(",", ":"))
    return f"[tool call {part.name} {arguments}]"


def _clean_input(arguments: dict[str, Any]) -> dict[str, Any]:
    """Tool-use input without empty-string keys (the service rejects them)."""
    return {k: v for k, v in arguments.items() if k != ""}


@dataclass
class _Turn:
    role: str
    texts: list[str] = field(default_factory=list)
    images: list[dict[str, Any]] = field(default_factory=list)
    tool_uses: list[dict[str, Any]] = field(default_factory=list)
    tool_results: list[ToolResultPart] = field(default_factory=list)
    result_entries: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class BuiltRequest:
    body: dict[str, Any]
    tool_names: dict[str, str]  # name sent upstream -> the client's name
    thinking: bool
    input_chars: int
    notes: list[str] = field(default_factory=list)  # what was converted or dropped, for the record


class RequestBuilder:
    def __init__(
        self,
        request: ChatRequest,
        model_id: str,
        profile_arn: str | None = None,
        conversation_id: str | None = None,
    ) -> None:
        self.request = request
        self.model_id = model_id
        self.profile_arn = profile_arn
        self.conversation_id = conversation_id or str(uuid.uuid4())
        self.tool_names: dict[str, str] = {}  # upstream -> client
        self.notes: list[str] = []
        self.tools_as_text = False  # set by build() when no tools are sent
        self.call_names: dict[str, str] = {}  # tool call id -> tool name, for results as text
        self.converted_tools = False

    def name_up(self, name: str) -> str:
        short = shorten_tool_name(name)
        self.tool_names[short] = name
        return short

    # --- tools -------------------------------------------------------------------------------------

    def tools(self) -> tuple[list[dict[str, Any]], list[str]]:
        """(toolSpecifications, system sections holding over-long descriptions)."""
        specs, sections, seen = [], [], set()
        choice = self.request.tool_choice
        if choice is not None and choice.mode == "none":
            return [], []
        for tool in self.request.tools:
            name = self.name_up(tool.name)
            if name in seen:
                raise InvalidRequest(f"tool {tool.name!r} is defined twice", param="tools")
            seen.add(name)
            description = tool.description.strip() or tool.name
            if len(description) > MAX_DESCRIPTION:
                sections.append(f"## Tool `{name}`\n\n{tool.description.strip()}")
                description = (
                    f"{description[:500].rstrip()} ... (the full description of `{name}` "
                    f'is in the system prompt, section "Tool `{name}`")'
                )
                self.notes.append(f"description of tool {tool.name!r} moved to the system text")
            schema = tool.parameters or {"type": "object", "properties": {}}
            specs.append(
                {
                    "toolSpecification": {
                        "name": name,
                        "description": description,
                        "inputSchema": {"json": schema},
                    }
                }
            )
        return specs, sections

    # --- turns -------------------------------------------------------------------------------------

    def turns(self) -> list[_Turn]:
        """Canonical messages -> alternating turns (same-role runs merged), tools paired."""
        turns: list[_Turn] = []
        for message in self.request.messages:
            if turns and turns[-1].role == message.role:
                turn = turns[-1]
            else:
                turn = _Turn(role=message.role)
                turns.append(turn)
            self._add_message(turn, message)
        if not turns:
            raise InvalidRequest("the request has no messages", param="messages")
        self._pair_tools(turns)
        if turns[0].role == "assistant":
            turns.insert(0, _Turn(role="user", texts=[PLACEHOLDERS["conversation_start"]]))
            self.notes.append("conversation started with an assistant turn: placeholder user turn added")
        if turns[-1].role == "assistant":
            turns.append(_Turn(role="user", texts=[PLACEHOLDERS["continue"]]))
            self.notes.append("conversation ended with an assistant turn: 'Continue' user turn added")
        return turns

    def _add_message(self, turn: _Turn, message: Message) -> None:
        texts: list[str] = []
        for part in message.parts:
            if isinstance(part, TextPart):
                if part.text:
                    texts.append(part.text)
            elif isinstance(part, ImagePart):
                if message.role == "assistant":
                    raise InvalidRequest("kiro cannot take images in assistant messages", param="messages")
                turn.images.append(image_entry(part))
            elif isinstance(part, ReasoningPart):
                continue  # earlier thinking is not sent back (Kiro history has no thinking input)
            elif isinstance(part, ToolCallPart):
                if message.role != "assistant":
                    raise InvalidRequest("tool calls belong in assistant messages", param="messages")
                self.call_names[part.id] = part.name
                if self.tools_as_text:
                    texts.append(tool_call_text(part))
                    self.converted_tools = True
                    continue
                turn.tool_uses.append(
                    {
                        "toolUseId": part.id,
                        "name": self.name_up(part.name),
                        "input": _clean_input(part.arguments),
                    }
                )
            elif isinstance(part, ToolResultPart):
                if message.role != "user":
                    raise InvalidRequest("tool results belong in user messages", param="messages")
                if self.tools_as_text:
                    texts.append(self._result_text(part))
                    self.converted_tools = True
                    turn.images.extend(image_entry(p) for p in part.content if isinstance(p, ImagePart))
                    continue
                turn.tool_results.append(part)
        if texts:
            turn.texts.append("\n\n".join(texts))

    def _result_text(self, part: ToolResultPart) -> str:
        name = part.name or self.call_names.get(part.tool_call_id) or part.tool_call_id
        status = " (error)" if part.is_error else ""
        return f"[tool result for {name}{status}: {part.text() or PLACEHOLDERS['empty_tool_result']}]"

    def _pair_tools(self, turns: list[_Turn]) -> None:
        used_ids: set[str] = set()
        answered: set[str] = set()
        previous_assistant: _Turn | None = None
        for turn in turns:
            if turn.role == "assistant":
                uses = []
                for use in turn.tool_uses:
                    if use["toolUseId"] in used_ids or not use["toolUseId"]:
                        self.notes.append(f"duplicate tool call id {use['toolUseId']!r} dropped")
                        continue
                    used_ids.add(use["toolUseId"])
                    uses.append(use)
                turn.tool_uses = uses
                previous_assistant = turn
                continue
            pending = {u["toolUseId"] for u in previous_assistant.tool_uses} if previous_assistant else set()
            for result in turn.tool_results:
                text = result.text()
                for image in (p for p in result.content if isinstance(p, ImagePart)):
                    turn.images.append(image_entry(image))
                if result.tool_call_id in pending and result.tool_call_id not in answered:
                    answered.add(result.tool_call_id)
                    turn.result_entries.append(
                        {
                            "toolUseId": result.tool_call_id,
                            "status": "error" if result.is_error else "success",
                            "content": [{"text": text or PLACEHOLDERS["empty_tool_result"]}],
                        }
                    )
                else:
                    label = f"{result.tool_call_id}" + (f" ({result.name})" if result.name else "")
                    turn.texts.append(f"[Tool result for {label}]\n{text}")
                    self.notes.append(f"unpaired tool result {result.tool_call_id!r} sent as text")
            if previous_assistant is not None:
                kept = [u for u in previous_assistant.tool_uses if u["toolUseId"] in answered]
                if len(kept) != len(previous_assistant.tool_uses):
                    self.notes.append("tool calls without results dropped from history")
                previous_assistant.tool_uses = kept
            previous_assistant = None

    # --- assembly ----------------------------------------------------------------------------------

    def system_text(self, sections: list[str]) -> str:
        parts = []
        budget = thinking_budget(self.request)
        if budget is not None:
            parts.append(thinking_prefix(budget))
        system = self.request.system_text().strip()
        if system:
            parts.append(system)
        if sections:
            parts.append("# Tool documentation\n\n" + "\n\n".join(sections))
        answer_format = self.answer_format()
        if answer_format:
            parts.append(answer_format)
        return "\n\n".join(parts)

    def answer_format(self) -> str:
        """The structured-output instruction standing in for a response format (module docstring)."""
        fmt = self.request.response_format
        if fmt is None or fmt.type == "text":
            return ""
        self.notes.append(f"response format {fmt.type} sent as an instruction in the system text")
        rule = "Reply with a single JSON value and nothing else: no prose, no Markdown, no code fences."
        if fmt.type == "json_object" or not fmt.json_schema:
            return f"# Response format\n\n{rule} The value is a JSON object."
        schema = json.dumps(fmt.json_schema, ensure_ascii=False, sort_keys=True)
        return f"# Response format\n\n{rule} The value must validate against this JSON Schema:\n{schema}"

    def user_message(self, turn: _Turn, prefix: str, tools: list[dict[str, Any]] | None) -> dict[str, Any]:
        content = "\n\n".join(t for t in turn.texts if t)
        if not content:
            content = PLACEHOLDERS["tool_results_only" if turn.result_entries else "user_empty"]
        if prefix:
            content = f"{prefix}\n\n{content}"
        message: dict[str, Any] = {"content": content, "modelId": self.model_id, "origin": ORIGIN}
        if turn.images:
            message["images"] = turn.images
        context: dict[str, Any] = {}
        if tools:
            context["tools"] = tools
        if turn.result_entries:
            context["toolResults"] = turn.result_entries
        if context:
            message["userInputMessageContext"] = context
        return {"userInputMessage": message}

    @staticmethod
    def assistant_message(turn: _Turn) -> dict[str, Any]:
        content = "\n\n".join(t for t in turn.texts if t)
        if not content:
            content = PLACEHOLDERS["assistant_tools_only" if turn.tool_uses else "assistant_empty"]
        message: dict[str, Any] = {"content": content}
        if turn.tool_uses:
            message["toolUses"] = turn.tool_uses
        return {"assistantResponseMessage": message}

    def build(self) -> BuiltRequest:
        tools, sections = self.tools()
        self.tools_as_text = not tools
        turns = self.turns()
        if self.converted_tools:
            self.notes.append("no tools sent: tool calls and results in the conversation sent as text")
        system = self.system_text(sections)
        history: list[dict[str, Any]] = []
        for i, turn in enumerate(turns[:-1]):
            if turn.role == "user":
                history.append(self.user_message(turn, system if i == 0 else "", None))
            else:
                history.append(self.assistant_message(turn))
        current = self.user_message(turns[-1], system if len(turns) == 1 else "", tools)
        state: dict[str, Any] = {
            "chatTriggerType": "MANUAL",
            "conversationId": self.conversation_id,
            "agentTaskType": "vibe",
            "currentMessage": current,
        }
        if history:
            state["history"] = history
        body: dict[str, Any] = {"conversationState": state}
        if self.profile_arn:
            body["profileArn"] = self.profile_arn
        input_chars = len(json.dumps(body, ensure_ascii=False))
        return BuiltRequest(
            body=body,
            tool_names=dict(self.tool_names),
            thinking=thinking_budget(self.request) is not None,
            input_chars=input_chars,
            notes=self.notes,
        )


def build_request(
    request: ChatRequest, model_id: str, profile_arn: str | None = None, conversation_id: str | None = None
) -> BuiltRequest:
    return RequestBuilder(request, model_id, profile_arn, conversation_id).build()
