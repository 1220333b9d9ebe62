"""Capture mode: `mitmdump -s addons/capture.py` records an official client's own upstream traffic
into the bridge's SQLite database (table `captures`), secrets redacted by structure
(`llmbridge.capture`). Nothing is changed on the way: the client talks to the real service.

Two ways to put it in front of a client (README, "Capture mode"):

    # reverse proxy behind the client's endpoint override (Gemini CLI: CODE_ASSIST_ENDPOINT)
    mitmdump -s addons/capture.py --mode reverse:https://cloudcode-pa.googleapis.com -p 8419
    CODE_ASSIST_ENDPOINT=http://127.0.0.1:8419 gemini

    # regular proxy, mitmproxy's CA trusted by Node
    mitmdump -s addons/capture.py -p 8419
    HTTPS_PROXY=http://127.0.0.1:8419 NODE_EXTRA_CA_CERTS=~/.mitmproxy/mitmproxy-ca-cert.pem qwen

Options: `capture_db` (default: the `database` of the bridge config in force), `capture_source`
(default `captured`; `llmbridge drift` compares one source with another), `capture_session` (default:
a new id per run). The request headers are taken in the `requestheaders` hook, before mitmproxy
changes anything, so their order and case are the client's.
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path
from typing import Any

from mitmproxy import ctx, http

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without install

from llmbridge.capture import Captured, CaptureStore  # noqa: E402
from llmbridge.config import find_config, load_config  # noqa: E402

log = logging.getLogger(__name__)
_HEADERS = "llmbridge_capture_headers"
_STARTED = "llmbridge_capture_started"


class Capture:
    def __init__(self) -> None:
        self.store: CaptureStore | None = None

    def load(self, loader: Any) -> None:
        loader.add_option("capture_db", str, "", "Database to write captures to (default: the bridge's).")
        loader.add_option("capture_source", str, "captured", "Label of the captured traffic (drift compares two).")
        loader.add_option("capture_session", str, "", "Session id of this capture run (default: a new one).")

    def running(self) -> None:
        path = ctx.options.capture_db or load_config(find_config(None)).database
        self.store = CaptureStore(path, ctx.options.capture_source, ctx.options.capture_session or None)
        log.warning(f"capture: recording to {path} (source {self.store.source!r}, session {self.store.session})")

    def requestheaders(self, flow: http.HTTPFlow) -> None:
        fields = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in flow.request.headers.fields]
        flow.metadata[_HEADERS] = fields
        flow.metadata[_STARTED] = time.time()

    def response(self, flow: http.HTTPFlow) -> None:
        self._record(flow, None)

    def error(self, flow: http.HTTPFlow) -> None:
        self._record(flow, str(flow.error) if flow.error else "error")

    def _record(self, flow: http.HTTPFlow, error: str | None) -> None:
        if self.store is None:
            return
        started = float(flow.metadata.get(_STARTED) or flow.request.timestamp_start)
        response = flow.response
        item = Captured(
            method=flow.request.method,
            url=flow.request.pretty_url,
            request_headers=flow.metadata.get(_HEADERS) or [],
            request_body=flow.request.get_content(strict=False) or b"",
            status=response.status_code if response else None,
            response_headers=[(k.decode("latin-1"), v.decode("latin-1")) for k, v in response.headers.fields]
            if response
            else [],
            response_body=(response.get_content(strict=False) or b"") if response else b"",
            started=started,
            duration_ms=(time.time() - started) * 1000,
            error=error,
        )
        try:
            self.store.record(item)
        except Exception as e:  # a capture that cannot write must say so
            log.error(f"capture: cannot record {flow.request.pretty_url}: {e!r}")

    def done(self) -> None:
        if self.store is not None:
            self.store.close()


addons = [Capture()]
