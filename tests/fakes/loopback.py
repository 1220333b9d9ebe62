"""What every fake upstream shares: a threaded HTTP server on 127.0.0.1 (any free port) that stops
with its `with` block, and a queue of scripted replies."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Generic, Self, TypeVar

ReplyT = TypeVar("ReplyT")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 512  # listen backlog: load tests open hundreds of connections at once


class LoopbackFake(Generic[ReplyT]):
    def __init__(self) -> None:
        self.replies: list[ReplyT] = []
        # When set, chooses the reply from the request body before the queue is looked at (None: use
        # the queue): for real clients, whose side requests arrive in no fixed order.
        self.responder: Callable[[Any], ReplyT | None] | None = None
        self.lock = threading.Lock()
        self.server = _Server(("127.0.0.1", 0), self._handler())
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def enqueue(self, *replies: ReplyT) -> None:
        with self.lock:
            self.replies.extend(replies)

    def pop_reply(self, body: Any = None) -> ReplyT | None:
        if self.responder is not None and (chosen := self.responder(body)) is not None:
            return chosen
        with self.lock:
            return self.replies.pop(0) if self.replies else None

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        raise NotImplementedError

    def __enter__(self) -> Self:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()
