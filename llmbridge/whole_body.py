"""A non-stream upstream answer (one JSON body) -> the canonical events a stream of it would give.

Why: the API-key providers answer a non-stream request with one JSON document, and a non-stream
client request goes to them as one (the bridge sends only what the client asked for; parsing one
body costs far less CPU than the ~20 SSE events of the same answer). The peek, the answer and the
recorder read every upstream body through the `StreamDecoder` interface, so a whole-body decoder
fits it: `feed` only buffers (nothing can be decoded before the body is whole) and `close` decodes.
Failover, translation, usage and recording then stay one path for both kinds of answer.

No second mapping to canonical events: each provider rewrites its whole answer into the stream
events its own stream decoder reads (`AsStream`: OpenAI's `message` becomes a chunk's `delta`,
Anthropic's content blocks become `content_block_start` events, Gemini's answer already has a
chunk's shape), so finish reasons, usage, cached tokens and signatures are read in one place.

A whole answer must be one JSON object that says how it ended (a finish reason, or an error
object); anything else is one `upstream_protocol_error` (502), as a malformed stream is.
"""

from __future__ import annotations

from typing import Any, Callable

from llmbridge.canonical import StreamEvent
from llmbridge.sse import JsonEventStreamDecoder, SSEProtocolError, parse_json

# A provider's whole answer (a JSON object) -> the stream events (JSON values) its stream decoder reads.
AsStream = Callable[[dict[str, Any]], list[object]]
SHAPE_ERRORS = (AttributeError, TypeError, ValueError, KeyError, IndexError)


class WholeBodyDecoder:
    """A `StreamDecoder` for one non-stream upstream answer, decoded by `stream` (the provider's
    stream decoder, fresh) after `as_stream` has rewritten it into stream events."""

    def __init__(self, stream: JsonEventStreamDecoder, as_stream: AsStream) -> None:
        self.stream = stream
        stream.malformed = "a malformed answer"
        self.as_stream = as_stream
        self._body = bytearray()
        self._closed = False

    def feed(self, data: bytes) -> list[StreamEvent]:
        self._body += data
        return []

    def close(self) -> list[StreamEvent]:
        if self._closed:
            return []
        self._closed = True
        answer, problem = _parse(bytes(self._body))
        if answer is None:
            return self.stream.protocol_error(problem)
        try:
            values = self.as_stream(answer)
        except SHAPE_ERRORS as e:
            return self.stream.protocol_error(f"an answer of a shape it cannot have ({type(e).__name__}: {e})")
        events: list[StreamEvent] = []
        for value in values:
            events += self.stream.decode(value)
            if self.stream.broken:
                return events
        if not self.stream.finished and not self.stream.failed:
            events += self.stream.protocol_error("an answer that does not say how it ended (no finish reason)")
        return events


def _parse(body: bytes) -> tuple[dict[str, Any] | None, str]:
    """The answer as a JSON object, else None and what is wrong with it."""
    try:
        text = body.decode()
    except UnicodeDecodeError as e:
        return None, f"bytes that are not UTF-8 text at byte {e.start}"
    try:
        value = parse_json(text)
    except SSEProtocolError as e:
        return None, str(e)
    except ValueError:
        return None, f"a body that is not JSON ({text[:60]!r})" if text.strip() else "an empty body"
    if not isinstance(value, dict):
        return None, f"a body that is not a JSON object ({type(value).__name__})"
    return value, ""
