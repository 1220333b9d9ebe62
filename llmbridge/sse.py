"""Incremental Server-Sent Events decoding and encoding.

Why our own decoder: httpx-sse parses only from an httpx response iterator, and its line decoder is
private; our providers' decoders must be plain `feed(bytes)` objects that tests drive with recorded
bytes split at arbitrary points (even inside a UTF-8 sequence or between CR and LF). This follows the
WHATWG event-stream parsing rules: lines end in CRLF, LF or CR; `data` lines of one event join with
"\\n"; a blank line dispatches; lines starting with ":" are comments.
"""

from __future__ import annotations

import codecs
import json
from dataclasses import dataclass

from llmbridge.canonical import StreamError, StreamEvent


@dataclass
class ServerSentEvent:
    data: str
    event: str = "message"
    id: str | None = None
    retry: int | None = None


class SSEDecoder:
    def __init__(self) -> None:
        self._text = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._pending = ""  # text after the last line break
        self._data: list[str] = []
        self._event = ""
        self._id: str | None = None
        self._retry: int | None = None
        self._has_data = False

    def feed(self, chunk: bytes) -> list[ServerSentEvent]:
        return self._lines(self._text.decode(chunk))

    def close(self) -> list[ServerSentEvent]:
        """End of stream: a final event not followed by a blank line is still delivered, as the
        official Gemini CLI parser does; the spec would drop it, but real servers rely on it."""
        events = self._lines(self._text.decode(b"", final=True))
        if self._pending:
            events += self._line(self._pending)
            self._pending = ""
        if self._has_data:
            events.append(self._dispatch())
        return events

    def _lines(self, text: str) -> list[ServerSentEvent]:
        if not text:
            return []
        text = self._pending + text
        events: list[ServerSentEvent] = []
        start = 0
        length = len(text)
        while True:
            cr = text.find("\r", start)
            lf = text.find("\n", start)
            if cr == -1 and lf == -1:
                break
            end = lf if cr == -1 else cr if lf == -1 else min(cr, lf)
            if text[end] == "\r":
                if end + 1 == length:  # a CR at the end may be half of CRLF: wait for more
                    break
                nxt = end + 2 if text[end + 1] == "\n" else end + 1
            else:
                nxt = end + 1
            events += self._line(text[start:end])
            start = nxt
        self._pending = text[start:]
        return events

    def _line(self, line: str) -> list[ServerSentEvent]:
        if not line:
            return [self._dispatch()] if self._has_data else self._reset()
        if line.startswith(":"):
            return []
        name, sep, value = line.partition(":")
        if sep and value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._data.append(value)
            self._has_data = True
        elif name == "event":
            self._event = value
        elif name == "id" and "\0" not in value:
            self._id = value
        elif name == "retry" and value.isdigit():
            self._retry = int(value)
        return []

    def _reset(self) -> list[ServerSentEvent]:
        self._event = ""
        return []

    def _dispatch(self) -> ServerSentEvent:
        event = ServerSentEvent(
            data="\n".join(self._data), event=self._event or "message", id=self._id, retry=self._retry
        )
        self._data = []
        self._event = ""
        self._has_data = False
        return event


def encode_event(data: str | bytes, event: str | None = None) -> bytes:
    """One SSE event; multi-line data becomes several data lines."""
    if isinstance(data, bytes):
        data = data.decode()
    head = f"event: {event}\n" if event else ""
    body = "".join(f"data: {line}\n" for line in data.split("\n"))
    return (head + body + "\n").encode()


class JsonEventStreamDecoder:
    """Base of the providers' stream decoders whose upstream sends one JSON value per SSE event
    (OpenAI-compatible, Anthropic, Code Assist / Gemini): SSE framing, JSON parsing and the check
    that the stream finished are here; a subclass turns each JSON value into canonical events and
    sets `finished` (or `failed`) as the upstream says."""

    cut_message = "the upstream stream ended before the response was complete"

    def __init__(self) -> None:
        self._sse = SSEDecoder()
        self.finished = False
        self.failed = False

    def feed(self, data: bytes) -> list[StreamEvent]:
        return [e for sse in self._sse.feed(data) for e in self._data(sse.data)]

    def close(self) -> list[StreamEvent]:
        events = [e for sse in self._sse.close() for e in self._data(sse.data)]
        if not self.finished and not self.failed:
            self.failed = True
            events.append(StreamError(kind="upstream_unavailable", status=502, message=self.cut_message))
        return events

    def _data(self, data: str) -> list[StreamEvent]:
        try:
            value = json.loads(data)
        except ValueError:
            return self.on_text(data)
        return self.on_json(value)

    def on_text(self, data: str) -> list[StreamEvent]:
        """An event whose data is not JSON (`[DONE]`, keep-alive noise): ignored unless overridden."""
        return []

    def on_json(self, value: object) -> list[StreamEvent]:
        raise NotImplementedError
