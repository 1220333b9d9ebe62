"""llmbridge as a mitmproxy addon: `mitmdump -s addons/openai_bridge.py`.

Serves OpenAI, Anthropic and Gemini APIs in reverse-proxy mode and answers them from the configured
accounts. The only module that imports mitmproxy: each hook hands the flow to the plain-Python core
(`llmbridge.bridge`) and sets `flow.*` from what it returns.

Safe defaults, applied unless you set the option yourself: listen on 127.0.0.1:8418, reverse mode to
a dead target (an untranslated request can never leave the machine), lazy upstream connections,
HTTP/1.1, a confdir of the bridge's own, and no per-flow console output (ours is one line per exchange
with no secrets).

mitmdump binds its listeners before it loads this script, so a bare `mitmdump -s` listens for a moment
on mitmproxy's own default (a regular proxy on *:8080) until `running` moves the servers. `llmbridge
serve` (and `scripts/serve`) give the same defaults on the command line, so they hold from the start.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import socket
import sys
from collections.abc import Callable, Generator
from pathlib import Path
from typing import Any

from mitmproxy import addonmanager, connection, ctx, exceptions, http
from mitmproxy.net.http import http1
from mitmproxy.proxy import commands, events
from mitmproxy.proxy.layers.http import _http1
from mitmproxy.utils import human

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without install

from llmbridge.answer import Answer, BufferedSink, DeferredAnswer  # noqa: E402
from llmbridge.app import BridgeApp, SecretFilter  # noqa: E402
from llmbridge.bridge import IncomingRequest  # noqa: E402
from llmbridge.config import DEAD_TARGET, DEFAULT_HOST, DEFAULT_PORT, data_dir, find_config  # noqa: E402
from llmbridge.errors import ConfigError  # noqa: E402
from llmbridge.redact import SECRET_HEADERS, redact_url  # noqa: E402
from llmbridge.responses import LocalResponse  # noqa: E402

log = logging.getLogger(__name__)
# mitmproxy logs every connection at INFO ("client connect", "server connect", "Streaming response
# from …"); the bridge's console is one line per exchange, so these show only with termlog_verbosity=debug.
CONNECTION_LOGGER = "mitmproxy.proxy.server"
# Built-in addons that do nothing unless their option is set. mitmproxy offers every event to every
# addon, which costs about a quarter of the bridge's CPU per request (scripts/bench); idle ones are
# taken out of the chain at startup. Setting the option on the command line keeps the addon.
IDLE_UNLESS_SET = {
    "save": "save_stream_file",
    "savehar": "hardump",
    "upstreamauth": "upstream_auth",
    "blocklist": "block_list",
    "anticache": "anticache",
    "anticomp": "anticomp",
    "stickyauth": "stickyauth",
    "stickycookie": "stickycookie",
    "serverplayback": "server_replay",
    "mapremote": "map_remote",
    "maplocal": "map_local",
    "modifybody": "modify_body",
    "modifyheaders": "modify_headers",
    "onboarding": "onboarding",
    "proxyauth": "proxyauth",
    "dumper": "flow_detail",  # prints nothing at flow_detail 0 (the bridge's default)
}
INTERNAL_ERROR = b'{"error":{"message":"internal error in the bridge; see its log","type":"server_error"}}'
# A request refused from its headers whose body is at most this long is answered the ordinary way
# (mitmproxy reads the little body, then sends the answer; the connection stays open). A longer or
# unbounded body is never read: the answer goes out at once and the connection is closed.
READ_REFUSED_BODY_UP_TO = 64 * 1024
# After the shutdown grace period: how long the answers told to end get to do so (each writes its
# error and is recorded; hundreds at once take a second or two of CPU on a small machine).
CUT_OFF_SECONDS = 5.0
# Connections the kernel holds for the bridge before it accepts them. asyncio (so mitmproxy) listens
# with 100: 500 clients connecting at once (scripts/bench --many-streams 500) saw SYNs dropped and
# resent a second later. The kernel caps this at net.core.somaxconn.
LISTEN_BACKLOG = 1024
SECRET_HEADER_BYTES = frozenset(name.encode() for name in SECRET_HEADERS)
# mitmproxy's error messages for a client that went away, or a flow the bridge itself ended: no answer.
CLIENT_GONE_ERRORS = ("Client disconnected", "Connection killed", "killed")
# mitmproxy's messages for a request it refused as malformed: a 400.
MALFORMED_REQUEST_ERRORS = ("HTTP/1 protocol error", "Received ", "Invalid request scheme", "HTTP request has no host")


def _json_error_response(status_code: int, message: str = "") -> bytes:
    """Replaces mitmproxy's own HTML error page (which names its version) on HTTP/1 connections: the
    few errors no hook sees (a request line that does not parse) get a JSON body in OpenAI's shape;
    the `error` hook answers the others first, in the door's dialect."""
    kind = "invalid_request_error" if status_code < 500 else "server_error"
    body = json.dumps({"error": {"message": message or "bad request", "type": kind, "code": status_code}}).encode()
    response = http.Response.make(status_code, body, {"content-type": "application/json", "connection": "close"})
    raw: bytes = http1.assemble_response(response)
    return raw


_mitmproxy_wait = _http1.Http1Server.wait


def _answer_through_half_close(self: _http1.Http1Server, event: events.Event) -> Generator[commands.Command, Any, None]:
    """mitmproxy takes a client's FIN after its request (a half-close: `shutdown(SHUT_WR)`, as
    `curl`/`nc -N` may do) for "not interested in the answer" and closes the connection at once. A
    half-closed client can still read: it gets its answer, then the connection is closed."""
    if (
        isinstance(event, events.ConnectionClosed)
        and event.connection is self.conn
        and event.connection.state & connection.ConnectionState.CAN_WRITE
        and self.request is not None
    ):
        self.request.headers["connection"] = "close"  # mark_done closes once the answer is out
        return
    yield from _mitmproxy_wait(self, event)


def patch_mitmproxy() -> None:
    """The two HTTP/1 behaviours of mitmproxy the bridge changes (module docstring of each above)."""
    _http1.make_error_response = _json_error_response
    _http1.Http1Server.wait = _answer_through_half_close  # type: ignore[method-assign,assignment]


def _client_stream_writer(client: connection.Client) -> tuple[asyncio.StreamWriter, Callable[[], None]] | None:
    """The asyncio writer of a live client connection and its idle timer's "activity" call, from
    mitmproxy's proxy server (`Proxyserver.connections`, the handler's `transports` and
    `timeout_watchdog`). None when this mitmproxy does not have them: the stream then goes through
    mitmproxy as before."""
    try:
        handler = ctx.master.addons.get("proxyserver").connections.get(client.id)
        if handler is None:
            return None
        io = handler.transports.get(handler.client)
        writer = io.writer if io is not None else None
        on_write = handler.timeout_watchdog.register_activity
    except AttributeError:
        return None
    if not isinstance(writer, asyncio.StreamWriter) or writer.is_closing():
        return None
    return writer, on_write


class OpenAIBridge:
    def __init__(self) -> None:
        self.app: BridgeApp | None = None
        self.parked: dict[str, str] = {}  # flow id -> relay token (live objects stay off the flow)
        self.screened: dict[str, dict[str, str]] = {}  # flow id -> its headers, read in `requestheaders`
        self.refused: set[str] = set()  # flow ids answered from their headers alone
        self.answered_early: set[str] = set()  # flow ids answered by the bridge outside the hooks (408)
        self.clients: set[str] = set()  # ids of the client connections open now
        self.header_timers: dict[str, asyncio.TimerHandle] = {}  # client id -> its header deadline
        self.body_timers: dict[str, asyncio.TimerHandle] = {}  # flow id -> its body deadline
        self.live: dict[str, http.HTTPFlow] = {}  # flows from their headers until answered or failed
        self.requested: set[str] = set()  # live flows whose body is in (the `request` hook has run)
        self.draining = False  # stopping: new requests are refused, those in flight may finish

    def load(self, loader: addonmanager.Loader) -> None:
        patch_mitmproxy()
        loader.add_option(
            "bridge_config",
            str,
            "",
            "Path of the bridge's TOML config (default: ./bridge.toml when it exists, else "
            "defaults with accounts discovered from standard credential files).",
        )
        loader.add_option(
            "bridge_replay",
            str,
            "",
            "Offline mode: a folder of replay fixtures to answer from, with no accounts (llmbridge serve --replay).",
        )
        self._apply_safe_defaults()
        # mitmdump sets the root logger to DEBUG; httpx/httpcore then build a log record for every
        # connection event, which measurably slows every request (see scripts/bench).
        for name in ("httpx", "httpcore", "hpack"):
            logging.getLogger(name).setLevel(logging.WARNING)
        logging.getLogger("mitmproxy.addons.proxyserver").addFilter(PortAdvice())
        # Redirected to a file, stdout is block-buffered: exchange lines would appear only at exit.
        if hasattr(sys.stdout, "reconfigure"):
            sys.stdout.reconfigure(line_buffering=True)

    def _apply_safe_defaults(self) -> None:
        defaults = {
            "mode": [DEAD_TARGET],
            "listen_host": DEFAULT_HOST,
            "listen_port": DEFAULT_PORT,
            "connection_strategy": "lazy",
            "http2": False,
            "flow_detail": 0,
            "onboarding": False,  # mitm.it certificate pages make no sense on an API endpoint
            "confdir": str(data_dir() / "mitmproxy"),
        }
        known = set(ctx.options.keys())  # other addons' options exist only in a full mitmproxy
        unchanged = {k: v for k, v in defaults.items() if k in known and not ctx.options.has_changed(k)}
        ctx.options.update(**unchanged)

    def configure(self, updated: set[str]) -> None:
        if "termlog_verbosity" in updated and "termlog_verbosity" in ctx.options.keys():
            verbose = ctx.options.termlog_verbosity == "debug"
            logging.getLogger(CONNECTION_LOGGER).setLevel(logging.NOTSET if verbose else logging.WARNING)
        if self.app is not None:
            if updated & {"bridge_config", "bridge_replay"}:
                raise exceptions.OptionsError(
                    "llmbridge: bridge_config and bridge_replay cannot change while the bridge runs; "
                    "restart mitmdump with the new --set"
                )
            return
        try:
            replay = Path(ctx.options.bridge_replay) if ctx.options.bridge_replay else None
            app = BridgeApp(find_config(ctx.options.bridge_config), replay)
            app.open_recorder()
        except ConfigError as e:
            # mitmproxy only logs a script's errors and runs on, so stop startup here, in one line.
            print(f"llmbridge: {e}", file=sys.stderr, flush=True)
            raise SystemExit(2) from None
        self.app = app
        # A body of unknown length (chunked) is cut off by mitmproxy once it passes this; the `error`
        # hook then answers 413 in the door's dialect. Declared lengths are refused in `requestheaders`.
        if "body_size_limit" in ctx.options.keys() and not ctx.options.has_changed("body_size_limit"):
            ctx.options.update(body_size_limit=str(app.config.max_body_bytes + 1))

    async def running(self) -> None:
        assert self.app is not None
        for handler in logging.getLogger().handlers:  # mitmproxy's console and any log file
            handler.addFilter(SecretFilter())
        self._drop_idle_builtin_addons()
        await self._rebind_servers()
        await self.app.start()
        host = ctx.options.listen_host or "0.0.0.0"
        print(self.app.banner(host, ctx.options.listen_port or DEFAULT_PORT), file=sys.stderr, flush=True)

    async def _rebind_servers(self) -> None:
        """mitmdump loads scripts only after it has begun bringing up its servers with the options of
        the command line, so our safe defaults (reverse mode, 127.0.0.1) would not apply to them.
        Bring the servers in line with the current options now; until then every request already
        passed through this addon's hooks, which answer it themselves and refuse CONNECT."""
        proxyserver = ctx.master.addons.get("proxyserver")
        if proxyserver is not None and not await proxyserver.setup_servers():
            raise SystemExit(
                f"llmbridge: could not listen on {ctx.options.listen_host}:{ctx.options.listen_port} "
                "(see the log above); start the bridge on another port with --set listen_port=N"
            )
        if proxyserver is not None:
            widen_listen_backlog(proxyserver.servers)

    def _drop_idle_builtin_addons(self) -> None:
        known = set(ctx.options.keys())
        for name, option in IDLE_UNLESS_SET.items():
            addon = ctx.master.addons.get(name)
            if addon is not None and option in known and not getattr(ctx.options, option):
                ctx.master.addons.remove(addon)

    # --- read deadlines: mitmproxy has only `tcp_timeout` (600 s of silence); a client that trickles
    # a byte at a time (slowloris) would hold its connection forever ---------------------------------

    def client_connected(self, client: connection.Client) -> None:
        self.clients.add(client.id)
        self._expect_headers(client)

    def client_disconnected(self, client: connection.Client) -> None:
        self.clients.discard(client.id)
        timer = self.header_timers.pop(client.id, None)
        if timer is not None:
            timer.cancel()

    def _expect_headers(self, client: connection.Client) -> None:
        """The next request's headers must be in within `client_header_timeout`: from the connection's
        start, or from the end of the previous answer on a kept-alive connection."""
        if self.app is None or client.id not in self.clients:
            return
        old = self.header_timers.pop(client.id, None)
        if old is not None:
            old.cancel()
        loop = asyncio.get_running_loop()
        self.header_timers[client.id] = loop.call_later(
            self.app.config.client_header_timeout, self._headers_timed_out, client
        )

    def _headers_timed_out(self, client: connection.Client) -> None:
        self.header_timers.pop(client.id, None)
        if self.app is None or self.app.bridge is None:
            return
        seconds = self.app.config.client_header_timeout
        answer = self.app.bridge.timed_out(
            "GET", "/", {}, f"the request headers did not arrive within {seconds:g}s (setting 'client_header_timeout')"
        )
        self._write_and_close(client, http.Response.make(answer.status, answer.body, answer.headers))

    def _expect_body(self, flow: http.HTTPFlow) -> None:
        assert self.app is not None
        loop = asyncio.get_running_loop()
        self.body_timers[flow.id] = loop.call_later(self.app.config.client_body_timeout, self._body_timed_out, flow)

    def _body_received(self, flow: http.HTTPFlow) -> None:
        timer = self.body_timers.pop(flow.id, None)
        if timer is not None:
            timer.cancel()

    def _body_timed_out(self, flow: http.HTTPFlow) -> None:
        self.body_timers.pop(flow.id, None)
        if self.app is None or self.app.bridge is None or flow.response is not None:
            return
        seconds = self.app.config.client_body_timeout
        headers = self.screened.get(flow.id, {})
        answer = self.app.bridge.timed_out(
            flow.request.method,
            flow.request.path,
            headers,
            f"the request body did not arrive within {seconds:g}s (setting 'client_body_timeout')",
        )
        if self._answer_and_close(flow, http.Response.make(answer.status, answer.body, answer.headers)):
            self.answered_early.add(flow.id)

    def http_connect(self, flow: http.HTTPFlow) -> None:
        # The bridge is an API endpoint, never a forward proxy: no tunnels to anywhere.
        flow.response = http.Response.make(
            405,
            b'{"error":{"message":"this is an API endpoint, not a proxy: CONNECT is refused",'
            b'"type":"invalid_request_error"}}',
            {"content-type": "application/json"},
        )

    async def requestheaders(self, flow: http.HTTPFlow) -> None:
        """Before mitmproxy reads the body: the header limits (431), and for a request with a body,
        its route (404), key (401) and declared length (413), so that a refused body is never read."""
        try:
            await self._requestheaders(flow)
        except Exception:  # the request hook still answers the request
            log.exception("llmbridge: requestheaders hook failed")

    async def _requestheaders(self, flow: http.HTTPFlow) -> None:
        timer = self.header_timers.pop(flow.client_conn.id, None)
        if timer is not None:
            timer.cancel()
        if self.app is None or self.app.bridge is None or flow.response is not None:
            return
        self.live[flow.id] = flow
        request = flow.request
        length = self._body_length(request)
        headers, refusal = await self.app.bridge.screen(request.method, request.path, request.headers.fields, length)
        self.screened[flow.id] = headers
        if refusal is None and self.draining:
            refusal = self.app.bridge.shutting_down(request.method, request.path, headers)
        if refusal is None:
            if length != 0:
                self._expect_body(flow)
            return
        self.refused.add(flow.id)
        response = http.Response.make(refusal.status, refusal.body, refusal.headers)
        if refusal.status == 431:
            request.headers.fields = ()  # no later hook (ours or mitmproxy's) walks them again
        if length is not None and length <= min(READ_REFUSED_BODY_UP_TO, self._body_size_limit()):
            flow.response = response  # mitmproxy reads the small body, then sends this
        elif self._answer_and_close(flow, response):
            flow.kill()  # nothing more is read; mitmproxy's own close follows ours
        else:
            flow.response = response  # not HTTP/1: read (up to body_size_limit) and answer

    @staticmethod
    def _body_size_limit() -> int:
        """mitmproxy's body_size_limit: past it, mitmproxy refuses the body itself, after this hook."""
        try:
            limit = human.parse_size(ctx.options.body_size_limit)
        except (AttributeError, KeyError, ValueError):
            return sys.maxsize
        return sys.maxsize if limit is None else limit

    @staticmethod
    def _body_length(request: http.Request) -> int | None:
        """The length of the body still to come: 0 for none, None when unknown (chunked)."""
        try:
            size = http1.expected_http_body_size(request)  # linear: looks up two headers
        except ValueError:
            return 0  # mitmproxy has refused the request already
        if size is None or size >= 0:
            return size or 0
        return None

    def _answer_and_close(self, flow: http.HTTPFlow, response: http.Response) -> bool:
        """Send `response` to an HTTP/1 client now and close the connection, so the body it is
        still sending is never read. mitmproxy 12 sends a response set in `requestheaders` only after
        it has read (and buffered) the whole body, so this writes on the client's transport itself.
        False (nothing done) where that is not possible; the caller falls back to `flow.response`."""
        if not flow.request.http_version.startswith("HTTP/1"):
            return False
        return self._write_and_close(flow.client_conn, response)

    @staticmethod
    def _write_and_close(client: connection.Client, response: http.Response) -> bool:
        """Write `response` on the client's transport and close it: the proxyserver addon's
        `connections` (client id -> handler) and the handler's `transports`. False if not possible."""
        proxyserver = ctx.master.addons.get("proxyserver")
        handler = getattr(proxyserver, "connections", {}).get(client.id)
        io = getattr(handler, "transports", {}).get(client)
        writer = getattr(io, "writer", None)
        if writer is None or writer.is_closing():
            return False
        response.headers["connection"] = "close"
        writer.write(http1.assemble_response(response))
        # close() sends what is buffered, then closes the socket; mitmproxy skips its own writes to
        # a closing transport, so nothing follows the answer on the wire.
        writer.close()
        return True

    async def request(self, flow: http.HTTPFlow) -> None:
        self._body_received(flow)
        self.requested.add(flow.id)
        if flow.id in self.answered_early:
            return  # the 408 is out and the connection closing
        if flow.id in self.refused:
            self.refused.discard(flow.id)
            self.screened.pop(flow.id, None)
            return  # answered from its headers (flow.response is set)
        try:
            await self._request(flow)
        except Exception:  # never let mitmproxy forward an untranslated request
            log.exception("llmbridge: request hook failed")
            flow.response = self._internal_error(flow)

    def _internal_error(self, flow: http.HTTPFlow) -> http.Response:
        bridge = self.app.bridge if self.app is not None else None
        if bridge is None:
            return http.Response.make(500, INTERNAL_ERROR, {"content-type": "application/json"})
        headers = self.screened.pop(flow.id, None) or {}
        answer = bridge.internal_error(flow.request.method, flow.request.path, headers)
        return http.Response.make(answer.status, answer.body, answer.headers)

    async def _request(self, flow: http.HTTPFlow) -> None:
        assert self.app is not None and self.app.bridge is not None
        headers = self.screened.pop(flow.id, None)
        if headers is None:  # no requestheaders hook ran (a replayed or injected flow)
            request = flow.request
            headers, refusal = await self.app.bridge.screen(request.method, request.path, request.headers.fields)
            if refusal is not None:
                flow.response = http.Response.make(refusal.status, refusal.body, refusal.headers)
                return
        incoming = IncomingRequest(
            method=flow.request.method,
            path=flow.request.path,
            headers=headers,
            body=flow.request.raw_content or b"",
        )
        self._scrub(flow)
        outcome = await self.app.bridge.handle(incoming)
        if isinstance(outcome, LocalResponse):
            flow.response = http.Response.make(outcome.status, outcome.body, outcome.headers)
        elif isinstance(outcome, Answer):
            # A whole answer needs no streaming, so no relay hop: accumulate it here.
            sink = BufferedSink()
            await outcome.run(sink)
            flow.response = http.Response.make(sink.status, bytes(sink.body), sink.headers)
        else:
            self._forward_to_relay(flow, outcome, headers)

    def _scrub(self, flow: http.HTTPFlow) -> None:
        """Remove the client's key from the flow, so no mitmproxy output or dump can show it."""
        fields = flow.request.headers.fields  # one pass: iterating `Headers` is quadratic
        kept = tuple(field for field in fields if field[0].lower() not in SECRET_HEADER_BYTES)
        if len(kept) != len(fields):
            flow.request.headers.fields = kept
        url = flow.request.url
        redacted = redact_url(url)
        if redacted != url:  # setting the URL re-parses it: only when a key was in it
            flow.request.url = redacted

    def _forward_to_relay(self, flow: http.HTTPFlow, answer: DeferredAnswer, headers: dict[str, str]) -> None:
        assert self.app is not None
        relay = self.app.relay
        token = relay.park(answer)
        self.parked[flow.id] = token
        flow.request.url = relay.url(token)
        flow.request.method = "GET"
        flow.request.headers.clear()
        flow.request.headers["host"] = f"127.0.0.1:{relay.port}"
        # mitmproxy decides from this same request whether to close the client's connection once the
        # answer is out: the client's `Connection: close` must survive the headers being replaced.
        if "close" in headers.get("connection", "").lower() or flow.request.http_version == "HTTP/1.0":
            flow.request.headers["connection"] = "close"
        flow.request.content = b""

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        if flow.id in self.parked and flow.response is not None:
            flow.response.stream = True  # pass the relay's translated chunks straight through
            self._lend_client_lane(flow)
            if flow.request.http_version == "HTTP/1.0":
                # HTTP/1.0 has no chunked encoding: the body ends when the connection closes
                flow.response.headers.pop("transfer-encoding", None)
                flow.response.headers["connection"] = "close"

    def _lend_client_lane(self, flow: http.HTTPFlow) -> None:
        """Let the relay write the rest of a chunked stream straight to the client's connection
        (`llmbridge.relay.ClientLane`): only on plain HTTP/1.1, where mitmproxy would pass the chunks
        on unchanged."""
        assert self.app is not None and flow.response is not None
        token = self.parked.get(flow.id)
        lane = self.app.relay.lane(token) if token is not None else None
        if (
            lane is None
            or flow.client_conn.tls_established
            or flow.request.http_version != "HTTP/1.1"
            or "chunked" not in flow.response.headers.get("transfer-encoding", "").lower()
        ):
            return
        found = _client_stream_writer(flow.client_conn)
        if found is not None:
            writer, on_write = found
            lane.open(writer, on_write)
            flow.response.stream = lane.passing
            log.debug("llmbridge: the rest of stream %s goes straight to the client", flow.id)

    def response(self, flow: http.HTTPFlow) -> None:
        self.parked.pop(flow.id, None)
        self._exchange_over(flow)

    def _exchange_over(self, flow: http.HTTPFlow) -> None:
        self.live.pop(flow.id, None)
        self.requested.discard(flow.id)
        self._body_received(flow)
        self.answered_early.discard(flow.id)
        self._expect_headers(flow.client_conn)  # a kept-alive connection: the next request's deadline

    async def error(self, flow: http.HTTPFlow) -> None:
        self.screened.pop(flow.id, None)
        refused = flow.id in self.refused
        self.refused.discard(flow.id)
        answered = refused or flow.id in self.answered_early
        self._exchange_over(flow)
        failure: tuple[int, str] | None = None
        message = flow.error.msg if flow.error else ""
        if not answered and "body_size_limit" in message:
            self._body_too_large(flow)
        elif not answered and flow.response is None and not message.startswith(CLIENT_GONE_ERRORS):
            failure = self._answer_mitmproxy_error(flow, message)
        token = self.parked.pop(flow.id, None)
        if token is not None and self.app is not None:
            await self.app.relay.unpark(token, failure)  # no-op if the relay already picked it up

    def _answer_mitmproxy_error(self, flow: http.HTTPFlow, message: str) -> tuple[int, str] | None:
        """mitmproxy is about to answer with its own HTML error page (naming its version): answer
        first, in the door's dialect; its page then finds the connection closing. The status and
        message the client got, or None if it could not be answered."""
        if self.app is None or self.app.bridge is None:
            return None
        request = flow.request
        headers = self.screened.get(flow.id, {})
        if request.method.upper() == "CONNECT":
            answer = self.app.bridge.refused_method(request.method, request.path)
        elif message.startswith(MALFORMED_REQUEST_ERRORS):
            answer = self.app.bridge.malformed(request.method, request.path, headers, message)
        else:
            answer = self.app.bridge.internal_error(request.method, request.path, headers)
        if self._write_and_close(flow.client_conn, http.Response.make(answer.status, answer.body, answer.headers)):
            return answer.status, message
        return None

    def _body_too_large(self, flow: http.HTTPFlow) -> None:
        """mitmproxy stopped reading a body past body_size_limit and is about to answer with its own
        HTML 413: answer first, in the door's dialect (its page then finds the connection closing)."""
        if self.app is None or self.app.bridge is None or flow.response is not None:
            return
        answer = self.app.bridge.body_too_large(flow.request.method, flow.request.path, {})
        self._answer_and_close(flow, http.Response.make(answer.status, answer.body, answer.headers))

    async def done(self) -> None:
        """SIGTERM (or Ctrl-C): drain, then stop. See `_drain`."""
        if self.app is not None:
            try:
                await self._drain()
            except Exception:
                log.exception("llmbridge: draining failed; stopping at once")
            await self.app.stop()

    async def _drain(self) -> None:
        """Stop taking requests (the listeners close; a request on a connection already open gets a
        503 with Retry-After in its door's dialect); let the answers in flight finish within
        `shutdown_grace_seconds`; then end the rest in their dialect: an error event in a stream
        that has begun, a 503 for an answer that has not, a 503 for a body still being uploaded.
        Returns once every client has been sent what its exchange's row records."""
        assert self.app is not None
        self.draining = True
        await self._stop_listening()
        loop = asyncio.get_running_loop()
        grace = self.app.config.shutdown_grace_seconds
        if self.live:
            log.info("llmbridge: stopping; %d requests in flight get up to %gs to finish", len(self.live), grace)
        deadline = loop.time() + grace
        while self.live and loop.time() < deadline:
            await asyncio.sleep(0.05)
        if self.live and self.app.bridge is not None:
            log.warning("llmbridge: %d requests still in flight after %gs: ending them", len(self.live), grace)
            self.app.bridge.cut_off()
            for flow in list(self.live.values()):
                if flow.id not in self.requested and flow.response is None:
                    self._refuse_upload(flow)
            deadline = loop.time() + CUT_OFF_SECONDS
            while self.live and loop.time() < deadline:
                await asyncio.sleep(0.02)
            if self.live:
                log.warning("llmbridge: %d requests did not end when told to", len(self.live))
        log.info("llmbridge: drained")
        await asyncio.sleep(0.05)  # a whole answer set in its hook is written just after the hook returns
        await self._flush_clients(loop.time() + 1.0)

    def _refuse_upload(self, flow: http.HTTPFlow) -> None:
        """A request whose body is still coming when the grace period ends: 503, connection closed."""
        assert self.app is not None and self.app.bridge is not None
        headers = self.screened.get(flow.id, {})
        answer = self.app.bridge.shutting_down(flow.request.method, flow.request.path, headers)
        if self._answer_and_close(flow, http.Response.make(answer.status, answer.body, answer.headers)):
            self.answered_early.add(flow.id)

    async def _stop_listening(self) -> None:
        """Close mitmproxy's listeners: new connections are refused; open ones stay."""
        proxyserver = ctx.master.addons.get("proxyserver")
        for instance in list(getattr(proxyserver, "servers", [])):
            try:
                await instance.stop()
            except Exception as e:  # not running (already stopped, or never started)
                log.debug("llmbridge: stopping a listener: %r", e)

    @staticmethod
    async def _flush_clients(deadline: float) -> None:
        """Until what mitmproxy has written to the clients has left the process (or `deadline`):
        once `done` returns, mitmproxy cancels every connection, and unsent bytes would be lost."""
        proxyserver = ctx.master.addons.get("proxyserver")
        loop = asyncio.get_running_loop()
        while loop.time() < deadline:
            pending = 0
            for handler in list(getattr(proxyserver, "connections", {}).values()):
                for io in list(getattr(handler, "transports", {}).values()):
                    transport = getattr(getattr(io, "writer", None), "transport", None)
                    if transport is not None and not transport.is_closing():
                        pending += transport.get_write_buffer_size()
            if not pending:
                return
            await asyncio.sleep(0.02)


class PortAdvice(logging.Filter):
    """mitmproxy answers a busy port with "Try specifying a different port by using `--mode …@N`",
    which would give the bridge a second mode; the bridge's way is `--set listen_port=N`."""

    ADVICE = re.compile(r"Try specifying a different port by using `--mode [^`]*@(\d+)`\.")

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if self.ADVICE.search(message):
            record.msg = self.ADVICE.sub(
                r"Another program (perhaps another llmbridge) is using it: start the "
                r"bridge on another port with --set listen_port=\1.",
                message,
            )
            record.args = None
        return True


addons = [OpenAIBridge()]


def widen_listen_backlog(servers: Any) -> None:
    """Listen again with LISTEN_BACKLOG on each of mitmproxy's TCP listening sockets (Linux and the
    BSDs take a second listen() as a new backlog). mitmproxy keeps its asyncio servers on each
    server instance (`_servers`, not public): where that is not there, the default stays."""
    for instance in servers:
        for server in getattr(instance, "_servers", ()):
            for transport_socket in getattr(server, "sockets", ()):
                try:
                    with socket.socket(fileno=os.dup(transport_socket.fileno())) as listening:
                        listening.listen(LISTEN_BACKLOG)
                except OSError as e:
                    log.debug("listen backlog left at the default: %s", e)
