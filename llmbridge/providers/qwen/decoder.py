"""Qwen's chat.completion.chunk stream -> canonical events: the OpenAI-compatible decoder, plus the
quirks Qwen Code's converter handles:

* `delta.reasoning_content` is reasoning (the base decoder already reads it);
* tool-call arguments arrive as fragments keyed by `index`, the id and name only in the first (the
  base decoder joins them);
* DashScope sometimes sends *cumulative* `delta.content` (the whole text so far) instead of
  increments. The stream's mode is decided once, at its second piece of content: cumulative when that
  piece is longer than the first and starts with it. In that mode only what is new is passed on; a
  piece that does not continue the text is taken as an increment;
* `<think>...</think>` that a model leaks into `content` is reasoning, even when a tag is split across
  chunks; the newlines that follow a closing tag are dropped.
"""

from __future__ import annotations

from typing import Any

from llmbridge.canonical import ReasoningDelta, StreamEvent, TextDelta
from llmbridge.providers.openai_api.decoder import ChatCompletionChunkDecoder

OPEN_TAG, CLOSE_TAG = "<think>", "</think>"


class ThinkSplitter:
    """Splits content into (is_reasoning, text) runs at `<think>` / `</think>`, holding back a tail
    that may be the start of a tag until the next piece shows whether it is one."""

    def __init__(self) -> None:
        self.inside = False
        self.pending = ""
        self.after_close = False  # drop the newlines that follow a closing tag

    def feed(self, text: str) -> list[tuple[bool, str]]:
        buffer, runs = self.pending + text, []
        while True:
            tag = CLOSE_TAG if self.inside else OPEN_TAG
            at = buffer.find(tag)
            if at < 0:
                keep = _partial_tag(buffer, tag)
                runs += self._run(buffer[: len(buffer) - keep])
                self.pending = buffer[len(buffer) - keep :]
                return runs
            runs += self._run(buffer[:at])
            buffer = buffer[at + len(tag) :]
            self.after_close = self.inside
            self.inside = not self.inside

    def flush(self) -> list[tuple[bool, str]]:
        runs, self.pending = self._run(self.pending), ""
        return runs

    def _run(self, text: str) -> list[tuple[bool, str]]:
        if self.after_close and not self.inside:
            text = text.lstrip("\r\n")
            self.after_close = not text
        return [(self.inside, text)] if text else []


def _partial_tag(text: str, tag: str) -> int:
    """How many characters at the end of `text` could begin `tag`."""
    for size in range(min(len(tag) - 1, len(text)), 0, -1):
        if text.endswith(tag[:size]):
            return size
    return 0


class QwenChunkDecoder(ChatCompletionChunkDecoder):
    service = "Qwen"

    def __init__(self) -> None:
        super().__init__()
        self.content_so_far = ""
        self.pieces = 0
        self.cumulative = False
        self.think = ThinkSplitter()

    def _choice(self, choice: dict[str, Any]) -> list[StreamEvent]:
        delta = choice.get("delta") or {}
        events: list[StreamEvent] = []
        reasoning = delta.get("reasoning_content") or delta.get("reasoning")
        if reasoning:
            events.append(ReasoningDelta(text=reasoning))
        if delta.get("content"):
            events += _events(self.think.feed(self._new_content(delta["content"])))
        if choice.get("finish_reason"):
            events += _events(self.think.flush())
        rest = {"delta": {"tool_calls": delta.get("tool_calls")}, "finish_reason": choice.get("finish_reason")}
        return events + super()._choice(rest)

    def close(self) -> list[StreamEvent]:
        return _events(self.think.flush()) + super().close()

    def _new_content(self, content: str) -> str:
        """What this piece of content adds to the text so far (see the module docstring)."""
        seen = self.content_so_far
        self.pieces += 1
        if self.pieces == 2:
            self.cumulative = len(content) > len(seen) and content.startswith(seen)
        if self.cumulative and content.startswith(seen):
            self.content_so_far = content
            return content[len(seen) :]
        if self.cumulative and seen.startswith(content):
            return ""  # a repeat of text already passed on
        self.content_so_far = seen + content
        return content


def _events(runs: list[tuple[bool, str]]) -> list[StreamEvent]:
    return [ReasoningDelta(text=text) if reasoning else TextDelta(text=text) for reasoning, text in runs]
