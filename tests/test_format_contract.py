"""The front-door contract (`llmbridge/formats/base.py`) and registry (`FORMATS`): a door declares its
routes, id prefix, model list, banner line and stream options, and nothing else has to change.

The proof: a fourth door, registered here with one registry line, is routed, answers, streams with
the options its route gives, names itself in the banner and in 404s, and prefixes its response ids."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from llmbridge.app import BridgeApp
from llmbridge.canonical import ChatRequest, ChatResult, Message, ModelInfo, StreamEvent, TextDelta, TextPart
from llmbridge.errors import BridgeError
from llmbridge.formats import FORMATS, load_formats
from llmbridge.formats.anthropic import AnthropicFormat
from llmbridge.formats.base import DEFAULT_OPTIONS, ClientFormat, Endpoint, RenderOptions, StreamRenderer, dumps
from llmbridge.formats.gemini import GeminiFormat
from llmbridge.formats.openai import OpenAIFormat
from llmbridge.formats.responses import ResponsesFormat
from llmbridge.routing import NoRoute
from tests.bridge_kit import KEY, IncomingRequest, answer, make_bridge, streamed, text_stream
from tests.bridge_process import write_config

AUTH = {"authorization": f"Bearer {KEY}"}


class EchoRenderer(StreamRenderer):
    content_type = "application/json"

    def __init__(self, response_id: str, options: RenderOptions) -> None:
        self.id, self.array = response_id, options.json_array

    def start(self) -> bytes:
        return b"[" if self.array else b""

    def feed(self, event: StreamEvent) -> bytes:
        return dumps({"id": self.id, "said": event.text}) + b"," if isinstance(event, TextDelta) else b""

    def close(self) -> bytes:
        return b"{}]" if self.array else b""

    def error(self, error: BridgeError) -> bytes:
        return dumps({"echo_error": error.message})


class EchoFormat(ClientFormat):
    """A door of its own: `POST /echo/{model}/say` with `{"say": "..."}`."""

    name = "echo"
    title = "Echo"
    base_path = "/echo"
    headline = ("POST /echo/{model}/say",)
    endpoints = (
        Endpoint("POST", "/echo/{model}/say", "chat", stream=False),
        Endpoint("POST", "/echo/{model}/stream", "chat", stream=True, options=RenderOptions(json_array=True)),
        Endpoint("GET", "/echo/models", "models"),
    )
    prefixes = ("/echo/",)
    models_path = "/echo/models"
    id_prefix = "echo-"

    def parse_request(self, body: Any, model: str | None = None, stream: bool | None = None) -> ChatRequest:
        return ChatRequest(
            model=model or body["model"],
            stream=bool(stream),
            messages=[Message(role="user", parts=[TextPart(text=body["say"])])],
        )

    def stream_renderer(
        self, request: ChatRequest, response_id: str, model: str, options: RenderOptions = DEFAULT_OPTIONS
    ) -> StreamRenderer:
        return EchoRenderer(response_id, options)

    def render_result(self, result: ChatResult, request: ChatRequest) -> dict[str, Any]:
        return {"id": result.id, "said": result.text()}

    def error_body(self, error: BridgeError) -> dict[str, Any]:
        return {"echo_error": error.message}

    def render_models(self, models: list[ModelInfo]) -> dict[str, Any]:
        return {"names": [m.id for m in models]}

    def render_model(self, model: ModelInfo) -> dict[str, Any]:
        return {"name": model.id}

    def render_count_tokens(self, input_tokens: int) -> dict[str, Any]:
        return {"n": input_tokens}


@pytest.fixture
def fourth_door(monkeypatch):
    monkeypatch.setitem(FORMATS, "echo", f"{__name__}:EchoFormat")  # the one line a new door adds


def say(path: str) -> IncomingRequest:
    return IncomingRequest("POST", path, dict(AUTH), json.dumps({"say": "hi"}).encode())


def test_a_registered_door_gets_its_routes_with_the_model_from_the_path(fourth_door):
    bridge, _ = make_bridge(lambda r: streamed(text_stream("ok")))
    route = bridge.route("POST", "/echo/openai%2Fm/say")
    assert (route.client_format.name, route.action, route.model, route.stream) == ("echo", "chat", "openai/m", False)
    assert bridge.route("GET", "/echo/models").action == "models"
    assert bridge.route("POST", "/v1/chat/completions").client_format.name == "openai"  # the others unchanged
    with pytest.raises(NoRoute) as no_route:
        bridge.route("GET", "/echo/nowhere")
    assert no_route.value.client_format.name == "echo"  # its own dialect under its prefix


def test_a_registered_door_answers_with_its_id_prefix_and_its_route_options(fourth_door):
    async def run():
        bridge, _ = make_bridge(lambda r: streamed(text_stream("ok")))
        whole = await answer(bridge, say("/echo/m/say"))
        stream = await answer(bridge, say("/echo/m/stream"))
        listing = await bridge.handle(IncomingRequest("GET", "/echo/models", dict(AUTH), b""))
        missing = await bridge.handle(say("/echo/nope/say"))
        return whole, stream, listing, missing, bridge.records

    (status, body), (stream_status, stream_body), listing, missing, records = asyncio.run(run())
    assert status == 200 and json.loads(body)["said"] == "ok"
    # a stream's id is the door's prefix and the exchange id (a whole answer takes the upstream's)
    assert stream_status == 200 and json.loads(stream_body)[0] == {"id": f"echo-{records[1].id}", "said": "ok"}
    assert json.loads(listing.body) == {"names": ["m", "openai/m"]}
    assert missing.status == 404 and "GET /echo/models lists" in json.loads(missing.body)["echo_error"]
    assert [r.client_format for r in records] == ["echo", "echo", "echo"]


def test_a_registered_door_is_in_the_banner_and_in_every_404(fourth_door, tmp_path, monkeypatch):
    monkeypatch.setenv("LLMBRIDGE_HOME", str(tmp_path / "home"))
    app = BridgeApp(write_config(tmp_path / "bridge.toml", []))
    banner = app.banner("127.0.0.1", 8418)
    assert "  Echo:      http://127.0.0.1:8418/echo   (POST /echo/{model}/say)" in banner
    assert "  OpenAI:    http://127.0.0.1:8418/v1     (POST /v1/chat/completions, GET /v1/models)" in banner
    assert "  Responses: http://127.0.0.1:8418/v1     (POST /v1/responses)" in banner

    async def run():
        bridge, _ = make_bridge()
        return await bridge.handle(IncomingRequest("GET", "/nowhere", dict(AUTH), b""))

    response = asyncio.run(run())
    assert response.status == 404 and "/echo/{model}/say" in json.loads(response.body)["error"]["message"]


def test_parse_count_tokens_defaults_to_a_generation_request_with_the_paths_model():
    request = EchoFormat().parse_count_tokens({"say": "hi"}, "m")
    assert request.model == "m" and not request.stream


@pytest.mark.parametrize("door", load_formats(), ids=lambda door: door.name)
def test_every_endpoint_of_a_registered_door_routes_to_itself(door):
    bridge, _ = make_bridge()
    hints = [({}, ""), ({"x-goog-api-key": KEY}, ""), ({}, "?alt=sse")]
    for endpoint in door.endpoints:
        target = endpoint.path.replace("{model}", "some/model")
        routes = [bridge.route(endpoint.method, target + query, headers) for headers, query in hints]
        assert any(
            (r.client_format.name, r.action, r.stream, r.options)
            == (door.name, endpoint.action, endpoint.stream, endpoint.options)
            for r in routes
        ), endpoint
        assert all(r.model in (None, "some/model") for r in routes)


def test_the_doors_id_prefixes_and_model_lists():
    doors = (OpenAIFormat, AnthropicFormat, GeminiFormat, ResponsesFormat)
    assert [door.id_prefix for door in doors] == ["chatcmpl-", "msg_", "", "resp_"]
    assert [door.own_ids for door in doors] == [False, False, False, True]
    assert [OpenAIFormat.models_path, GeminiFormat.models_path, ResponsesFormat.models_path] == [
        "/v1/models",
        "/v1beta/models",
        "/v1/models",
    ]
    assert [door.name for door in load_formats()] == list(FORMATS) == ["openai", "anthropic", "gemini", "responses"]


def test_two_doors_share_the_v1_prefix_each_with_its_own_routes():
    bridge, _ = make_bridge()
    assert bridge.route("POST", "/v1/responses").client_format.name == "responses"
    assert bridge.route("POST", "/v1/chat/completions").client_format.name == "openai"
    assert bridge.route("GET", "/v1/models").client_format.name == "openai"
    with pytest.raises(NoRoute) as no_route:
        bridge.route("GET", "/v1/responses/resp_123")  # retrieving a stored response is not served
    assert no_route.value.client_format.name == "responses"
    with pytest.raises(NoRoute) as wrong_method:
        bridge.route("GET", "/v1/responses")
    assert wrong_method.value.client_format.name == "responses"


# --- errors name the client's own field --------------------------------------------------------------


def test_a_provider_refusal_names_the_field_as_each_door_spells_it() -> None:
    from llmbridge.errors import InvalidRequest
    from llmbridge.formats import format_class

    def refusal() -> InvalidRequest:
        return InvalidRequest("kiro does not support response_format json_schema", param="response_format")

    said = {name: format_class(name)().in_own_words(refusal()) for name in FORMATS}
    assert said["openai"].param == "response_format"
    assert said["anthropic"].param == "output_config.format"
    assert said["anthropic"].message == "kiro does not support output_config.format json_schema"
    assert said["gemini"].param == "generationConfig.responseJsonSchema"
    assert "response_format" not in said["gemini"].message
    assert said["responses"].message == "kiro does not support text.format json_schema"


def test_every_door_field_name_is_a_canonical_field() -> None:
    from llmbridge.canonical import ChatRequest
    from llmbridge.formats import load_formats

    canonical = set(ChatRequest.model_fields) | {"reasoning_effort"}
    for door in load_formats():
        assert set(door.field_names) <= canonical, door.name
