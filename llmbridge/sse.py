"""Incremental Server-Sent Events decoding and encoding.

Why our own decoder: httpx-sse parses only from an httpx response iterator, and its line decoder is
private; our providers' decoders must be plain `feed(bytes)` objects that tests drive with recorded
bytes split at arbitrary points (even inside a UTF-8 sequence or between CR and LF). This follows the
WHATWG event-stream parsing rules: lines end in CRLF, LF or CR; `data` lines of one event join with
"\\n"; a blank line dispatches; lines starting with ":" are comments.

An event stream is UTF-8 text. Bytes that are not UTF-8, or control characters other than tab and the
line ends (binary data where events should be), are not the protocol: `SSEProtocolError`, never a
silent U+FFFD or a skipped line. (Lines with a field name the spec does not know are ignored, as the
spec says.)
"""

from __future__ import annotations

import codecs
import json
import re
from dataclasses import dataclass

from llmbridge.canonical import StreamError, StreamEvent
from llmbridge.hostile import lone_surrogate_path

_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


class SSEProtocolError(ValueError):
    """The bytes are not an event stream (not UTF-8, or binary control characters). `events`: the
    events completed before the fault in the same chunk."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.events: list[ServerSentEvent] = []


@dataclass
class ServerSentEvent:
    data: str
    event: str = "message"
    id: str | None = None
    retry: int | None = None


class SSEDecoder:
    def __init__(self) -> None:
        self._text = codecs.getincrementaldecoder("utf-8")()  # strict: see the module docstring
        self._offset = 0  # bytes decoded so far, to say where a fault is
        self._pending = ""  # text after the last line break
        self._data: list[str] = []
        self._event = ""
        self._id: str | None = None
        self._retry: int | None = None
        self._has_data = False

    def feed(self, chunk: bytes) -> list[ServerSentEvent]:
        """The events the chunk completes. SSEProtocolError at bytes that are not the protocol; the
        events completed before them in the same chunk are on the exception (`events`)."""
        text, fault = self._decode(chunk)
        events = self._lines(text)
        if fault is not None:
            fault.events = events
            raise fault
        return events

    def close(self) -> list[ServerSentEvent]:
        """End of stream: a final event not followed by a blank line is still delivered, as the
        official Gemini CLI parser does; the spec would drop it, but real servers rely on it."""
        text, fault = self._decode(b"", final=True)
        if fault is not None:
            raise fault
        events = self._lines(text)
        if self._pending:
            events += self._line(self._pending)
            self._pending = ""
        if self._has_data:
            events.append(self._dispatch())
        return events

    def _decode(self, chunk: bytes, final: bool = False) -> tuple[str, SSEProtocolError | None]:
        """The text of the chunk up to the first fault, and the fault."""
        fault = None
        try:
            text = self._text.decode(chunk, final)
        except UnicodeDecodeError as e:
            # e.start counts from the bytes the decoder held back plus this chunk: decode the good part
            held = len(self._text.getstate()[0])
            good = max(0, e.start - held)
            at = self._offset + good
            fault = SSEProtocolError(f"bytes that are not UTF-8 text at byte {at} ({chunk[good : good + 8]!r})")
            self._text.reset()
            text = (e.object[: e.start]).decode("utf-8", "replace") if e.start else ""
        control = _CONTROL.search(text)
        if control:
            fault = SSEProtocolError(f"a control character {control.group()!r} in the event stream (binary data)")
            text = text[: control.start()]
        self._offset += len(chunk)
        return text, fault

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


def _not_json(name: str) -> object:
    raise ValueError(f"{name} is not a JSON value")


def parse_json(text: str) -> object:
    """One JSON value as the protocol allows it: ValueError when `text` is not JSON (NaN and nesting
    too deep included); SSEProtocolError when it holds text that is not valid Unicode (a lone
    surrogate), which no client could be sent."""
    try:
        value = json.loads(text, parse_constant=_not_json)
    except RecursionError as e:
        raise ValueError("JSON nested too deep") from e
    if "\\u" in text:
        where = lone_surrogate_path(text, value)
        if where is not None:
            path = ".".join(str(step) for step in where)
            raise SSEProtocolError(f"text that is not valid Unicode (a lone surrogate) at '{path}'")
    return value


class JsonEventStreamDecoder:
    """Base of the providers' stream decoders whose upstream sends one JSON value per SSE event
    (OpenAI-compatible, Anthropic, Code Assist / Gemini): SSE framing, JSON parsing and the check
    that the stream finished are here; a subclass turns each JSON value into canonical events and
    sets `finished` (or `failed`) as the upstream says.

    An answer that breaks the protocol is an error, never an answer: bytes that are not an event
    stream, an event whose data is not JSON (and not a sentinel the subclass knows, such as OpenAI's
    `[DONE]`), JSON that is not an object where one is due, NaN, text holding a lone surrogate, or a
    value of a shape the subclass cannot read. The first such fault is one `StreamError` of kind
    `upstream_protocol_error` (502), and nothing after it is decoded: a `[DONE]` that follows garbage
    does not make an empty answer a success."""

    cut_message = "the upstream stream ended before the response was complete"
    service = "the upstream"  # how protocol errors name the upstream
    malformed = "a malformed stream"  # what protocol errors call the body ("a malformed answer": whole bodies)

    def __init__(self) -> None:
        self._sse = SSEDecoder()
        self.finished = False
        self.failed = False
        self.broken = False  # the stream broke the protocol: nothing more is decoded

    def feed(self, data: bytes) -> list[StreamEvent]:
        if self.broken:
            return []
        try:
            return self._events(self._sse.feed(data))
        except SSEProtocolError as e:
            events = self._events(e.events)  # what the chunk held before the fault
            return events if self.broken else events + self.protocol_error(str(e))

    def close(self) -> list[StreamEvent]:
        if self.broken:
            return []
        try:
            events = self._events(self._sse.close())
        except SSEProtocolError as e:
            return self.protocol_error(str(e))
        if not self.finished and not self.failed:
            self.failed = True
            events.append(StreamError(kind="upstream_unavailable", status=502, message=self.cut_message))
        return events

    def _events(self, sse_events: list[ServerSentEvent]) -> list[StreamEvent]:
        events: list[StreamEvent] = []
        for sse in sse_events:
            events += self._data(sse.data)
            if self.broken:
                break
        return events

    def protocol_error(self, problem: str) -> list[StreamEvent]:
        """The one error event of a stream that broke the protocol; decoding stops here."""
        self.failed = self.broken = True
        message = f"{self.service} answered with {self.malformed}: {problem}"
        return [StreamError(kind="upstream_protocol_error", status=502, message=message)]

    def _data(self, data: str) -> list[StreamEvent]:
        try:
            value = parse_json(data)
        except ValueError:
            return self.on_text(data)
        except SSEProtocolError as e:
            return self.protocol_error(str(e))
        return self.decode(value)

    def decode(self, value: object) -> list[StreamEvent]:
        """One parsed JSON value of the stream -> canonical events (`on_json`); a value of a shape
        the subclass cannot read is a protocol error. Whole-body decoders (`llmbridge.whole_body`)
        call this with the stream events they rewrote a whole answer into."""
        try:
            return self.on_json(value)
        except (AttributeError, TypeError, ValueError, KeyError, IndexError) as e:
            return self.protocol_error(f"an event of a shape it cannot have ({type(e).__name__}: {e})")

    def on_text(self, data: str) -> list[StreamEvent]:
        """An event whose data is not JSON: a protocol error, unless it is blank (keep-alive noise)
        or a subclass knows it (`[DONE]`)."""
        if not data.strip():
            return []
        return self.protocol_error(f"an event whose data is not JSON ({data[:60]!r})")

    def on_json(self, value: object) -> list[StreamEvent]:
        raise NotImplementedError
