"""The bridge core: routes a client request to its door (the routes the registered formats declare),
authenticates it, parses it into the canonical model and dispatches it: model lists and token counts
are answered here, answers opened through failover (`llmbridge.failover`); every error is answered
in the door's dialect.

Plain Python: the mitmproxy addon hands it (method, path, headers, body) and gets back a complete
`LocalResponse`, an `Answer` to send, or a `DeferredAnswer` (a stream still opening) to park in the relay.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Iterable
from urllib.parse import parse_qs, urlsplit

from llmbridge.aliases import Plan, Routing, answer_as_alias
from llmbridge.answer import Answer, DeferredAnswer, attempt_headers, shutdown_error
from llmbridge.canonical import ChatRequest
from llmbridge.config import BridgeConfig, ClientKey
from llmbridge.conversation import conversation_scope
from llmbridge.errors import (
    BridgeError,
    InternalError,
    InvalidRequest,
    MethodNotAllowed,
    ModelNotFound,
    RequestTimeout,
    RequestTooLarge,
    ShuttingDown,
    Unauthenticated,
)
from llmbridge.exchange import ExchangeRecord
from llmbridge.failover import Failover, Lease
from llmbridge.formats import load_formats
from llmbridge.formats.base import DEFAULT_OPTIONS, ClientFormat, RenderOptions
from llmbridge.hostile import (
    HeadersTooLarge,
    count_messages,
    count_parts,
    escape_surrogates,
    json_too_deep,
    lone_surrogate_path,
    scan_headers,
)
from llmbridge.peek import PEEK_SECONDS
from llmbridge.pool import AccountPool, Candidate
from llmbridge.responses import LocalResponse, json_response
from llmbridge.routing import NoRoute, Route, Router
from llmbridge.rules import Rules, Target

log = logging.getLogger(__name__)
PASSTHROUGH_HEADERS = ("anthropic-version", "anthropic-beta")
# How long a model list, or a request for a model no account knows yet, waits for the accounts' own
# model listings (Kiro's ListAvailableModels); a slower listing finishes in the background.
MODEL_LIST_WAIT = 5.0
# Bodies larger than this are parsed (JSON, the limits, the canonical model, the record's copies) on a
# worker thread, so that one big request does not hold the event loop every other client shares.
# Smaller ones are parsed in place: the hop to a thread costs more than their parsing.
PARSE_OFF_LOOP_BYTES = 256 * 1024


@dataclass
class IncomingRequest:
    method: str
    path: str  # with query string
    headers: dict[str, str]  # lower-case names
    body: bytes


class Bridge:
    def __init__(
        self,
        config: BridgeConfig,
        pool: AccountPool,
        client_keys: list[ClientKey],
        on_exchange: Callable[[ExchangeRecord], Awaitable[None]],
    ) -> None:
        self.config = config
        self.pool = pool
        self.client_keys = client_keys
        self.on_exchange = on_exchange
        self.router = Router(load_formats())
        peek_seconds = min(PEEK_SECONDS, config.keepalive_seconds)
        self.failover = Failover(
            pool, config.max_attempts, peek_seconds, on_exchange, config.max_wait_seconds, config.first_token_timeout
        )
        self.rules = Rules()
        self.use_rules(config, client_keys)
        self._cut_off: asyncio.Future[None] | None = None

    def use_rules(self, config: BridgeConfig, client_keys: list[ClientKey]) -> None:
        """(Re)build the prompt and parameter rules (`llmbridge.rules`) and the aliases, pins and key
        allow-lists (`llmbridge.aliases`) from `config`: a config reload calls this. Prompt files
        already read are kept (and read again only when they change)."""
        self.rules = Rules.from_config(config, self.rules.files)
        self.routing = Routing.from_config(config, client_keys, self.pool)

    @property
    def cut_off_answers(self) -> asyncio.Future[None]:
        """Done once `cut_off` has been called: answers still opening or running then end (made on
        first use, in the running event loop)."""
        if self._cut_off is None:
            self._cut_off = asyncio.get_running_loop().create_future()
        return self._cut_off

    def cut_off(self) -> None:
        """The shutdown grace period is over: every answer still opening or running ends now, in its
        client's dialect (a 503 before the answer began, an error event in a stream)."""
        if not self.cut_off_answers.done():
            self.cut_off_answers.set_result(None)

    def shutting_down(self, method: str, target: str, headers: dict[str, str]) -> LocalResponse:
        """The 503 (with Retry-After) for a request that arrives while the bridge drains."""
        error = ShuttingDown("the bridge is shutting down and takes no new requests; retry shortly", retry_after=1)
        response = self._local_error(self._dialect(method, target, headers), error)
        response.headers["connection"] = "close"
        return response

    # --- routing ----------------------------------------------------------------------------------

    def route(self, method: str, target: str, headers: dict[str, str] | None = None) -> Route:
        """The route of a request; NoRoute (with the dialect to answer in) when there is none. A path
        under `/<account or provider>` (`/kiro/v1/messages`) is the door's route, pinned to it."""
        pin, rest = self.routing.split_path(target)
        route = self.router.route(method, rest, headers)
        route.pin = pin
        return route

    def internal_error(self, method: str, target: str, headers: dict[str, str]) -> LocalResponse:
        """A 500 in the dialect of the route, for failures outside `handle` (the addon's last resort)."""
        fmt = self._dialect(method, target, headers)
        status, response_headers, body = fmt.error_response(InternalError("internal error in the bridge; see its log"))
        return LocalResponse(status, response_headers, body)

    # --- before the body: decided from the request line and headers alone -------------------------

    async def screen(
        self, method: str, target: str, fields: Iterable[tuple[bytes, bytes]], body_length: int | None = 0
    ) -> tuple[dict[str, str], LocalResponse | None]:
        """The headers (lower-case names, read from the raw fields in linear time) and, when the
        request is refused from them alone, the answer: 431 past the header limits, always; and when
        a body is to follow (`body_length` > 0, or None for a body of unknown length): 404 for no
        route, 401 without a valid key, 413 for a declared length over `max_body_bytes`. A refused
        body need not be read; a request this lets through is handled by `handle` as usual."""
        try:
            headers = scan_headers(fields, self.config.max_header_count, self.config.max_header_bytes)
        except HeadersTooLarge as error:
            fmt = self._dialect(method, target)
            status, response_headers, body = fmt.error_response(error)
            return {}, LocalResponse(status, response_headers, body)
        if body_length == 0:
            return headers, None
        record = ExchangeRecord(endpoint=f"{method} {urlsplit(target).path}")
        fmt = self.router.default
        try:
            route = self.route(method, target, headers)
            fmt = route.client_format
            record.client_format = fmt.name
            _note_request(record, route.model, route.stream)
            if route.action == "health":
                return headers, None
            record.key_label = self.authenticate(IncomingRequest(method, target, headers, b""))
            if body_length is not None and body_length > self.config.max_body_bytes:
                raise RequestTooLarge(
                    f"request body is {body_length} bytes; the limit is "
                    f"{self.config.max_body_bytes} (setting 'max_body_bytes')"
                )
            return headers, None
        except NoRoute as no_route:
            record.client_format = no_route.client_format.name
            return headers, await self._error(no_route.client_format, no_route.error, record)
        except BridgeError as error:
            return headers, await self._error(fmt, error, record)

    def body_too_large(self, method: str, target: str, headers: dict[str, str]) -> LocalResponse:
        """The 413 for a body of unknown length that grew past `max_body_bytes` while it was read."""
        error = RequestTooLarge(
            f"request body is over the limit of {self.config.max_body_bytes} bytes (setting 'max_body_bytes')"
        )
        status, response_headers, body = self._dialect(method, target, headers).error_response(error)
        return LocalResponse(status, response_headers, body)

    def timed_out(self, method: str, target: str, headers: dict[str, str], message: str) -> LocalResponse:
        """The 408 for a client too slow to send its request (`client_header_timeout`, `client_body_timeout`)."""
        return self._local_error(self._dialect(method, target, headers), RequestTimeout(message))

    def refused_method(self, method: str, target: str) -> LocalResponse:
        """The 405 for CONNECT: the bridge is an API endpoint, never a forward proxy."""
        error = MethodNotAllowed(f"this is an API endpoint, not a proxy: {method} is refused")
        response = self._local_error(self.router.default, error)
        response.headers["allow"] = "GET, POST"
        return response

    def malformed(self, method: str, target: str, headers: dict[str, str], message: str) -> LocalResponse:
        """The 400 for a request mitmproxy refused as malformed (bad chunked encoding, smuggling headers)."""
        text = f"malformed HTTP request: {message}"
        return self._local_error(self._dialect(method, target, headers), InvalidRequest(text))

    @staticmethod
    def _local_error(fmt: ClientFormat, error: BridgeError) -> LocalResponse:
        status, headers, body = fmt.error_response(error)
        return LocalResponse(status, headers, body)

    def _dialect(self, method: str, target: str, headers: dict[str, str] | None = None) -> ClientFormat:
        try:
            return self.route(method, target, headers).client_format
        except NoRoute as no_route:
            return no_route.client_format

    # --- entry point --------------------------------------------------------------------------------

    async def handle(self, incoming: IncomingRequest) -> LocalResponse | Answer | DeferredAnswer:
        record = ExchangeRecord(endpoint=f"{incoming.method} {urlsplit(incoming.path).path}")
        fmt: ClientFormat = self.router.default
        try:
            route = self.route(incoming.method, incoming.path, incoming.headers)
            fmt = route.client_format
            record.client_format = fmt.name
            _note_request(record, route.model, route.stream)  # recorded even if the request proves invalid
            if route.action == "health":
                return LocalResponse(200, {"content-type": "application/json"}, b'{"status":"ok"}')
            record.key_label = self.authenticate(incoming)
            return await self._dispatch(route, incoming, record)
        except NoRoute as no_route:
            record.client_format = no_route.client_format.name
            return await self._error(no_route.client_format, no_route.error, record)
        except BridgeError as error:
            return await self._error(fmt, error, record)
        except Exception:  # a bug must still answer in the client's dialect, never forward
            log.exception("internal error while handling %s (exchange %s)", record.endpoint, record.id)
            return await self._error(fmt, _internal_error(record), record)

    def authenticate(self, incoming: IncomingRequest) -> str:
        """The label of the client key presented, compared in constant time; Unauthenticated if none."""
        offered = _offered_key(incoming)
        if not offered:
            raise Unauthenticated(
                "no API key: send it as 'Authorization: Bearer <key>', 'x-api-key' or "
                "'x-goog-api-key' (the bridge prints its key at startup)"
            )
        label = None
        # mitmproxy hands undecodable header bytes over as surrogates: compare them as the bytes sent
        offered_bytes = offered.encode("utf-8", "surrogateescape")
        for key in self.client_keys:  # no early exit: time does not depend on which key matched
            if hmac.compare_digest(key.key.encode(), offered_bytes):
                label = key.label
        if label is None:
            raise Unauthenticated(
                "invalid API key: use a key from the bridge's config 'api_keys' or the one printed at startup"
            )
        return label

    async def _dispatch(
        self, route: Route, incoming: IncomingRequest, record: ExchangeRecord
    ) -> LocalResponse | Answer | DeferredAnswer:
        fmt = route.client_format
        pins = self.routing.pins(route.pin, incoming.headers)
        if route.action == "models":
            await self.pool.refresh_models(timeout=MODEL_LIST_WAIT)
            return json_response(fmt.render_models(self.routing.models(self.pool, record.key_label, pins)))
        if route.action == "model":
            return self._one_model(fmt, route.model or "", record.key_label, pins)
        if route.action == "status":
            return json_response({"accounts": self.pool.status_report()})
        if len(incoming.body) > PARSE_OFF_LOOP_BYTES:
            request = await asyncio.to_thread(self._parse, route, incoming, record)
        else:
            request = self._parse(route, incoming, record)
        plan = self.routing.plan(request.model, record.key_label, pins)
        if route.action == "count_tokens":
            return await self._count_tokens(fmt, request, plan)
        return await self.open_answer(fmt, request, record, route.options, plan)

    # --- parsing ------------------------------------------------------------------------------------

    def _parse(self, route: Route, incoming: IncomingRequest, record: ExchangeRecord) -> ChatRequest:
        """The canonical request, with what the client sent (and what it became) on the record."""
        body = self._parse_body(incoming)
        self._check_size(body)
        # the bytes as received; the recorder parses and redacts them on its own thread (a copy made
        # here would cost the event loop time in proportion to the conversation) and escapes any lone surrogate
        record.request_raw = incoming.body
        fmt = route.client_format
        surrogate = lone_surrogate_path(incoming.body, body)
        if surrogate is not None:  # before the request names anything: the recorder and upstreams need valid text
            where = escape_surrogates(fmt.field_path(surrogate))
            raise InvalidRequest(
                f"{where}: the text holds a lone UTF-16 surrogate (an escape such as \\ud800 without its pair), "
                "which is not valid Unicode; send the character it was meant to be, or remove it",
                param=where,
            )
        if isinstance(body, dict):  # what the body names (the URL's model and stream win), should it prove invalid
            _note_request(
                record,
                body.get("model") if route.model is None else None,
                body.get("stream") if route.stream is None else None,
            )
        if route.action == "count_tokens":
            request = fmt.parse_count_tokens(body, route.model)
        else:
            request = fmt.parse_request(body, model=route.model, stream=route.stream)
        if len(request.messages) > self.config.max_messages:  # a stored conversation it continues counts too
            raise RequestTooLarge(
                f"the conversation has {len(request.messages)} messages; the limit is "
                f"{self.config.max_messages} (setting 'max_messages')"
            )
        request.passthrough_headers = _passthrough_headers(incoming.headers)
        record.request_canonical = request.model_dump(mode="json", exclude_none=True)
        record.model_requested, record.stream = request.model, request.stream
        request.conversation = conversation_scope(record.key_label, incoming.headers)
        return request

    def _check_size(self, body: Any) -> None:
        """413 for more messages or parts than the limits, counted before any costly work."""
        messages = count_messages(body)
        if messages > self.config.max_messages:
            raise RequestTooLarge(
                f"the request has {messages} messages; the limit is {self.config.max_messages} (setting 'max_messages')"
            )
        parts = count_parts(body)
        if parts > self.config.max_parts:
            raise RequestTooLarge(
                f"the request has {parts} content parts in all; the limit is {self.config.max_parts} "
                "(setting 'max_parts')"
            )

    def _parse_body(self, incoming: IncomingRequest) -> Any:
        if len(incoming.body) > self.config.max_body_bytes:
            raise RequestTooLarge(
                f"request body is {len(incoming.body)} bytes; the limit is "
                f"{self.config.max_body_bytes} (setting 'max_body_bytes')"
            )
        if not incoming.body:
            raise InvalidRequest("the request body is empty; send a JSON object")
        if json_too_deep(incoming.body, self.config.max_json_depth):  # before json.loads can recurse
            raise InvalidRequest(
                f"the request body nests arrays/objects more than {self.config.max_json_depth} levels deep; "
                "the limit is the setting 'max_json_depth'"
            )
        try:
            return json.loads(incoming.body, parse_constant=_not_json)
        except (ValueError, RecursionError) as e:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
            raise InvalidRequest(f"the request body is not valid JSON: {e}") from None

    # --- local answers ------------------------------------------------------------------------------

    def _one_model(self, fmt: ClientFormat, model: str, key_label: str | None, pins: list[str]) -> LocalResponse:
        model = model.removeprefix("models/")
        for info in self.routing.models(self.pool, key_label, pins):
            if info.id == model:
                return json_response(fmt.render_model(info))
        raise ModelNotFound(
            f"model '{model}' is not served by any configured account; GET {fmt.models_path} lists the models"
        )

    async def _candidates(self, fmt: ClientFormat, plan: Plan) -> list[Candidate]:
        """The accounts serving the plan's model that its pins and the client key admit; a model no
        account knows yet may be new in an account's own listing, so the listings are brought up to
        date (paced by each provider) before a 404."""
        if not self.pool.serves(plan.model):
            await self.pool.refresh_models(timeout=MODEL_LIST_WAIT)
        return self.routing.admitted(self.failover.candidates(plan.model, fmt.models_path), plan, fmt.models_path)

    def _prepare(self, plan: Plan, record: ExchangeRecord | None) -> Callable[[ChatRequest, Candidate], ChatRequest]:
        """The request as each account receives it: the plan's model and alias parameters, then the
        prompt and parameter rules that apply to that account. The record keeps the last one made (the
        attempt that answered), with what the rules changed under `rules_applied`."""

        def prepare(request: ChatRequest, candidate: Candidate) -> ChatRequest:
            base, notes = plan.base_request(request)
            state = candidate.state
            target = Target(plan.key_label, [*plan.names, candidate.upstream_model], state.name, state.provider_name)
            applied = self.rules.apply(base, target)
            if record is not None and (applied.request is not request):
                canonical = applied.request.model_dump(mode="json", exclude_none=True)
                canonical["rules_applied"] = notes + applied.notes
                record.request_canonical = canonical
            return applied.request

        return prepare

    async def _count_tokens(self, fmt: ClientFormat, request: ChatRequest, plan: Plan | None = None) -> LocalResponse:
        plan = plan or self.routing.plan(request.model, None)
        candidates = await self._candidates(fmt, plan)
        count, method = await self.failover.count_tokens(request, candidates, self._prepare(plan, None))
        response = json_response(fmt.render_count_tokens(count))
        response.headers["x-llmbridge-token-count-method"] = method
        return response

    # --- answers from upstream ----------------------------------------------------------------------

    async def open_answer(
        self,
        fmt: ClientFormat,
        request: ChatRequest,
        record: ExchangeRecord,
        options: RenderOptions = DEFAULT_OPTIONS,
        plan: Plan | None = None,
    ) -> Answer | DeferredAnswer:
        """The answer, opened through failover; a stream is handed on at once, still opening."""
        plan = plan or self.routing.plan(request.model, record.key_label)
        candidates = await self._candidates(fmt, plan)
        prepare = self._prepare(plan, record)
        self.failover.check(request, candidates, prepare)
        opening = self._until_cut_off(self._answer(fmt, request, record, candidates, options, plan, prepare))
        if request.stream:
            return DeferredAnswer(asyncio.ensure_future(self._answer_or_error(fmt, record, opening)), record)
        return await opening

    async def _until_cut_off(self, opening: Awaitable[Answer]) -> Answer:
        """The answer once opened; ShuttingDown if the shutdown grace period ends first (the opening
        is cancelled and waited for, so its attempt is closed and its account slot freed)."""
        task = asyncio.ensure_future(opening)
        waiting: set[asyncio.Future[Any]] = {task, self.cut_off_answers}
        try:
            await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:  # the client left, or the bridge stops: so does the opening
            await _cancel(task)
            raise
        if not task.done():
            await _cancel(task)
            if task.cancelled() or task.exception() is not None:
                raise shutdown_error("the answer had not begun")
        return task.result()

    async def _answer(
        self,
        fmt: ClientFormat,
        request: ChatRequest,
        record: ExchangeRecord,
        candidates: list[Candidate],
        options: RenderOptions,
        plan: Plan,
        prepare: Callable[[ChatRequest, Candidate], ChatRequest],
    ) -> Answer:
        try:
            lease = await self.failover.open(request, candidates, record, prepare)
        except BridgeError as error:
            lease, request, plan = await self._fall_back(fmt, request, record, plan, error)
        if plan.alias is not None:
            answer_as_alias(lease.call)  # the answer names the alias the client asked for
        return Answer(
            call=lease.call,
            client_format=fmt,
            request=request,
            record=record,
            keepalive_seconds=self.config.keepalive_seconds,
            on_done=lease.answer_done,
            options=options,
            cut_off=self.cut_off_answers,
        )

    async def _fall_back(
        self, fmt: ClientFormat, request: ChatRequest, record: ExchangeRecord, plan: Plan, error: BridgeError
    ) -> tuple[Lease, ChatRequest, Plan]:
        """When no account of the model could answer, the models of its `[fallbacks]` chain in order
        (same pins and key allow-list); the answer then names the model that served it. `error` again
        when the chain is empty, ends, or the failure was the request's own fault."""
        chain = self.config.fallbacks.get(plan.requested) or self.config.fallbacks.get(plan.model) or []
        if not chain or error.action == "stop" or error.status < 429:
            raise error
        for model in chain:
            fallback_plan = self.routing.plan(model, record.key_label, plan.pins)
            fallback = request.model_copy(update={"model": model})
            try:
                candidates = await self._candidates(fmt, fallback_plan)
                prepare = self._prepare(fallback_plan, record)
                self.failover.check(fallback, candidates, prepare)
                lease = await self.failover.open(fallback, candidates, record, prepare)
            except BridgeError as fallback_error:  # not served, cannot honour the request, or failing too
                log.info("fallback %s for %s could not answer: %s", model, plan.requested, fallback_error.message)
                continue
            log.info("%s could not answer (%s); fallback %s answers", plan.requested, error.kind, model)
            return lease, fallback, fallback_plan
        error.message = f"{error.message}; fallbacks tried: {', '.join(chain)}"
        raise error

    async def _answer_or_error(
        self, fmt: ClientFormat, record: ExchangeRecord, opening: Awaitable[Answer]
    ) -> Answer | LocalResponse:
        try:
            return await opening
        except BridgeError as error:
            return await self._error(fmt, error, record)
        except asyncio.CancelledError:  # the client left, or the bridge is stopping: still recorded
            if not record.client_disconnected and not record.error_kind:
                record.error_kind, record.error_message = "interrupted", "the bridge stopped before the answer began"
            record.duration_ms = record.elapsed_ms()
            await self.on_exchange(record)
            raise
        except Exception:
            log.exception("internal error while opening %s (exchange %s)", record.endpoint, record.id)
            return await self._error(fmt, _internal_error(record), record)

    # --- errors -------------------------------------------------------------------------------------

    async def _error(self, fmt: ClientFormat, error: BridgeError, record: ExchangeRecord) -> LocalResponse:
        status, headers, body = fmt.error_response(fmt.in_own_words(error))
        headers.update(attempt_headers(record))
        record.status, record.error_kind, record.error_message = status, error.kind, error.message
        record.duration_ms = record.elapsed_ms()
        if record.key_label is not None or record.attempts:
            await self.on_exchange(record)
        return LocalResponse(status, headers, body, record)


async def _cancel(task: asyncio.Future[Any]) -> None:
    """Cancel `task` and wait until it has finished (its attempt closed, its account slot freed)."""
    task.cancel()
    try:
        await task
    except BaseException:
        pass


def _internal_error(record: ExchangeRecord) -> InternalError:
    return InternalError(f"internal error in the bridge; its log has the details under exchange {record.id}")


def _not_json(name: str) -> Any:
    """json.loads reads NaN, Infinity and -Infinity; JSON has no such values and no upstream takes them."""
    raise ValueError(f"{name} is not a JSON value")


def _passthrough_headers(headers: dict[str, str]) -> dict[str, str]:
    """The client headers a provider of the same family may get. Their values are ASCII tokens;
    anything else (bytes that were not UTF-8 arrive as surrogates) could be neither sent nor recorded."""
    passed = {h: headers[h] for h in PASSTHROUGH_HEADERS if h in headers}
    for name, value in passed.items():
        if not value.isascii():
            raise InvalidRequest(f"header {name}: the value must be ASCII", param=name)
    return passed


def _note_request(record: ExchangeRecord, model: Any, stream: Any) -> None:
    """Record the model and stream flag a request names before it is validated, so that a request
    refused as invalid is still recorded with them; values of the wrong type are left out."""
    if isinstance(model, str) and model:
        record.model_requested = model
    if isinstance(stream, bool):
        record.stream = stream


def _offered_key(incoming: IncomingRequest) -> str | None:
    auth = incoming.headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip()
    for header in ("x-api-key", "x-goog-api-key"):
        if incoming.headers.get(header):
            return incoming.headers[header].strip()
    query = parse_qs(urlsplit(incoming.path).query)
    return query["key"][0] if query.get("key") else None
