"""Provider bytes -> canonical events -> client bytes, for one response. Pure: no I/O.

The relay feeds it upstream chunks as they arrive and sends what it returns to the client. It keeps
the raw upstream bytes and accumulates the events, so the recorder sees exactly what crossed both
edges. Tests feed it recorded bytes split at random points.
"""

from __future__ import annotations

from llmbridge.accumulate import StreamAccumulator
from llmbridge.canonical import ChatResult, StreamError, StreamEvent
from llmbridge.errors import BridgeError
from llmbridge.formats.base import StreamRenderer
from llmbridge.providers.base import StreamDecoder


class Translation:
    def __init__(
        self,
        decoder: StreamDecoder,
        renderer: StreamRenderer | None,
        accumulator: StreamAccumulator,
        keep_raw: bytearray | None = None,
    ) -> None:
        self.decoder = decoder
        self.renderer = renderer  # None for non-stream clients: only the accumulator is fed
        self.accumulator = accumulator
        self.raw = keep_raw if keep_raw is not None else bytearray()
        self.closed = False

    def start(self) -> bytes:
        return self.renderer.start() if self.renderer else b""

    def feed(self, chunk: bytes) -> bytes:
        self.raw += chunk
        return self._emit(self.decoder.feed(chunk))

    def replay(self, raw: bytes, events: list[StreamEvent]) -> bytes:
        """What the bridge already read and decoded while peeking at the start of the answer."""
        self.raw += raw
        return self._emit(events)

    def close(self) -> bytes:
        """End of the upstream body: flush the decoder and end the client stream. Renderers know
        whether they already sent an error, and end their stream accordingly."""
        if self.closed:
            return b""
        self.closed = True
        out = self._emit(self.decoder.close())
        if self.renderer:
            out += self.renderer.close()
        return out

    def fail(self, error: BridgeError) -> bytes:
        """The upstream died mid-stream: record it and tell the client in its dialect."""
        self.closed = True
        self.accumulator.feed(StreamError(kind=error.kind, message=error.message, status=error.status))
        return self.renderer.error(error) if self.renderer else b""

    def _emit(self, events: list[StreamEvent]) -> bytes:
        if not events:
            return b""
        out = bytearray()
        for event in events:
            self.accumulator.feed(event)
            if self.renderer:
                out += self.renderer.feed(event)
        return bytes(out)

    def result(self) -> ChatResult:
        return self.accumulator.result()
