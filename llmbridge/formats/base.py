"""What every client format (a front door: the dialect a client speaks) implements.

A format declares the routes it serves (`endpoints`: method and path template -> action, with the
model and stream flag where its URLs carry them), parses the client's request into the canonical
`ChatRequest`, renders a `ChatResult` for non-stream clients, renders canonical stream events as its
own stream, and renders every `BridgeError` in its own error shape. It knows nothing about providers.

Adding a door: a module in `llmbridge/formats/` with a `ClientFormat` subclass, and one line in
`FORMATS` (`llmbridge/formats/__init__.py`). The bridge's routes, the startup banner and the README
check are built from the registry.
"""

from __future__ import annotations

import json
import math
import re
from abc import ABC, abstractmethod
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Callable, ClassVar, Literal, Mapping, Sequence
from urllib.parse import unquote

from llmbridge.canonical import ChatRequest, ChatResult, ModelInfo, StreamEvent
from llmbridge.errors import BridgeError

# What a route does: a generation, a token count, the model list, one model, the bridge's health.
Action = Literal["chat", "count_tokens", "models", "model", "health", "status"]
Query = Mapping[str, list[str]]
# Whether an endpoint applies to a request, from its (lower-case) headers and its parsed query string.
Condition = Callable[[Mapping[str, str], Query], bool]
MODEL = "{model}"


@dataclass(frozen=True)
class RenderOptions:
    """How the route asks for the stream to be framed; the default (SSE) suits most doors."""

    json_array: bool = False  # one JSON array written out piece by piece (Gemini without ?alt=sse)


DEFAULT_OPTIONS = RenderOptions()


@dataclass(frozen=True)
class Endpoint:
    """One route of a door: `method` and `path` -> `action`.

    `{model}` in the path takes the model id from the URL: anything up to the rest of the template,
    slashes and colons included (`kiro/claude-x`, `llama3:8b`), its percent-escapes decoded once.
    `stream` is set where the path decides it (Gemini's methods), else the body does; `options`
    reach the stream renderer. `when` limits the endpoint to requests whose headers and query it
    accepts (Gemini's `/v1` aliases, `?alt=sse`). Where several endpoints' paths take a request, the
    one with the most literal characters decides, then one with a `when`: its method must match,
    else the path has no route (in that endpoint's dialect)."""

    method: str
    path: str
    action: Action
    stream: bool | None = None
    options: RenderOptions = DEFAULT_OPTIONS
    when: Condition | None = None

    @cached_property
    def pattern(self) -> re.Pattern[str]:
        head, model, tail = self.path.partition(MODEL)
        return re.compile(re.escape(head) + ("(?P<model>.+)" if model else "") + re.escape(tail))

    @property
    def specificity(self) -> tuple[int, bool]:
        return len(self.path.replace(MODEL, "")), self.when is not None

    def takes(self, path: str, headers: Mapping[str, str], query: Query) -> re.Match[str] | None:
        """The match of `path` when this endpoint's path (and `when`) take the request, whatever the method."""
        if self.when is not None and not self.when(headers, query):
            return None
        return self.pattern.fullmatch(path)


def dumps(value: Any) -> bytes:
    """Compact JSON, UTF-8 (not ASCII-escaped), as the real APIs send it."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


class StreamRenderer(ABC):
    """Renders one response's canonical events as the client's stream; one per exchange."""

    content_type: ClassVar[str] = "text/event-stream"

    @abstractmethod
    def start(self) -> bytes:
        """Bytes to send before the first event (e.g. Anthropic's message_start); may be b""."""

    @abstractmethod
    def feed(self, event: StreamEvent) -> bytes:
        """The client bytes for one event; b"" when the event produces nothing yet."""

    @abstractmethod
    def close(self) -> bytes:
        """The end of the stream ([DONE], message_stop, ...)."""

    @abstractmethod
    def error(self, error: BridgeError) -> bytes:
        """An in-stream error event, for failures after the stream started."""

    def keepalive(self) -> bytes:
        """Sent during long upstream silences so that no idle timeout cuts the stream."""
        return b": keep-alive\n\n"


class ClientFormat(ABC):
    name: ClassVar[str]  # its key in FORMATS; recorded as the exchange's client_format
    title: ClassVar[str]  # how the startup banner names the door ("OpenAI")
    base_path: ClassVar[str] = ""  # what a client's base URL ends with ("/v1" for the OpenAI SDKs)
    headline: ClassVar[tuple[str, ...]]  # its main endpoints, as the banner and a 404 name them
    endpoints: ClassVar[tuple[Endpoint, ...]]  # every route the door serves
    prefixes: ClassVar[tuple[str, ...]] = ()  # an unknown path under one of these gets this door's 404
    models_path: ClassVar[str] = "/v1/models"  # where its clients list the models (errors point there)
    id_prefix: ClassVar[str] = ""  # before the exchange id in response ids ("chatcmpl-")
    # Canonical request fields (named as OpenAI's chat completions names them) as this door's
    # clients spell them, so that an error names the field the client actually sent.
    field_names: ClassVar[dict[str, str]] = {}
    # Whether a whole answer's id is always the door's own (`id_prefix` + exchange id) rather than the
    # upstream's: for doors whose clients name responses later (Responses' previous_response_id).
    own_ids: ClassVar[bool] = False
    # How the door's errors name a field in the body: `messages.0.content` (Anthropic, Gemini), or
    # `messages[0].content` with brackets (OpenAI's doors).
    bracket_paths: ClassVar[bool] = False

    def field_path(self, steps: Sequence[str | int]) -> str:
        """A path into the request body (keys and list indexes) as this door's errors name fields."""
        path = ""
        for step in steps:
            if isinstance(step, int):
                path += f"[{step}]" if self.bracket_paths else f".{step}" if path else str(step)
            else:
                path += f".{step}" if path else step
        return path or "(the body)"

    def model_from_path(self, raw: str) -> str:
        """The model id from a path's `{model}`: percent-escapes (`openai%2Fgpt-4o`) decoded exactly
        once; a malformed escape stays as it is, a bad UTF-8 byte becomes U+FFFD."""
        return unquote(raw)

    @abstractmethod
    def parse_request(self, body: Any, model: str | None = None, stream: bool | None = None) -> ChatRequest:
        """Canonical request from the parsed JSON body; InvalidRequest naming the field at fault.
        `model`/`stream` come from the URL for formats that put them there (Gemini)."""

    def parse_count_tokens(self, body: Any, model: str | None = None) -> ChatRequest:
        """The request whose input tokens a `count_tokens` route counts; by default a generation
        request's body."""
        return self.parse_request(body, model=model)

    @abstractmethod
    def stream_renderer(
        self, request: ChatRequest, response_id: str, model: str, options: RenderOptions = DEFAULT_OPTIONS
    ) -> StreamRenderer:
        """The renderer of one answer's stream; `options` come from the route."""

    @abstractmethod
    def render_result(self, result: ChatResult, request: ChatRequest) -> dict[str, Any]: ...

    @abstractmethod
    def error_body(self, error: BridgeError) -> dict[str, Any]:
        """The error in this dialect's JSON shape."""

    @abstractmethod
    def render_models(self, models: list[ModelInfo]) -> dict[str, Any]: ...

    @abstractmethod
    def render_model(self, model: ModelInfo) -> dict[str, Any]:
        """One model, for `GET .../models/{model}`."""

    @abstractmethod
    def render_count_tokens(self, input_tokens: int) -> dict[str, Any]: ...

    def in_own_words(self, error: BridgeError) -> BridgeError:
        """The error naming this door's field where a provider named the canonical one."""
        canonical = error.param or ""
        own = self.field_names.get(canonical)
        if own:
            error.message = re.sub(rf"(?<![\w.]){re.escape(canonical)}(?![\w.])", own, error.message)
            error.param = own
        return error

    def answered(self, request: ChatRequest, result: ChatResult, response_id: str) -> None:
        """Called once an answer has reached the client whole (streamed or not, not cut short):
        `response_id` is the id the client was given. For doors that keep state between requests
        (the Responses door's `previous_response_id`); by default nothing."""

    def error_response(self, error: BridgeError) -> tuple[int, dict[str, str], bytes]:
        headers = {"content-type": "application/json"}
        if error.retry_after is not None:
            headers["retry-after"] = str(max(1, math.ceil(error.retry_after)))  # never too early
        return error.status, headers, dumps(self.error_body(error))
