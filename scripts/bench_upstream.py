"""A fast fake OpenAI-compatible upstream for scripts/bench.py (asyncio protocol, HTTP/1.1 keep-alive).

Runs in its own process so it never shares a GIL with the client or the bridge. It answers
`POST .../chat/completions` only, checks the bearer key, and never reads more than it needs:

- no `"stream": true` (the official SDK leaves `stream` out of a non-stream request) -> one
  `chat.completion` JSON body with content-length, as OpenAI sends it;
- `"stream": true`  -> `chat.completion.chunk` SSE (chunked): a role chunk, `--chunks` text chunks,
  a finish chunk, a usage chunk and `[DONE]`. For the model `bench-stream` the first chunk waits
  `--first-chunk-ms` and the others are `--chunk-gap-ms` apart (a model that "thinks"); for any other
  model everything goes out at once (the fastest possible upstream, for latency and throughput).

Prints `listening on <port>` on stdout once it accepts connections.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import signal
import time

SLOW_MODEL = b'"bench-stream"'
# `bench-stamp-<chunks>-<gap ms>`: a stream of that many text chunks, that far apart (the first after
# one gap), each text `w<i>@<CLOCK_MONOTONIC ns when written> `, so the client can tell each chunk's
# delay exactly (the clock is system-wide) whatever the drift of this process's timers.
STAMPED = re.compile(rb'"bench-stamp-(\d+)-(\d+(?:\.\d+)?)"')
TEXT = "The quick brown fox jumps over the lazy dog. "


class Settings:
    def __init__(self, api_key: str, chunks: int, first_chunk_ms: float, chunk_gap_ms: float) -> None:
        self.auth = f"bearer {api_key}".lower().encode()
        self.chunks = chunks
        self.first_delay = first_chunk_ms / 1000
        self.gap = chunk_gap_ms / 1000
        self.json_body = self._json_body()
        self.sse_events = self._sse_events()
        self.sse_all_at_once = b"".join(self.sse_events) + b"0\r\n\r\n"

    def _json_body(self) -> bytes:
        """What OpenAI answers a non-stream request with (every field it sends), so that the bridge's
        non-stream upstream call is measured on a body of the real size and shape."""
        message = {"role": "assistant", "content": TEXT * 2, "refusal": None, "annotations": []}
        usage = {
            "prompt_tokens": 12,
            "completion_tokens": 20,
            "total_tokens": 32,
            "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
            "completion_tokens_details": {
                "reasoning_tokens": 0,
                "audio_tokens": 0,
                "accepted_prediction_tokens": 0,
                "rejected_prediction_tokens": 0,
            },
        }
        body = {
            "id": "chatcmpl-bench",
            "object": "chat.completion",
            "created": 1,
            "model": "bench-fast",
            "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": "stop"}],
            "usage": usage,
            "service_tier": "default",
            "system_fingerprint": "fp_bench",
        }
        return json.dumps(body, indent=2).encode()  # OpenAI's bodies come pretty-printed

    def _sse_events(self) -> list[bytes]:
        base = {"id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": 1, "model": "bench"}
        deltas = [{"role": "assistant", "content": ""}] + [{"content": f"w{i} "} for i in range(self.chunks)]
        chunks = [dict(base, choices=[{"index": 0, "delta": d, "finish_reason": None}]) for d in deltas]
        chunks.append(dict(base, choices=[{"index": 0, "delta": {}, "finish_reason": "stop"}]))
        chunks.append(
            dict(
                base,
                choices=[],
                usage={"prompt_tokens": 12, "completion_tokens": self.chunks, "total_tokens": 12 + self.chunks},
            )
        )
        payloads = [b"data: " + json.dumps(c).encode() + b"\n\n" for c in chunks] + [b"data: [DONE]\n\n"]
        # The first HTTP chunk carries the role chunk and the first text chunk together.
        payloads = [payloads[0] + payloads[1]] + payloads[2:]
        return [b"%x\r\n%s\r\n" % (len(p), p) for p in payloads]


def head(status: str, headers: list[tuple[str, str]]) -> bytes:
    lines = [f"HTTP/1.1 {status}"] + [f"{k}: {v}" for k, v in headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


class UpstreamProtocol(asyncio.Protocol):
    """One connection: parses requests back to back; a slow stream holds later requests until it ends."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None
        self.busy = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        self._serve()

    def _serve(self) -> None:
        while not self.busy and self.transport is not None:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            header_block = bytes(self.buffer[:end]).lower()
            length = _content_length(header_block)
            if len(self.buffer) < end + 4 + length:
                return
            body = bytes(self.buffer[end + 4 : end + 4 + length])
            del self.buffer[: end + 4 + length]
            self._answer(header_block, body)

    def _answer(self, header_block: bytes, body: bytes) -> None:
        assert self.transport is not None
        if b"\r\nauthorization: " + self.settings.auth + b"\r\n" not in header_block + b"\r\n":
            error = b'{"error":{"message":"Incorrect API key provided","type":"invalid_request_error"}}'
            self.transport.write(
                head("401 Unauthorized", [("content-type", "application/json"), ("content-length", str(len(error)))])
                + error
            )
            return
        compact = body.replace(b" ", b"")
        if b'"stream":true' not in compact:
            data = self.settings.json_body
            self.transport.write(
                head("200 OK", [("content-type", "application/json"), ("content-length", str(len(data)))]) + data
            )
            return
        sse_head = head("200 OK", [("content-type", "text/event-stream"), ("transfer-encoding", "chunked")])
        if stamped := STAMPED.search(compact):
            self.transport.write(sse_head)
            self.busy = True
            chunks, gap = int(stamped.group(1)), float(stamped.group(2)) / 1000
            asyncio.get_running_loop().create_task(self._stamped_stream(chunks, gap))
            return
        if SLOW_MODEL not in compact:
            self.transport.write(sse_head + self.settings.sse_all_at_once)
            return
        self.transport.write(sse_head)
        self.busy = True
        asyncio.get_running_loop().create_task(self._slow_stream())

    async def _slow_stream(self) -> None:
        await asyncio.sleep(self.settings.first_delay)
        for event in self.settings.sse_events:
            if self.transport is None:
                return
            self.transport.write(event)
            if self.settings.gap:
                await asyncio.sleep(self.settings.gap)
        if self.transport is not None:
            self.transport.write(b"0\r\n\r\n")
        self.busy = False
        self._serve()

    async def _stamped_stream(self, chunks: int, gap: float) -> None:
        """Role chunk, `chunks` stamped text chunks `gap` apart, finish, usage, [DONE]."""
        loop = asyncio.get_running_loop()
        start = loop.time()
        self._write_event({"role": "assistant", "content": ""})
        for i in range(chunks):
            await asyncio.sleep(max(0.0, start + (i + 1) * gap - loop.time()))  # on schedule, no drift
            if self.transport is None:
                return
            self._write_event({"content": f"w{i}@{time.monotonic_ns()} "})
        self._write_event({}, finish="stop")
        if self.transport is not None:
            self.transport.write(self.settings.sse_events[-2] + self.settings.sse_events[-1] + b"0\r\n\r\n")
        self.busy = False
        self._serve()

    def _write_event(self, delta: dict[str, str], finish: str | None = None) -> None:
        if self.transport is None:
            return
        chunk = {
            "id": "chatcmpl-bench",
            "object": "chat.completion.chunk",
            "created": 1,
            "model": "bench",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }
        payload = b"data: " + json.dumps(chunk).encode() + b"\n\n"
        self.transport.write(b"%x\r\n%s\r\n" % (len(payload), payload))


def _content_length(header_block: bytes) -> int:
    start = header_block.find(b"\r\ncontent-length:")
    if start < 0:
        return 0
    start += len(b"\r\ncontent-length:")
    end = header_block.find(b"\r\n", start)
    return int(header_block[start : end if end >= 0 else None].strip())


async def serve(args: argparse.Namespace) -> None:
    settings = Settings(args.api_key, args.chunks, args.first_chunk_ms, args.chunk_gap_ms)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: UpstreamProtocol(settings), "127.0.0.1", args.port, backlog=1024)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"listening on {server.sockets[0].getsockname()[1]}", flush=True)
    await stop.wait()
    server.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--api-key", default="sk-bench-upstream")
    parser.add_argument("--chunks", type=int, default=20)
    parser.add_argument("--first-chunk-ms", type=float, default=10.0)
    parser.add_argument("--chunk-gap-ms", type=float, default=1.0)
    asyncio.run(serve(parser.parse_args()))


if __name__ == "__main__":
    main()
