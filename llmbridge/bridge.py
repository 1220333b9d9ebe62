"""The bridge core: routes a client request, authenticates it, parses it into the canonical model,
and opens an upstream answer through the account pool with failover before the first byte.

Plain Python: the mitmproxy addon hands it (method, path, headers, body) and gets back either a
complete `LocalResponse` or an `Answer` to park in the relay.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import math
import re
import time
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable
from urllib.parse import parse_qs, unquote, urlsplit

from llmbridge.answer import Answer, DeferredAnswer
from llmbridge.canonical import ChatRequest
from llmbridge.config import BridgeConfig, ClientKey
from llmbridge.errors import (
    BridgeError,
    InternalError,
    InvalidRequest,
    ModelNotFound,
    NoAccount,
    NotFound,
    RateLimited,
    RequestTooLarge,
    Unauthenticated,
    UpstreamAuthError,
    UpstreamUnavailable,
    error_for_kind,
)
from llmbridge.exchange import ExchangeRecord
from llmbridge.formats.anthropic import AnthropicFormat
from llmbridge.formats.base import ClientFormat, dumps
from llmbridge.formats.gemini import GeminiFormat
from llmbridge.formats.gemini_parse import model_name
from llmbridge.formats.openai import OpenAIFormat
from llmbridge.peek import PEEK_SECONDS, peek
from llmbridge.pool import AccountPool, AccountState, Candidate
from llmbridge.providers.base import UpstreamCall
from llmbridge.redact import redact_json

log = logging.getLogger("llmbridge")
MAX_PACING_WAIT = 20.0  # seconds a request may wait for an account's pacing slot before a 429
PASSTHROUGH_HEADERS = ("anthropic-version", "anthropic-beta")


@dataclass
class IncomingRequest:
    method: str
    path: str  # with query string
    headers: dict[str, str]  # lower-case names
    body: bytes


@dataclass
class LocalResponse:
    status: int
    headers: dict[str, str]
    body: bytes
    record: ExchangeRecord | None = None


@dataclass
class Route:
    client_format: ClientFormat
    action: str  # chat | models | model | count_tokens | health
    model: str | None = None
    stream: bool | None = None
    params: dict[str, Any] = field(default_factory=dict)


# Gemini clients use /v1beta; google-genai with a custom base_url may use /v1. The model may hold
# slashes (`provider/model`, sent raw by google-genai) and colons (`llama3:8b`): the method is what
# follows the last colon.
GEMINI_METHOD = re.compile(r"^/v1(beta)?/models/(?P<model>.+):(?P<method>\w+)$")
GEMINI_VERBS = ("generateContent", "streamGenerateContent", "countTokens")


class Bridge:
    def __init__(self, config: BridgeConfig, pool: AccountPool, client_keys: list[ClientKey],
                 on_exchange: Callable[[ExchangeRecord], Awaitable[None]]) -> None:
        self.config = config
        self.pool = pool
        self.client_keys = client_keys
        self.on_exchange = on_exchange
        self.formats = _load_formats()

    # --- routing ----------------------------------------------------------------------------------

    def route(self, method: str, target: str, headers: dict[str, str] | None = None) -> Route:
        url = urlsplit(target)
        path = url.path.rstrip("/") or "/"
        if path == "/v1/models" or path.startswith("/v1/models/"):
            if _speaks_gemini(headers or {}, url.query):
                # google-genai with a custom base_url lists models under /v1, not /v1beta
                path = path.replace("/v1/", "/v1beta/", 1)
        openai, anthropic, gemini = self.formats["openai"], self.formats["anthropic"], self.formats["gemini"]
        table = {
            ("GET", "/health"): Route(openai, "health"),
            ("GET", "/v1/models"): Route(openai, "models"),
            ("POST", "/v1/chat/completions"): Route(openai, "chat"),
        }
        table[("POST", "/v1/messages")] = Route(anthropic, "chat")
        table[("POST", "/v1/messages/count_tokens")] = Route(anthropic, "count_tokens")
        table[("GET", "/v1beta/models")] = Route(gemini, "models")
        if (method, path) in table:
            return table[(method, path)]
        if path.startswith("/v1beta/") or (method == "POST" and GEMINI_METHOD.match(path)):
            return self._gemini_route(method, path, gemini, parse_qs(url.query))
        if method == "GET" and path.startswith("/v1/models/"):
            return Route(openai, "model", model=_model_segment(path.removeprefix("/v1/models/")))
        fmt = anthropic if path.startswith("/v1/messages") else openai
        raise _Routed(fmt, NotFound(f"no route for {method} {path}; the bridge serves /v1/chat/completions, "
                                    "/v1/models, /v1/messages and /v1beta/models/{model}:generateContent"))

    def _gemini_route(self, method: str, path: str, gemini: ClientFormat, query: dict[str, list[str]]) -> Route:
        match = GEMINI_METHOD.match(path)
        verb = match["method"] if match else None
        if match and method == "POST":
            model = model_name(_model_segment(match["model"]))
            if verb in ("generateContent", "streamGenerateContent"):
                stream = verb == "streamGenerateContent"
                # Without alt=sse, Gemini streams one JSON array written out piece by piece.
                options = {"json_array": True} if stream and query.get("alt") != ["sse"] else {}
                return Route(gemini, "chat", model=model, stream=stream, params=options)
            if verb == "countTokens":
                return Route(gemini, "count_tokens", model=model)
        if method == "GET" and path.startswith("/v1beta/models/") and verb not in GEMINI_VERBS:
            return Route(gemini, "model", model=model_name(_model_segment(path.removeprefix("/v1beta/models/"))))
        raise _Routed(gemini, NotFound(f"no route for {method} {path}"))

    def internal_error(self, method: str, target: str, headers: dict[str, str]) -> LocalResponse:
        """A 500 in the dialect of the route, for failures outside `handle` (the addon's last resort)."""
        try:
            fmt = self.route(method, target, headers).client_format
        except _Routed as routed:
            fmt = routed.client_format
        status, response_headers, body = fmt.error_response(
            InternalError("internal error in the bridge; see its log"))
        return LocalResponse(status, response_headers, body)

    # --- entry point --------------------------------------------------------------------------------

    async def handle(self, incoming: IncomingRequest) -> LocalResponse | Answer | DeferredAnswer:
        record = ExchangeRecord(endpoint=f"{incoming.method} {urlsplit(incoming.path).path}")
        fmt: ClientFormat = self.formats["openai"]
        try:
            route = self.route(incoming.method, incoming.path, incoming.headers)
            fmt = route.client_format
            record.client_format = fmt.name
            _note_request(record, route.model, route.stream)  # recorded even if the request proves invalid
            if route.action == "health":
                return LocalResponse(200, {"content-type": "application/json"}, b'{"status":"ok"}')
            record.key_label = self.authenticate(incoming)
            return await self._dispatch(route, incoming, record)
        except _Routed as routed:
            record.client_format = routed.client_format.name
            return await self._error(routed.client_format, routed.error, record)
        except BridgeError as error:
            return await self._error(fmt, error, record)
        except Exception:  # a bug must still answer in the client's dialect, never forward
            log.exception("internal error while handling %s (exchange %s)", record.endpoint, record.id)
            return await self._error(fmt, InternalError(f"internal error in the bridge; its log has the details "
                                                        f"under exchange {record.id}"), record)

    def authenticate(self, incoming: IncomingRequest) -> str:
        """The label of the client key presented, compared in constant time; Unauthenticated if none."""
        offered = _offered_key(incoming)
        if not offered:
            raise Unauthenticated("no API key: send it as 'Authorization: Bearer <key>', 'x-api-key' or "
                                  "'x-goog-api-key' (the bridge prints its key at startup)")
        label = None
        # mitmproxy hands undecodable header bytes over as surrogates: compare them as the bytes sent
        offered_bytes = offered.encode("utf-8", "surrogateescape")
        for key in self.client_keys:  # no early exit: time does not depend on which key matched
            if hmac.compare_digest(key.key.encode(), offered_bytes):
                label = key.label
        if label is None:
            raise Unauthenticated("invalid API key: use a key from the bridge's config 'api_keys' or the "
                                  "one printed at startup")
        return label

    async def _dispatch(self, route: Route, incoming: IncomingRequest, record: ExchangeRecord):
        fmt = route.client_format
        if route.action == "models":
            return _json_response(fmt.render_models(self.pool.models()))
        if route.action == "model":
            return self._one_model(fmt, route.model or "")
        body = self._parse_body(incoming)
        record.request_raw = redact_json(body)
        if isinstance(body, dict):  # what the body names (the URL's model and stream win), should it prove invalid
            _note_request(record, body.get("model") if route.model is None else None,
                          body.get("stream") if route.stream is None else None)
        if route.action == "count_tokens":
            request = self._parse_count_tokens(fmt, body, route)
        else:
            request = fmt.parse_request(body, model=route.model, stream=route.stream)
        request.passthrough_headers = {h: incoming.headers[h] for h in PASSTHROUGH_HEADERS
                                       if h in incoming.headers}
        record.request_canonical = request.model_dump(mode="json", exclude_none=True)
        record.model_requested, record.stream = request.model, request.stream
        if route.action == "count_tokens":
            return await self._count_tokens(fmt, request, record)
        return await self.open_answer(fmt, request, record, route.params)

    @staticmethod
    def _parse_count_tokens(fmt: ClientFormat, body: Any, route: Route) -> ChatRequest:
        parse = getattr(fmt, "parse_count_tokens", None)
        if parse is None:
            return fmt.parse_request(body, model=route.model)
        return parse(body, route.model) if route.model else parse(body)

    def _parse_body(self, incoming: IncomingRequest) -> Any:
        if len(incoming.body) > self.config.max_body_bytes:
            raise RequestTooLarge(f"request body is {len(incoming.body)} bytes; the limit is "
                                  f"{self.config.max_body_bytes} (setting 'max_body_bytes')")
        if not incoming.body:
            raise InvalidRequest("the request body is empty; send a JSON object")
        try:
            return json.loads(incoming.body)
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise InvalidRequest(f"the request body is not valid JSON: {e}") from None

    def _one_model(self, fmt: ClientFormat, model: str) -> LocalResponse:
        model = model.removeprefix("models/")
        for info in self.pool.models():
            if info.id == model:
                return _json_response(fmt.render_model(info))
        listing = "/v1beta/models" if fmt.name == "gemini" else "/v1/models"
        raise ModelNotFound(f"model '{model}' is not served by any configured account; GET {listing} "
                            "lists the models")

    # --- upstream -----------------------------------------------------------------------------------

    async def open_answer(self, fmt: ClientFormat, request: ChatRequest, record: ExchangeRecord,
                          renderer_options: dict[str, Any] | None = None) -> Answer | DeferredAnswer:
        candidates = self._candidates(request.model)
        for candidate in candidates:
            candidate.state.provider.check_request(request)
        opening = self._answer(fmt, request, record, candidates, renderer_options or {})
        if request.stream:
            return DeferredAnswer(asyncio.ensure_future(self._answer_or_error(fmt, record, opening)), record)
        return await opening

    async def _answer_or_error(self, fmt: ClientFormat, record: ExchangeRecord,
                               opening: Awaitable[Answer]) -> Answer | LocalResponse:
        try:
            return await opening
        except BridgeError as error:
            return await self._error(fmt, error, record)
        except asyncio.CancelledError:  # the client left, or the bridge is stopping: still recorded
            if not record.client_disconnected:
                record.error_kind, record.error_message = "interrupted", "the bridge stopped before the answer began"
            record.duration_ms = record.elapsed_ms()
            await self.on_exchange(record)
            raise
        except Exception:
            log.exception("internal error while opening %s (exchange %s)", record.endpoint, record.id)
            return await self._error(fmt, InternalError(f"internal error in the bridge; its log has the details "
                                                        f"under exchange {record.id}"), record)

    async def _answer(self, fmt: ClientFormat, request: ChatRequest, record: ExchangeRecord,
                      candidates: list[Candidate], renderer_options: dict[str, Any]) -> Answer:
        state, call = await self._open_with_failover(request, candidates, record)
        record.account, record.provider = state.name, state.provider_name

        async def done(answer: Answer) -> None:
            self.pool.release(state)
            if answer.record.error_kind and not answer.record.client_disconnected:
                # an error inside a started stream still says something about the account
                error = error_for_kind(answer.record.error_kind, answer.record.error_message or "")
                self.pool.report(state, error)
            await self.on_exchange(answer.record)

        return Answer(call=call, client_format=fmt, request=request, record=record,
                      keepalive_seconds=self.config.keepalive_seconds, on_done=done,
                      renderer_options=renderer_options)

    def _candidates(self, model: str) -> list[Candidate]:
        candidates = self.pool.candidates(model)
        if not candidates:
            if not self.pool.states:
                raise NoAccount("no accounts are configured; add one to bridge.toml (see the README) "
                                "or log in with a provider's own CLI so its credential file exists")
            raise ModelNotFound(f"model '{model}' is not served by any configured account; "
                                "GET /v1/models lists the models")
        return candidates

    async def _open_with_failover(self, request: ChatRequest, candidates: list[Candidate],
                                  record: ExchangeRecord) -> tuple[AccountState, UpstreamCall]:
        tried: set[str] = set()
        last_error: BridgeError | None = None
        waited = 0.0
        while len(tried) < self.config.max_attempts:
            candidate, wait = self.pool.pick(candidates, tried)
            if candidate is None:
                if wait is None or waited + wait > MAX_PACING_WAIT or last_error is not None:
                    raise self._exhausted(candidates, last_error, wait)
                await asyncio.sleep(wait)
                waited += wait
                continue
            tried.add(candidate.state.name)
            record.account, record.provider = candidate.state.name, candidate.state.provider_name
            self.pool.acquire(candidate.state)
            try:
                return candidate.state, await self._attempt(candidate, request, record)
            except BaseException as error:
                self.pool.release(candidate.state)  # whatever happened, the slot is free again
                if not isinstance(error, BridgeError):
                    raise
                self.pool.report(candidate.state, error)
                log.info("account %s failed (%s): %s", candidate.state.name, error.kind, error.message)
                if error.action == "stop":
                    raise
                last_error = error
        raise self._exhausted(candidates, last_error, None)

    async def _attempt(self, candidate: Candidate, request: ChatRequest, record: ExchangeRecord) -> UpstreamCall:
        provider = candidate.state.provider
        try:
            try:
                call = await self._open(provider, request, candidate.upstream_model, record)
            except UpstreamAuthError:
                await provider.refresh_credentials(force=True)
                call = await self._open(provider, request, candidate.upstream_model, record)
        except BridgeError:
            raise
        except Exception as e:  # a provider bug or a local fault (a credential file that cannot be written)
            log.exception("account %s: calling the provider failed", candidate.state.name)
            raise UpstreamUnavailable(f"account {candidate.state.name!r} failed inside the bridge "
                                      f"({type(e).__name__}); see the bridge's log") from e
        await peek(call, min(PEEK_SECONDS, self.config.keepalive_seconds))
        return call

    async def _open(self, provider, request: ChatRequest, upstream_model: str, record: ExchangeRecord):
        try:
            call = await provider.open(request, upstream_model)
        except BridgeError as error:
            if error.attempt is not None:
                error.attempt.error_kind, error.attempt.error_message = error.kind, error.message
                record.attempts.append(error.attempt)
            raise
        record.attempts.append(call.attempt)
        return call

    def _exhausted(self, candidates: list[Candidate], last_error: BridgeError | None,
                   wait: float | None) -> BridgeError:
        """The error for a request no account could answer, saying why for each account."""
        summary = self.pool.summary(candidates)
        if last_error is not None and last_error.action != "cooldown":
            last_error.message = f"{last_error.message} (accounts: {summary})"
            return last_error
        if wait is None:
            now = time.time()
            wait = min((max(c.state.cooling_until - now, c.state.pacing_wait(now)) for c in candidates
                        if not c.state.dead_reason), default=None)
        if wait is None:
            return NoAccount(f"every account that serves this model is unusable: {summary}")
        retry = max(1.0, wait)
        return RateLimited(f"every account that serves this model is rate limited or at its pacing limit; "
                           f"retry in {math.ceil(retry)} s ({summary})", retry_after=retry)

    async def _count_tokens(self, fmt: ClientFormat, request: ChatRequest,
                            record: ExchangeRecord) -> LocalResponse:
        """Ask an account that is usable right now (healthy, within its pacing); else estimate."""
        method, count = "estimate", None
        candidate, _ = self.pool.pick(self._candidates(request.model), set())
        if candidate is not None:
            self.pool.acquire(candidate.state)
            try:
                count = await candidate.state.provider.count_tokens(request, candidate.upstream_model)
            except BridgeError as error:
                self.pool.report(candidate.state, error)
                log.info("upstream token count failed on %s: %s", candidate.state.name, error.message)
            finally:
                self.pool.release(candidate.state)
            if count is not None:
                method = f"upstream:{candidate.state.provider_name}"
        if count is None:
            from llmbridge.tokens import estimate_input_tokens

            count = estimate_input_tokens(request)
        response = _json_response(fmt.render_count_tokens(count))
        response.headers["x-llmbridge-token-count-method"] = method
        return response

    async def _error(self, fmt: ClientFormat, error: BridgeError, record: ExchangeRecord) -> LocalResponse:
        status, headers, body = fmt.error_response(error)
        record.status, record.error_kind, record.error_message = status, error.kind, error.message
        record.duration_ms = record.elapsed_ms()
        if record.key_label is not None or record.attempts:
            await self.on_exchange(record)
        return LocalResponse(status, headers, body, record)


class _Routed(Exception):
    """A routing error that already knows which dialect to answer in."""

    def __init__(self, client_format: ClientFormat, error: BridgeError) -> None:
        self.client_format, self.error = client_format, error


def _note_request(record: ExchangeRecord, model: Any, stream: Any) -> None:
    """Record the model and stream flag a request names before it is validated, so that a request
    refused as invalid is still recorded with them; values of the wrong type are left out."""
    if isinstance(model, str) and model:
        record.model_requested = model
    if isinstance(stream, bool):
        record.stream = stream


def _model_segment(raw: str) -> str:
    """The model id in a URL path, percent-escapes (`openai%2Fgpt-4o`) decoded exactly once."""
    return unquote(raw)  # a malformed escape stays as it is, a bad UTF-8 byte becomes U+FFFD


def _speaks_gemini(headers: dict[str, str], query: str) -> bool:
    """Gemini clients authenticate with x-goog-api-key or ?key= and identify with x-goog-api-client."""
    return "x-goog-api-key" in headers or "x-goog-api-client" in headers or "key" in parse_qs(query)


def _offered_key(incoming: IncomingRequest) -> str | None:
    auth = incoming.headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip()
    for header in ("x-api-key", "x-goog-api-key"):
        if incoming.headers.get(header):
            return incoming.headers[header].strip()
    query = parse_qs(urlsplit(incoming.path).query)
    return query["key"][0] if query.get("key") else None


def _json_response(body: Any) -> LocalResponse:
    return LocalResponse(200, {"content-type": "application/json"}, dumps(body))


def _load_formats() -> dict[str, ClientFormat]:
    return {f.name: f for f in (OpenAIFormat(), AnthropicFormat(), GeminiFormat())}
