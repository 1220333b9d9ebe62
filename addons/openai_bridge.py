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

import logging
import re
import sys
from pathlib import Path

from mitmproxy import addonmanager, ctx, exceptions, http

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without install

from llmbridge.answer import Answer, BufferedSink, DeferredAnswer  # noqa: E402
from llmbridge.app import BridgeApp  # noqa: E402
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
}
INTERNAL_ERROR = b'{"error":{"message":"internal error in the bridge; see its log","type":"server_error"}}'


class OpenAIBridge:
    def __init__(self) -> None:
        self.app: BridgeApp | None = None
        self.parked: dict[str, str] = {}  # flow id -> relay token (live objects stay off the flow)

    def load(self, loader: addonmanager.Loader) -> None:
        loader.add_option(
            "bridge_config",
            str,
            "",
            "Path of the bridge's TOML config (default: ./bridge.toml when it exists, else "
            "defaults with accounts discovered from standard credential files).",
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
            if "bridge_config" in updated:
                raise exceptions.OptionsError(
                    "llmbridge: bridge_config cannot change while the bridge runs; "
                    "restart mitmdump with the new --set bridge_config"
                )
            return
        try:
            app = BridgeApp(find_config(ctx.options.bridge_config))
            app.open_recorder()
        except ConfigError as e:
            # mitmproxy only logs a script's errors and runs on, so stop startup here, in one line.
            print(f"llmbridge: {e}", file=sys.stderr, flush=True)
            raise SystemExit(2) from None
        self.app = app

    async def running(self) -> None:
        assert self.app is not None
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

    def _drop_idle_builtin_addons(self) -> None:
        known = set(ctx.options.keys())
        for name, option in IDLE_UNLESS_SET.items():
            addon = ctx.master.addons.get(name)
            if addon is not None and option in known and not getattr(ctx.options, option):
                ctx.master.addons.remove(addon)

    def http_connect(self, flow: http.HTTPFlow) -> None:
        # The bridge is an API endpoint, never a forward proxy: no tunnels to anywhere.
        flow.response = http.Response.make(
            405,
            b'{"error":{"message":"this is an API endpoint, not a proxy: CONNECT is refused",'
            b'"type":"invalid_request_error"}}',
            {"content-type": "application/json"},
        )

    async def request(self, flow: http.HTTPFlow) -> None:
        try:
            await self._request(flow)
        except Exception:  # never let mitmproxy forward an untranslated request
            log.exception("llmbridge: request hook failed")
            flow.response = self._internal_error(flow)

    def _internal_error(self, flow: http.HTTPFlow) -> http.Response:
        bridge = self.app.bridge if self.app is not None else None
        if bridge is None:
            return http.Response.make(500, INTERNAL_ERROR, {"content-type": "application/json"})
        answer = bridge.internal_error(flow.request.method, flow.request.path, dict(flow.request.headers))
        return http.Response.make(answer.status, answer.body, answer.headers)

    async def _request(self, flow: http.HTTPFlow) -> None:
        assert self.app is not None and self.app.bridge is not None
        incoming = IncomingRequest(
            method=flow.request.method,
            path=flow.request.path,
            headers={k.lower(): v for k, v in flow.request.headers.items()},
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
            self._forward_to_relay(flow, outcome)

    def _scrub(self, flow: http.HTTPFlow) -> None:
        """Remove the client's key from the flow, so no mitmproxy output or dump can show it."""
        for name in list(flow.request.headers.keys()):
            if name.lower() in SECRET_HEADERS:
                del flow.request.headers[name]
        flow.request.url = redact_url(flow.request.url)

    def _forward_to_relay(self, flow: http.HTTPFlow, answer: DeferredAnswer) -> None:
        assert self.app is not None
        relay = self.app.relay
        token = relay.park(answer)
        self.parked[flow.id] = token
        flow.request.url = relay.url(token)
        flow.request.method = "GET"
        flow.request.headers.clear()
        flow.request.headers["host"] = f"127.0.0.1:{relay.port}"
        flow.request.content = b""

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        if flow.id in self.parked and flow.response is not None:
            flow.response.stream = True  # pass the relay's translated chunks straight through

    def response(self, flow: http.HTTPFlow) -> None:
        self.parked.pop(flow.id, None)

    async def error(self, flow: http.HTTPFlow) -> None:
        token = self.parked.pop(flow.id, None)
        if token is not None and self.app is not None:
            await self.app.relay.unpark(token)  # no-op if the relay already picked it up

    async def done(self) -> None:
        if self.app is not None:
            await self.app.stop()


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
