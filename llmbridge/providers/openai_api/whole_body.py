"""A non-stream `chat.completion` -> the one `chat.completion.chunk` the stream decoder reads.

A whole answer is a chunk whose choices carry `message` instead of `delta`, and whose tool calls
carry no `index` (their order is it). Rewritten so, the stream decoder reads it (`llmbridge.whole_body`
says why); an `{"error": ...}` answered with a 200 goes to it as it is and becomes its error event.
"""

from __future__ import annotations

from typing import Any

from llmbridge.providers.openai_api.decoder import ChatCompletionChunkDecoder
from llmbridge.whole_body import WholeBodyDecoder


def whole_body_decoder() -> WholeBodyDecoder:
    return WholeBodyDecoder(ChatCompletionChunkDecoder(), as_chunks)


def as_chunks(completion: dict[str, Any]) -> list[object]:
    if "error" in completion:
        return [completion]
    choices = completion["choices"]
    if not isinstance(choices, list) or not choices:
        raise ValueError("a completion without choices")
    return [dict(completion, choices=[_as_delta(choice) for choice in choices])]


def _as_delta(choice: dict[str, Any]) -> dict[str, Any]:
    message = choice.get("message") or {}
    delta = dict(message)
    if message.get("tool_calls"):
        delta["tool_calls"] = [dict(call, index=i) for i, call in enumerate(message["tool_calls"])]
    return {"index": choice.get("index", 0), "delta": delta, "finish_reason": choice.get("finish_reason")}
