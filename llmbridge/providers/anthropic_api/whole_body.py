"""A non-stream Anthropic `message` -> the stream events the stream decoder reads.

    message (without content)  -> message_start (id, model, usage)
    each content block         -> content_block_start carrying the whole block (text, thinking with
                                  its signature, redacted_thinking, tool_use with its input)
    stop_reason, stop_sequence -> message_delta

The stream decoder reads whole blocks in `content_block_start` already, so the content blocks are
mapped in one place (`llmbridge.whole_body` says why). A 200 carrying `{"type": "error"}` goes to it
as it is and becomes its error event.
"""

from __future__ import annotations

from typing import Any

from llmbridge.providers.anthropic_api.decoder import AnthropicDecoder
from llmbridge.whole_body import WholeBodyDecoder


def whole_body_decoder() -> WholeBodyDecoder:
    return WholeBodyDecoder(AnthropicDecoder(), as_events)


def as_events(message: dict[str, Any]) -> list[object]:
    if message.get("type") == "error":
        return [message]
    if message.get("type") != "message" or not isinstance(message.get("content"), list):
        raise ValueError(f"an answer of type {message.get('type')!r} without a list of content blocks")
    start = {"type": "message_start", "message": {k: v for k, v in message.items() if k != "content"}}
    blocks = [{"type": "content_block_start", "index": i, "content_block": b} for i, b in enumerate(message["content"])]
    end = {
        "type": "message_delta",
        "delta": {"stop_reason": message.get("stop_reason"), "stop_sequence": message.get("stop_sequence")},
        "usage": {},  # the message's own usage, from message_start, is the whole of it
    }
    return [start, *blocks, end]
