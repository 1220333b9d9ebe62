"""A non-stream Gemini `GenerateContentResponse` -> canonical events.

The whole answer of `models/{model}:generateContent` has the shape of one chunk of the stream (the
candidates with all their parts, usage, finish reason), so the stream decoder reads it as it is
(`llmbridge.whole_body` says why); so does an `{"error": google.rpc.Status}` answered with a 200.
"""

from __future__ import annotations

from typing import Any

from llmbridge.providers.google.decoder import Classify, GeminiDecoder
from llmbridge.whole_body import WholeBodyDecoder


def whole_body_decoder(classify: Classify) -> WholeBodyDecoder:
    return WholeBodyDecoder(GeminiDecoder(classify), as_chunks)


def as_chunks(answer: dict[str, Any]) -> list[object]:
    return [answer]
