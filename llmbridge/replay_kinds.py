"""Offline mode: an upstream call's kind (a stream, or one whole JSON answer), and a recorded answer of
one kind given as the other.

Why: the API-key providers are called upstream as the client asked, so a non-stream request now goes
upstream non-stream. A corpus recorded before that holds only streams for them; its nearest answer to
a non-stream call would be a stream the whole-body decoder cannot read, and for Gemini (whose path says
the kind) there was no recording of "the same call" at all. Offline mode (`ReplayServer(nearest=True)`)
answers such a call from the recording of the other kind, converted.

No format code of its own: an upstream call of an API-key provider is itself a request in one of the
bridge's own dialects (OpenAI chat completions, Anthropic messages, Gemini), so the bridge's router
says which call it is and which kind it asks for (Gemini's path, else the body's `stream`), and the
door that speaks the dialect writes the answer in the other kind:

    a stream       -> the provider's stream decoder -> canonical events -> StreamAccumulator
                   -> ChatResult -> the door's render_result: the non-stream JSON body
    a whole answer -> the provider's whole-body decoder -> canonical events -> the door's stream
                   renderer: SSE

Only a successful answer converts; a recorded error, or a body cut short or malformed, raises
`Unconvertible` saying why.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING, Any

from llmbridge.accumulate import StreamAccumulator
from llmbridge.canonical import ChatRequest, ChatResult, StreamError, StreamEvent
from llmbridge.errors import BridgeError, UpstreamUnavailable
from llmbridge.formats import load_formats
from llmbridge.formats.base import dumps
from llmbridge.providers.base import StreamDecoder, provider_class
from llmbridge.routing import NoRoute, Route, Router

if TYPE_CHECKING:
    from llmbridge.replay import Fixture

WHOLE = "application/json"
# The status of the answer to a call no recording can answer: every API-key provider classifies a 500
# as the upstream failing (the client gets a 502 and the message; the account is not cooled down),
# where a 502 or 503 would read as "overloaded, retry shortly" for Gemini, the wrong advice.
UNCONVERTIBLE_STATUS = 500


@dataclass
class Call:
    """An upstream call as offline mode compares calls."""

    same: tuple[str, ...]  # equal for the same call, whichever kind of answer it asks for
    stream: bool  # it asks for a stream
    route: Route | None  # the door whose dialect the call is in, where one is

    @property
    def kind(self) -> str:
        return "stream" if self.stream else "non-stream"


class Unconvertible(Exception):
    """A recorded answer that cannot stand in for one of the other kind; the message says why."""


@cache
def _router() -> Router:
    return Router(load_formats())


def read_call(method: str, target: str, body: Any) -> Call:
    """The call `method target` with `body`: a generation in a door's dialect is the same call as
    the door's other generation of that model (Gemini's `:generateContent` and
    `:streamGenerateContent`); any other call is its method and target."""
    try:
        route = _router().route(method, target)
    except NoRoute:
        route = None
    asks_stream = isinstance(body, dict) and body.get("stream") is True
    if route is None or route.action != "chat":
        return Call((method, target), asks_stream, None)
    same = (method, route.client_format.name, route.model or "")
    return Call(same, asks_stream if route.stream is None else route.stream, route)


def convertible(fixture: Fixture) -> bool:
    """Whether the recording can stand in for an answer of the other kind: a successful answer of a
    provider that answers both kinds (so has a decoder for each)."""
    return _answers_both_kinds(fixture) and 200 <= fixture.data["response"]["status"] < 300


def converted(fixture: Fixture, call: Call, body: Any) -> tuple[str, bytes]:
    """The recorded answer of `fixture` as the kind of answer `call` (with `body`) asks for: its
    content type and bytes. Unconvertible when it cannot be."""
    status = fixture.data["response"]["status"]
    if call.route is None or not _answers_both_kinds(fixture):
        raise Unconvertible(f"{fixture.data.get('provider')} answers come only as streams")
    if not 200 <= status < 300:
        raise Unconvertible(f"it is an error answer (HTTP {status})")
    decoder = provider_class(str(fixture.data["provider"])).answer_decoder(fixture.call.stream)
    assert decoder is not None  # a provider that answers both kinds decodes both
    events = _decoded(decoder, fixture.response_bytes())
    request = _request(call.route, body, call.stream)
    result = _accumulated(events, request, fallback_id=str(fixture.data.get("exchange_id") or fixture.path.stem))
    door = call.route.client_format
    if not call.stream:
        return WHOLE, dumps(door.render_result(result, request))
    renderer = door.stream_renderer(request, result.id, result.model, call.route.options)
    return renderer.content_type, renderer.start() + b"".join(renderer.feed(e) for e in events) + renderer.close()


def unconvertible_error(call: Call, message: str) -> bytes:
    """The error answer (status `UNCONVERTIBLE_STATUS`) for a call no recording could answer, in the
    call's own dialect: its provider classifies it and the client gets `message`."""
    assert call.route is not None
    return dumps(call.route.client_format.error_body(UpstreamUnavailable(message, status=UNCONVERTIBLE_STATUS)))


def _answers_both_kinds(fixture: Fixture) -> bool:
    return fixture.call.route is not None and provider_class(str(fixture.data.get("provider"))).whole_answers


def _decoded(decoder: StreamDecoder, raw: bytes) -> list[StreamEvent]:
    events = decoder.feed(raw) + decoder.close()
    error = next((e for e in events if isinstance(e, StreamError)), None)
    if error is not None:
        raise Unconvertible(f"it decodes to an error: {error.message}")
    return events


def _request(route: Route, body: Any, stream: bool) -> ChatRequest:
    """The call read by its door: what the door's renderers take from it (thinking shown, usage in
    the stream) is what the call asked for."""
    try:
        return route.client_format.parse_request(body, model=route.model, stream=stream)
    except BridgeError as e:
        raise Unconvertible(f"the {route.client_format.title} door cannot read the call: {e.message}") from None


def _accumulated(events: list[StreamEvent], request: ChatRequest, fallback_id: str) -> ChatResult:
    accumulator = StreamAccumulator(fallback_id, request.model)
    accumulator.feed_all(events)
    return accumulator.result()
