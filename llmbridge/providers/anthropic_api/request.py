"""Canonical request -> Anthropic Messages request body (`POST /v1/messages`; a stream, or a
non-stream request when the provider sends one: `needs_stream`).

* `max_tokens` is required by Anthropic: the client's, else DEFAULT_MAX_TOKENS (8192) plus the
  thinking budget when thinking is on (so the visible answer keeps its 8192 tokens);
* consecutive messages of the same role are merged (Anthropic wants alternating turns); tool_result
  blocks go first in their user turn; empty text blocks are dropped (Anthropic rejects them);
* thinking blocks are sent back only when they carry a `signature` (Anthropic verifies it);
  `redacted_thinking` goes back as it came; unsigned reasoning (from another provider, or an OpenAI
  client's `reasoning_content`) is dropped: Anthropic cannot verify it and would answer 400;
* thinking: the client's `budget_tokens`, or an effort as a budget from EFFORT_BUDGETS, clamped to
  Anthropic's limits: at least 1024 and below the client's `max_tokens` (thinking is left off when
  `max_tokens` has no room for 1024); effort "none" is `{"type": "disabled"}`;
* an Anthropic client's effort without `thinking` (`output_config.effort` alone) goes upstream as
  `output_config.effort`, without thinking; efforts from OpenAI / Gemini clients become budgets;
* thinking is left out (the request goes on without it) where Anthropic would refuse it: when the
  last assistant turn with a `tool_use` does not start with a signed thinking / redacted_thinking
  block (a tool loop of an OpenAI or Gemini client, or history from another provider: there is no
  signature to send back), with a forced `tool_choice` (any / tool), and with `top_p` below 0.95;
* `response_format` json_schema becomes `output_config.format` (Anthropic structured outputs);
  JSON mode without a schema, `seed` and the penalties have no Anthropic equivalent: 400; so are a
  temperature other than 1 and top_k while thinking is on (Anthropic refuses them with thinking).
"""

from __future__ import annotations

import logging
import re
from typing import Any

from llmbridge.canonical import (
    ChatRequest,
    ImagePart,
    Message,
    Part,
    ReasoningPart,
    TextPart,
    ToolCallPart,
    ToolResultPart,
)
from llmbridge.errors import InvalidRequest

log = logging.getLogger(__name__)
Json = dict[str, Any]
DEFAULT_MAX_TOKENS = 8192
MIN_THINKING_BUDGET = 1024  # Anthropic's smallest budget_tokens
MIN_THINKING_TOP_P = 0.95  # Anthropic refuses a lower top_p while thinking is on
EFFORT_BUDGETS = {"minimal": 1024, "low": 2048, "medium": 8192, "high": 16_384, "xhigh": 32_768}
TOOL_CHOICES = {"auto": "auto", "required": "any", "tool": "tool", "none": "none"}
_DATA_URL = re.compile(r"^data:([^;,]+);base64,(.*)$", re.S)
_BAD_ID_CHARS = re.compile(r"[^A-Za-z0-9_-]")


def check_request(request: ChatRequest) -> None:
    """Raise InvalidRequest naming the first parameter the Messages API cannot take."""
    for name in ("seed", "presence_penalty", "frequency_penalty"):
        if getattr(request, name) is not None:
            raise InvalidRequest(f"the Anthropic Messages API has no {name}; omit it", param=name)
    fmt = request.response_format
    if fmt and fmt.type == "json_object":
        raise InvalidRequest(
            "Anthropic has no JSON mode without a schema; use response_format "
            "json_schema (Anthropic structured outputs) instead",
            param="response_format",
        )
    if fmt and fmt.type == "json_schema" and not fmt.json_schema:
        raise InvalidRequest("response_format json_schema needs a schema", param="response_format")
    if not request.messages:
        raise InvalidRequest("messages must not be empty", param="messages")
    choice = request.tool_choice
    if choice and choice.mode in ("required", "tool") and not request.tools:
        raise InvalidRequest(f"tool_choice {choice.mode!r} needs tools", param="tool_choice")
    thinking, _ = thinking_config(request)
    if thinking and thinking["type"] == "enabled":
        if request.temperature is not None and request.temperature != 1:
            raise InvalidRequest(
                "Anthropic takes no temperature other than 1 while thinking is on; omit "
                "temperature or turn thinking off",
                param="temperature",
            )
        if request.top_k is not None:
            raise InvalidRequest(
                "Anthropic takes no top_k while thinking is on; omit top_k or turn thinking off", param="top_k"
            )


# The official SDK refuses a non-stream request whose `max_tokens` could take more than 10 minutes
# to generate (it counts 128,000 output tokens an hour) and tells its users to stream instead.
NON_STREAMING_MAX_TOKENS = 128_000 * 10 // 60


def needs_stream(request: ChatRequest) -> bool:
    """Whether a non-stream request must still go upstream as a stream, as the SDK would have it: its
    `max_tokens` (the client's, else the default plus any thinking budget) is past what the SDK sends
    as one non-stream call (a connection silent that long may be dropped). The stream is then
    accumulated into the client's whole answer, as for the coding-assistant providers."""
    if request.max_tokens is not None:
        return request.max_tokens > NON_STREAMING_MAX_TOKENS
    return DEFAULT_MAX_TOKENS + thinking_config(request)[1] > NON_STREAMING_MAX_TOKENS


def build_body(request: ChatRequest, upstream_model: str, stream: bool = True) -> Json:
    """The JSON body of `POST /v1/messages` for `upstream_model`; with `stream=False` a non-stream
    request, as the official SDK sends one (no `stream` field)."""
    body = _prompt(request, upstream_model)
    thinking, budget = thinking_config(request, body["messages"])
    body["max_tokens"] = request.max_tokens or DEFAULT_MAX_TOKENS + budget
    if thinking:
        body["thinking"] = thinking
    if stream:
        body["stream"] = True
    simple = {"temperature": request.temperature, "top_p": request.top_p, "top_k": request.top_k}
    body.update({k: v for k, v in simple.items() if v is not None})
    if request.stop:
        body["stop_sequences"] = list(request.stop)
    output_config: Json = {}
    effort = effort_only(request)
    if effort:
        output_config["effort"] = effort
    fmt = request.response_format
    if fmt and fmt.type == "json_schema" and fmt.json_schema:
        output_config["format"] = {"type": "json_schema", "schema": fmt.json_schema}
    if output_config:
        body["output_config"] = output_config
    return body


def build_count_body(request: ChatRequest, upstream_model: str) -> Json:
    """The body of `POST /v1/messages/count_tokens`: what the model reads (no max_tokens, no stream)."""
    body = _prompt(request, upstream_model)
    thinking, _ = thinking_config(request, body["messages"])
    if thinking and thinking["type"] == "enabled":
        body["thinking"] = thinking
    return body


def _prompt(request: ChatRequest, upstream_model: str) -> Json:
    body: Json = {"model": upstream_model}
    system = [_with_cache({"type": "text", "text": p.text}, p) for p in request.system if p.text]
    if system:
        body["system"] = system
    body["messages"] = build_messages(request.messages)
    if request.tools:
        body["tools"] = [_tool(t.name, t.description, t.parameters) for t in request.tools]
    choice = tool_choice(request)
    if choice:
        body["tool_choice"] = choice
    return body


def _tool(name: str, description: str, parameters: Json) -> Json:
    tool: Json = {"name": name}
    if description:
        tool["description"] = description
    tool["input_schema"] = parameters or {"type": "object", "properties": {}}
    return tool


def tool_choice(request: ChatRequest) -> Json | None:
    choice = request.tool_choice
    parallel = request.parallel_tool_calls
    if choice is None and (parallel is not False or not request.tools):
        return None
    mode = choice.mode if choice else "auto"
    wire: Json = {"type": TOOL_CHOICES[mode]}
    if mode == "tool" and choice:
        wire["name"] = choice.name
    if parallel is False and mode != "none":
        wire["disable_parallel_tool_use"] = True
    return wire


def effort_only(request: ChatRequest) -> str | None:
    """The effort of an Anthropic client's `output_config.effort` sent without `thinking`: it goes
    upstream as it came (no thinking), not as a hidden thinking budget. None otherwise."""
    reasoning = request.reasoning
    if reasoning is None or reasoning.effort in (None, "none"):
        return None
    if reasoning.budget_tokens is not None or reasoning.include_thoughts is not None:
        return None
    if not any(k.lower() == "anthropic-version" for k in request.passthrough_headers):
        return None  # OpenAI / Gemini clients: their effort means thinking
    return "low" if reasoning.effort == "minimal" else reasoning.effort


def thinking_config(request: ChatRequest, messages: list[Json] | None = None) -> tuple[Json | None, int]:
    """(the `thinking` object or None, the budget it spends); see the module docstring.
    `messages`: the wire messages, when already built."""
    reasoning = request.reasoning
    if reasoning is None or effort_only(request):
        return None, 0
    if reasoning.budget_tokens is not None:
        if reasoning.budget_tokens <= 0:
            return {"type": "disabled"}, 0
        budget = reasoning.budget_tokens
    elif reasoning.effort is None:
        return None, 0
    elif reasoning.effort == "none":
        return {"type": "disabled"}, 0
    else:
        budget = EFFORT_BUDGETS[reasoning.effort]
    budget = max(budget, MIN_THINKING_BUDGET)
    if request.max_tokens is not None:
        budget = min(budget, request.max_tokens - 1)
    if budget < MIN_THINKING_BUDGET:
        return None, 0  # max_tokens has no room for Anthropic's smallest budget
    reason = _thinking_refused(request, build_messages(request.messages) if messages is None else messages)
    if reason:
        log.debug("anthropic: thinking left out of this request: %s", reason)
        return None, 0
    return {"type": "enabled", "budget_tokens": budget}, budget


def _thinking_refused(request: ChatRequest, messages: list[Json]) -> str | None:
    """Why Anthropic would refuse this request with thinking on (None: it would not)."""
    choice = request.tool_choice
    if choice and choice.mode in ("required", "tool"):
        return "a forced tool_choice (Anthropic allows only auto or none with thinking)"
    if request.top_p is not None and request.top_p < MIN_THINKING_TOP_P:
        return f"top_p below {MIN_THINKING_TOP_P}"
    last = next((m for m in reversed(messages) if m["role"] == "assistant"), None)
    if (
        last
        and any(b["type"] == "tool_use" for b in last["content"])
        and last["content"][0]["type"] not in ("thinking", "redacted_thinking")
    ):
        return "the last tool-calling assistant turn has no signed thinking to send back"
    return None


# --- messages --------------------------------------------------------------------------------------


def build_messages(messages: list[Message]) -> list[Json]:
    """Alternating user/assistant turns; tool results first in their turn; empty turns dropped."""
    out: list[Json] = []
    for message in messages:
        blocks = [b for part in message.parts for b in _blocks(part)]
        if message.role == "user":
            blocks.sort(key=lambda b: b["type"] != "tool_result")  # stable: results first
        if not blocks:
            continue
        if out and out[-1]["role"] == message.role:
            merged = out[-1]["content"] + blocks
            if message.role == "user":
                merged.sort(key=lambda b: b["type"] != "tool_result")
            out[-1]["content"] = merged
        else:
            out.append({"role": message.role, "content": blocks})
    return out


def wire_id(call_id: str) -> str:
    """Anthropic tool ids match ^[a-zA-Z0-9_-]+$; other providers' ids may not."""
    return _BAD_ID_CHARS.sub("_", call_id) or "toolu_empty"


def _blocks(part: Part) -> list[Json]:
    if isinstance(part, TextPart):
        return [_with_cache({"type": "text", "text": part.text}, part)] if part.text else []
    if isinstance(part, ImagePart):
        return [_with_cache(image_block(part), part)]
    if isinstance(part, ReasoningPart):
        return _thinking_block(part)
    if isinstance(part, ToolCallPart):
        return [
            _with_cache({"type": "tool_use", "id": wire_id(part.id), "name": part.name, "input": part.arguments}, part)
        ]
    return [_with_cache(_tool_result(part), part)]


def image_block(part: ImagePart) -> Json:
    if part.data:
        return {"type": "image", "source": {"type": "base64", "media_type": part.media_type, "data": part.data}}
    match = _DATA_URL.match(part.url or "")
    if match:
        return {"type": "image", "source": {"type": "base64", "media_type": match.group(1), "data": match.group(2)}}
    return {"type": "image", "source": {"type": "url", "url": part.url}}


def _thinking_block(part: ReasoningPart) -> list[Json]:
    if part.redacted:
        return [{"type": "redacted_thinking", "data": part.redacted}]
    if not part.signature:
        return []  # unsigned reasoning (another provider's): Anthropic would reject it
    return [{"type": "thinking", "thinking": part.text, "signature": part.signature}]


def _tool_result(part: ToolResultPart) -> Json:
    block: Json = {"type": "tool_result", "tool_use_id": wire_id(part.tool_call_id)}
    content = [
        _with_cache({"type": "text", "text": p.text}, p) if isinstance(p, TextPart) else image_block(p)
        for p in part.content
        if not (isinstance(p, TextPart) and not p.text)
    ]
    if content:
        block["content"] = content
    if part.is_error:
        block["is_error"] = True
    return block


def _with_cache(block: Json, part: Part | TextPart) -> Json:
    """Keep an Anthropic client's `cache_control` marker (prompt caching) on its block."""
    control = (part.provider_metadata.get("anthropic") or {}).get("cache_control")
    if control:
        block["cache_control"] = control
    return block
