"""A local estimate of a request's input tokens, for count_tokens when the upstream cannot count.

The heuristic: about 4 characters per token (the usual figure for English text and code with BPE
tokenizers) over everything the model reads: the system prompt, every message part, and each tool's
name, description and JSON schema; plus a few tokens of framing per message and per tool, and a fixed
cost per image (a ~1 megapixel image is about 1,600 tokens with Claude and 258-1,290 with Gemini).
It is an estimate: expect +/-20% on prose, more on unusual scripts.
"""

from __future__ import annotations

import json
import math
from typing import Any

from llmbridge.canonical import (
    ChatRequest,
    ImagePart,
    Part,
    ReasoningPart,
    TextPart,
    ToolCallPart,
    ToolResultPart,
)

CHARS_PER_TOKEN = 4
IMAGE_TOKENS = 1000
MESSAGE_OVERHEAD = 4  # role markers and separators
TOOL_OVERHEAD = 8


def _json_chars(value: Any) -> int:
    return len(json.dumps(value, ensure_ascii=False, separators=(",", ":")))


def _part_chars(part: Part | TextPart | ImagePart) -> tuple[int, int]:
    """(characters, images) in one part."""
    match part:
        case TextPart():
            return len(part.text), 0
        case ReasoningPart():
            return len(part.text), 0
        case ImagePart():
            return 0, 1
        case ToolCallPart():
            return len(part.name) + _json_chars(part.arguments), 0
        case ToolResultPart():
            counts = [_part_chars(p) for p in part.content]
            return sum(c for c, _ in counts), sum(i for _, i in counts)
    return 0, 0


def estimate_system_and_tools(request: ChatRequest) -> int:
    """The estimate for the system prompt and the tool declarations alone (for upstreams whose
    token counter takes only the messages)."""
    chars = sum(len(p.text) for p in request.system)
    for tool in request.tools:
        chars += len(tool.name) + len(tool.description) + _json_chars(tool.parameters)
    return math.ceil(chars / CHARS_PER_TOKEN) + TOOL_OVERHEAD * len(request.tools)


def estimate_input_tokens(request: ChatRequest) -> int:
    chars = images = 0
    for message in request.messages:
        for part in message.parts:
            part_chars, part_images = _part_chars(part)
            chars += part_chars
            images += part_images
    messages = math.ceil(chars / CHARS_PER_TOKEN) + images * IMAGE_TOKENS + MESSAGE_OVERHEAD * len(request.messages)
    return messages + estimate_system_and_tools(request)
