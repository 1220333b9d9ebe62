"""The Anthropic Messages dialect: request parsing, results, the SSE event sequence, errors, models."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anthropic
import httpx2
import pytest
from pydantic import TypeAdapter

from llmbridge import errors
from llmbridge.accumulate import StreamAccumulator
from llmbridge.canonical import (
    ChatRequest,
    ChatResult,
    Finish,
    ImagePart,
    ModelInfo,
    Reasoning,
    ReasoningDelta,
    ReasoningPart,
    ResponseFormat,
    StreamError,
    StreamEvent,
    TextDelta,
    TextPart,
    ToolCallDelta,
    ToolCallPart,
    ToolCallStart,
    ToolChoice,
    ToolResultPart,
    Usage,
    UsageEvent,
)
from llmbridge.formats.anthropic import AnthropicFormat
from llmbridge.sse import SSEDecoder
from llmbridge.tokens import estimate_input_tokens

FMT = AnthropicFormat()
DATA = Path(__file__).parent / "data"


def body(**extra: Any) -> dict[str, Any]:
    return {"model": "claude-x", "max_tokens": 100, "messages": [{"role": "user", "content": "hi"}], **extra}


# Renders below use a request that enabled thinking: only such clients get thinking blocks.
THINKING_REQUEST = FMT.parse_request(body(max_tokens=4000, thinking={"type": "enabled", "budget_tokens": 2048}))


def user(*blocks: dict[str, Any]) -> dict[str, Any]:
    return {"role": "user", "content": list(blocks)}


def assistant(*blocks: dict[str, Any]) -> dict[str, Any]:
    return {"role": "assistant", "content": list(blocks)}


IMG = {"type": "base64", "media_type": "image/jpeg", "data": "QUJD"}
CALL = {"type": "tool_use", "id": "toolu_1", "name": "Read", "input": {"path": "a"}}


# --- request parsing -------------------------------------------------------------------------------

PARSE_CASES = [
    ("system string", body(system="be brief"), lambda r: r.system == [TextPart(text="be brief")]),
    (
        "system blocks keep cache_control",
        body(
            system=[
                {"type": "text", "text": "a", "cache_control": {"type": "ephemeral"}},
                {"type": "text", "text": "b"},
            ]
        ),
        lambda r: (
            r.system_text() == "a\n\nb"
            and r.system[0].provider_metadata == {"anthropic": {"cache_control": {"type": "ephemeral"}}}
        ),
    ),
    ("content string", body(), lambda r: r.messages[0].parts == [TextPart(text="hi")]),
    (
        "image base64",
        body(messages=[user({"type": "image", "source": IMG})]),
        lambda r: r.messages[0].parts == [ImagePart(media_type="image/jpeg", data="QUJD")],
    ),
    (
        "image url",
        body(messages=[user({"type": "image", "source": {"type": "url", "url": "https://x/y.jpg"}})]),
        lambda r: r.messages[0].parts == [ImagePart(media_type="image/jpeg", url="https://x/y.jpg")],
    ),
    (
        "tool_use and named tool_result",
        body(
            messages=[
                user({"type": "text", "text": "go"}),
                assistant(CALL),
                user({"type": "tool_result", "tool_use_id": "toolu_1", "content": "data", "is_error": True}),
            ]
        ),
        lambda r: (
            r.messages[1].parts == [ToolCallPart(id="toolu_1", name="Read", arguments={"path": "a"})]
            and r.messages[2].parts
            == [ToolResultPart(tool_call_id="toolu_1", name="Read", is_error=True, content=[TextPart(text="data")])]
        ),
    ),
    (
        "tool_result blocks with image",
        body(
            messages=[
                assistant(CALL),
                user(
                    {
                        "type": "tool_result",
                        "tool_use_id": "toolu_1",
                        "content": [{"type": "text", "text": "see"}, {"type": "image", "source": IMG}],
                    }
                ),
            ]
        ),
        lambda r: (
            r.messages[1].parts[0].content == [TextPart(text="see"), ImagePart(media_type="image/jpeg", data="QUJD")]
        ),
    ),
    (
        "thinking signature",
        body(messages=[assistant({"type": "thinking", "thinking": "hm", "signature": "S"})]),
        lambda r: r.messages[0].parts == [ReasoningPart(text="hm", signature="S")],
    ),
    (
        "redacted thinking",
        body(messages=[assistant({"type": "redacted_thinking", "data": "XYZ"})]),
        lambda r: r.messages[0].parts == [ReasoningPart(redacted="XYZ")],
    ),
    (
        "tools",
        body(tools=[{"name": "f", "description": "d", "input_schema": {"type": "object"}}]),
        lambda r: (r.tools[0].name, r.tools[0].description, r.tools[0].parameters) == ("f", "d", {"type": "object"}),
    ),
    ("tool_choice auto", body(tool_choice={"type": "auto"}), lambda r: r.tool_choice == ToolChoice(mode="auto")),
    ("tool_choice any", body(tool_choice={"type": "any"}), lambda r: r.tool_choice == ToolChoice(mode="required")),
    ("tool_choice none", body(tool_choice={"type": "none"}), lambda r: r.tool_choice == ToolChoice(mode="none")),
    (
        "tool_choice tool",
        body(tool_choice={"type": "tool", "name": "f", "disable_parallel_tool_use": True}),
        lambda r: r.tool_choice == ToolChoice(mode="tool", name="f") and r.parallel_tool_calls is False,
    ),
    (
        "thinking enabled",
        body(thinking={"type": "enabled", "budget_tokens": 2048}),
        lambda r: r.reasoning == Reasoning(budget_tokens=2048, include_thoughts=True),
    ),
    ("thinking disabled", body(thinking={"type": "disabled"}), lambda r: r.reasoning == Reasoning(effort="none")),
    (
        "thinking adaptive",
        body(thinking={"type": "adaptive"}),
        lambda r: r.reasoning == Reasoning(effort="high", include_thoughts=True),
    ),
    (
        "adaptive with effort",
        body(thinking={"type": "adaptive"}, output_config={"effort": "max"}),
        lambda r: r.reasoning == Reasoning(effort="xhigh", include_thoughts=True),
    ),
    (
        "output format",
        body(output_config={"format": {"type": "json_schema", "schema": {"type": "object"}}}),
        lambda r: r.response_format == ResponseFormat(type="json_schema", json_schema={"type": "object"}),
    ),
    (
        "sampling",
        body(stop_sequences=["END"], temperature=0.5, top_p=0.9, top_k=40, stream=True, metadata={"user_id": "u"}),
        lambda r: (
            (r.stop, r.temperature, r.top_p, r.top_k, r.stream, r.max_tokens) == (["END"], 0.5, 0.9, 40, True, 100)
        ),
    ),
    (
        "unknown fields tolerated",
        body(service_tier="auto", container=None, whatever={"x": 1}),
        lambda r: r.model == "claude-x",
    ),
]


@pytest.mark.parametrize("raw, check", [c[1:] for c in PARSE_CASES], ids=[c[0] for c in PARSE_CASES])
def test_parse_request_translates(raw: dict[str, Any], check: Any) -> None:
    assert check(FMT.parse_request(raw))


BAD_CASES = [
    ("max_tokens", {"model": "m", "messages": []}),
    ("model", {"max_tokens": 1, "messages": []}),
    ("messages", {"model": "m", "max_tokens": 1}),
    ("messages.0.role", body(messages=[{"role": "tool", "content": "x"}])),
    ("messages", body(messages=[{"role": "system", "content": "only system text"}])),
    (
        "messages.1.content.0.type",
        body(messages=[user({"type": "text", "text": "a"}), {"role": "system", "content": [{"type": "image"}]}]),
    ),
    (
        "messages.2.content.0.type",
        body(messages=[user({"type": "text", "text": "a"}), assistant(CALL), user({"type": "server_tool_use"})]),
    ),
    ("messages.0.content.0.type", body(messages=[user(CALL)])),
    ("messages.0.content.0.source.type", body(messages=[user({"type": "image", "source": {"type": "file"}})])),
    ("messages.0.content.0.text", body(messages=[user({"type": "text", "text": 3})])),
    (
        "tools.1.type",
        body(tools=[{"name": "f", "input_schema": {}}, {"type": "web_search_20250305", "name": "web_search"}]),
    ),
    ("tools.0.input_schema", body(tools=[{"name": "f"}])),
    ("tool_choice.name", body(tool_choice={"type": "tool"})),
    ("tool_choice.type", body(tool_choice={"type": "sometimes"})),
    ("thinking.budget_tokens", body(thinking={"type": "enabled"})),
    ("thinking.type", body(thinking={"type": "maybe"})),
    ("temperature", body(temperature="hot")),
    ("stop_sequences.1", body(stop_sequences=["a", 2])),
    ("mcp_servers", body(mcp_servers=[{"type": "url", "url": "https://x"}])),
    # no empty conversation, and no empty turn, goes upstream
    ("messages", body(messages=[])),
    ("model", body(model="")),
    ("messages.0.content", body(messages=[user()])),
    (
        "messages.1.content",
        body(messages=[user({"type": "text", "text": "a"}), assistant(), user({"type": "text", "text": "b"})]),
    ),
    ("messages", body(messages=[assistant()])),
]


@pytest.mark.parametrize("param, raw", BAD_CASES, ids=[c[0] for c in BAD_CASES])
def test_parse_request_names_the_bad_field(param: str, raw: dict[str, Any]) -> None:
    with pytest.raises(errors.InvalidRequest) as caught:
        FMT.parse_request(raw)
    assert caught.value.param == param
    assert caught.value.message.startswith(param) or param in caught.value.message


def test_an_empty_final_assistant_message_adds_nothing() -> None:
    request = FMT.parse_request(body(messages=[user({"type": "text", "text": "a"}), assistant()]))
    assert [m.role for m in request.messages] == ["user"]


def test_a_value_pydantic_refuses_is_a_400_not_a_500(monkeypatch: pytest.MonkeyPatch) -> None:
    # safety net: a value the typed getters let through still becomes InvalidRequest naming the field
    from llmbridge.formats import anthropic_parse

    monkeypatch.setattr(anthropic_parse, "_passthrough", lambda headers: {"anthropic-beta": 5})
    with pytest.raises(errors.InvalidRequest) as caught:
        FMT.parse_request(body())
    assert caught.value.param == "passthrough_headers.anthropic-beta"


def test_server_tool_error_names_the_tool() -> None:
    with pytest.raises(errors.InvalidRequest, match="web_search"):
        FMT.parse_request(body(tools=[{"type": "web_search_20250305", "name": "web_search"}]))


def test_body_that_is_not_an_object_is_400() -> None:
    with pytest.raises(errors.InvalidRequest):
        FMT.parse_request([1, 2])


def test_headers_become_passthrough_headers() -> None:
    request = FMT.parse_request(
        body(),
        headers={
            "Anthropic-Beta": "interleaved-thinking-2025-05-14",
            "anthropic-version": "2023-06-01",
            "x-api-key": "k",
        },
    )
    assert request.passthrough_headers == {
        "anthropic-beta": "interleaved-thinking-2025-05-14",
        "anthropic-version": "2023-06-01",
    }


def test_count_tokens_request_needs_no_max_tokens() -> None:
    request = FMT.parse_count_tokens({"model": "m", "messages": [{"role": "user", "content": "hi"}]})
    assert request.messages[0].text() == "hi"
    assert FMT.render_count_tokens(estimate_input_tokens(request)) == {"input_tokens": 5}


def test_claude_code_request_parses_with_tool_names_unchanged() -> None:
    raw = json.loads((DATA / "claude_code_request.json").read_text())
    request = FMT.parse_request(raw)
    assert [t.name for t in request.tools] == [t["name"] for t in raw["tools"]]
    assert "mcp__github__create_issue" in [t.name for t in request.tools]
    assert len(request.system) == 3 and request.reasoning == Reasoning(budget_tokens=31999, include_thoughts=True)
    calls = {p.id: p.name for m in request.messages for p in m.parts if isinstance(p, ToolCallPart)}
    results = [p for m in request.messages for p in m.parts if isinstance(p, ToolResultPart)]
    assert len(calls) == 8 and len(results) == 8
    assert all(r.name == calls[r.tool_call_id] for r in results)
    signed = [p for m in request.messages for p in m.parts if isinstance(p, ReasoningPart)]
    assert [bool(p.signature) for p in signed] == [True, True, False, True]
    assert signed[2].redacted
    assert 5000 < estimate_input_tokens(request) < 20000


# --- results -----------------------------------------------------------------------------------------

RESULT = ChatResult(
    id="abc",
    model="claude-x",
    finish_reason="tool_calls",
    parts=[
        ReasoningPart(text="think", signature="SIG"),
        ReasoningPart(redacted="RED"),
        TextPart(text="Let me look."),
        ToolCallPart(
            id="toolu_9",
            name="Read",
            arguments={"path": "a"},
            provider_metadata={"gemini": {"thought_signature": "GSIG"}},
        ),
    ],
    usage=Usage(input_tokens=120, output_tokens=30, cached_tokens=100, cache_creation_tokens=5),
)


def test_render_result_is_a_valid_sdk_message() -> None:
    rendered = FMT.render_result(RESULT, THINKING_REQUEST)
    message = anthropic.types.Message.model_validate(rendered)
    assert message.id == "msg_abc" and message.stop_reason == "tool_use"
    assert [b.type for b in message.content] == ["thinking", "redacted_thinking", "text", "tool_use"]
    assert message.usage.input_tokens == 15  # 120 - 100 read from cache - 5 written to it
    assert (message.usage.cache_read_input_tokens, message.usage.cache_creation_input_tokens) == (100, 5)


STOP_REASONS = [
    ("stop", "end_turn"),
    ("length", "max_tokens"),
    ("tool_calls", "tool_use"),
    ("stop_sequence", "stop_sequence"),
    ("content_filter", "refusal"),
]


@pytest.mark.parametrize("reason, stop_reason", STOP_REASONS)
def test_render_result_stop_reasons(reason: str, stop_reason: str) -> None:
    result = ChatResult(id="msg_1", model="m", finish_reason=reason, stop_sequence="END", parts=[TextPart(text="x")])
    rendered = FMT.render_result(result, THINKING_REQUEST)
    assert rendered["stop_reason"] == stop_reason
    assert rendered["stop_sequence"] == ("END" if reason == "stop_sequence" else None)
    assert rendered["id"] == "msg_1"


def test_signatures_survive_a_round_trip() -> None:
    rendered = FMT.render_result(RESULT, THINKING_REQUEST)
    again = FMT.parse_request(
        body(messages=[user({"type": "text", "text": "q"}), {"role": "assistant", "content": rendered["content"]}])
    )
    assert again.messages[1].parts == RESULT.parts


# --- streams -----------------------------------------------------------------------------------------

GOLDEN_EVENTS: list[StreamEvent] = [
    ReasoningDelta(text="Let me"),
    ReasoningDelta(text=" think."),
    ReasoningDelta(signature="SIG=="),
    TextDelta(text="Reading."),
    ToolCallStart(index=0, id="toolu_1", name="Read"),
    ToolCallDelta(index=0, arguments='{"pa'),
    ToolCallDelta(index=0, arguments='th": "a"}'),
    UsageEvent(usage=Usage(input_tokens=50, output_tokens=20, cached_tokens=10)),
    Finish(reason="tool_calls"),
]
GOLDEN_SSE = DATA / "golden" / "anthropic_thinking_text_tool.sse"


def render_stream(events: list[StreamEvent], response_id: str = "r1") -> bytes:
    renderer = FMT.stream_renderer(THINKING_REQUEST, response_id, "claude-x")
    return renderer.start() + b"".join(renderer.feed(e) for e in events) + renderer.close()


def test_stream_golden_thinking_text_and_fragmented_tool_use() -> None:
    assert render_stream(GOLDEN_EVENTS).decode() == GOLDEN_SSE.read_text()


def test_message_start_carries_the_input_estimate_and_message_delta_the_real_usage() -> None:
    decoded = SSEDecoder().feed(
        render_stream(GOLDEN_EVENTS + [UsageEvent(usage=Usage(input_tokens=42, output_tokens=7))])
    )
    events = {e.event: json.loads(e.data) for e in decoded}
    estimate = estimate_input_tokens(THINKING_REQUEST)
    assert estimate > 0 and events["message_start"]["message"]["usage"]["input_tokens"] == estimate
    assert events["message_delta"]["usage"]["input_tokens"] == 42
    unknown = {e.event: json.loads(e.data) for e in SSEDecoder().feed(render_stream([TextDelta(text="x")]))}
    assert unknown["message_delta"]["usage"]["input_tokens"] == estimate


def test_stream_events_are_valid_sdk_events() -> None:
    adapter: TypeAdapter[Any] = TypeAdapter(anthropic.types.RawMessageStreamEvent)
    decoded = SSEDecoder().feed(render_stream(GOLDEN_EVENTS))
    for event in decoded:
        assert adapter.validate_python(json.loads(event.data)).type == event.event


def test_stream_error_mid_stream_ends_without_message_stop() -> None:
    out = render_stream(
        [TextDelta(text="Hel"), StreamError(kind="overloaded", message="busy", status=529), TextDelta(text="lo")]
    ).decode()
    assert out.endswith('event: error\ndata: {"type":"error","error":{"type":"overloaded_error","message":"busy"}}\n\n')
    assert "message_stop" not in out and '"lo"' not in out


def test_stream_redacted_thinking_and_new_block_after_signature() -> None:
    out = render_stream(
        [
            ReasoningDelta(redacted="RED"),
            ReasoningDelta(text="a", signature="S1"),
            ReasoningDelta(text="b"),
            Finish(reason="stop"),
        ]
    )
    events = [json.loads(e.data) for e in SSEDecoder().feed(out)]
    starts = [e["content_block"]["type"] for e in events if e["type"] == "content_block_start"]
    assert starts == ["redacted_thinking", "thinking", "thinking"]
    assert events[-2]["delta"]["stop_reason"] == "end_turn"


def test_stream_accumulates_like_the_canonical_result() -> None:
    """The SDK's own stream accumulator sees the same message the events describe."""
    payload = render_stream(GOLDEN_EVENTS)

    def handler(request: httpx2.Request) -> httpx2.Response:
        assert request.url.path == "/v1/messages"
        return httpx2.Response(200, headers={"content-type": "text/event-stream"}, content=payload)

    client = anthropic.Anthropic(
        api_key="k", base_url="http://bridge.test", http_client=httpx2.Client(transport=httpx2.MockTransport(handler))
    )
    with client.messages.stream(
        model="claude-x", max_tokens=100, messages=[{"role": "user", "content": "hi"}]
    ) as stream:
        message = stream.get_final_message()
    accumulator = StreamAccumulator("r1", "claude-x")
    accumulator.feed_all(GOLDEN_EVENTS)
    expected = FMT.render_result(accumulator.result(), THINKING_REQUEST)
    assert message.model_dump(mode="json", exclude_none=True)["content"] == expected["content"]
    assert message.stop_reason == "tool_use" and message.usage.output_tokens == 20


def test_keepalive_is_a_ping_event() -> None:
    renderer = FMT.stream_renderer(THINKING_REQUEST, "r", "m")
    assert renderer.keepalive() == b'event: ping\ndata: {"type":"ping"}\n\n'


def test_error_after_start_is_an_error_event() -> None:
    renderer = FMT.stream_renderer(THINKING_REQUEST, "r", "m")
    renderer.start()
    out = renderer.error(errors.RateLimited("slow down"))
    assert out == (
        b'event: error\ndata: {"type":"error","error":{"type":"rate_limit_error","message":"slow down"}}\n\n'
    )
    assert renderer.close() == b""


# --- errors and models -------------------------------------------------------------------------------

ERROR_CASES = [
    (errors.InvalidRequest("bad"), 400, "invalid_request_error"),
    (errors.Unauthenticated("who"), 401, "authentication_error"),
    (errors.AccountUnusable("no"), 403, "permission_error"),
    (errors.PermissionDenied("not this model"), 403, "permission_error"),
    (errors.ModelNotFound("gone"), 404, "not_found_error"),
    (errors.RequestTooLarge("big"), 413, "request_too_large"),
    (errors.RateLimited("slow", retry_after=3), 429, "rate_limit_error"),
    (errors.QuotaExhausted("quota"), 429, "rate_limit_error"),
    (errors.InternalError("oops"), 500, "api_error"),
    (errors.UpstreamUnavailable("down"), 502, "api_error"),
    (errors.CapacityExhausted("full"), 503, "overloaded_error"),
    (errors.NoAccount("none"), 503, "overloaded_error"),
    (errors.UpstreamError("busy", status=529), 529, "overloaded_error"),
]


@pytest.mark.parametrize("error, status, kind", ERROR_CASES, ids=[type(c[0]).__name__ for c in ERROR_CASES])
def test_error_shapes(error: errors.BridgeError, status: int, kind: str) -> None:
    code, headers, payload = FMT.error_response(error)
    assert code == status
    assert json.loads(payload) == {"type": "error", "error": {"type": kind, "message": error.message}}
    if kind != "request_too_large":  # documented by Anthropic for 413, absent from the SDK's union
        assert anthropic.types.ErrorResponse.model_validate(json.loads(payload)).error.type == kind


def test_render_models() -> None:
    models = [
        ModelInfo(id="claude-a", provider="kiro", display_name="Claude A", context_window=200000),
        ModelInfo(id="gemini-b", provider="gemini-cli"),
    ]
    rendered = FMT.render_models(models)
    summary = (rendered["has_more"], rendered["first_id"], rendered["last_id"])
    assert summary == (False, "claude-a", "gemini-b")
    infos = [anthropic.types.ModelInfo.model_validate(m) for m in rendered["data"]]
    assert [i.display_name for i in infos] == ["Claude A", "gemini-b"]


def test_request_model_is_canonical() -> None:
    raw = json.loads((DATA / "claude_code_request.json").read_text())
    request = FMT.parse_request(raw)
    assert ChatRequest.model_validate_json(request.model_dump_json()) == request


def test_thinking_is_not_shown_to_clients_that_did_not_enable_it():
    plain = FMT.parse_request(body())
    assert [b["type"] for b in FMT.render_result(RESULT, plain)["content"]] == ["text", "tool_use"]
    assert "thinking" in [b["type"] for b in FMT.render_result(RESULT, THINKING_REQUEST)["content"]]
    renderer = FMT.stream_renderer(plain, "r", "m")
    out = (
        renderer.start()
        + renderer.feed(ReasoningDelta(text="secret musing"))
        + renderer.feed(TextDelta(text="answer"))
        + renderer.close()
    )
    assert b"secret musing" not in out and b"thinking" not in out and b"answer" in out


# --- what Claude Code sends to models whose names it does not know ----------------------------------


def test_system_messages_inside_messages_join_the_system_text_in_order() -> None:
    raw = body(
        system=[{"type": "text", "text": "top"}],
        messages=[
            {"role": "system", "content": "first"},
            user({"type": "text", "text": "question"}),
            {"role": "system", "content": [{"type": "text", "text": "reminder"}]},
            user({"type": "text", "text": "more"}),
            assistant({"type": "text", "text": "answer"}),
        ],
    )
    request = FMT.parse_request(raw)
    assert [p.text for p in request.system] == ["top", "first", "reminder"]
    # the two user turns the system message stood between are one turn now
    assert [m.role for m in request.messages] == ["user", "assistant"]
    assert [p.text for p in request.messages[0].parts] == ["question", "more"]


def test_consecutive_turns_the_client_sent_stay_as_sent() -> None:
    raw = body(messages=[user({"type": "text", "text": "a"}), user({"type": "text", "text": "b"})])
    assert [m.role for m in FMT.parse_request(raw).messages] == ["user", "user"]


@pytest.mark.parametrize("display, shown", [(None, True), ("summarized", True), ("updates", True), ("omitted", False)])
def test_thinking_display(display: str | None, shown: bool) -> None:
    for thinking in ({"type": "adaptive"}, {"type": "enabled", "budget_tokens": 2048}):
        raw = body(thinking={**thinking, **({"display": display} if display else {})}, max_tokens=4096)
        reasoning = FMT.parse_request(raw).reasoning
        assert reasoning is not None and reasoning.include_thoughts is shown


def test_thinking_display_must_be_known() -> None:
    with pytest.raises(errors.InvalidRequest) as caught:
        FMT.parse_request(body(thinking={"type": "adaptive", "display": "full"}))
    assert caught.value.param == "thinking.display"


def test_title_request_shape_is_accepted() -> None:
    """Claude Code's session-title request: no tools, thinking off, a JSON schema for the answer."""
    schema = {"type": "object", "properties": {"title": {"type": "string"}}, "required": ["title"]}
    raw = body(
        tools=[],
        thinking={"type": "disabled"},
        temperature=1,
        output_config={"format": {"type": "json_schema", "schema": schema}},
    )
    request = FMT.parse_request(raw)
    assert request.tools == [] and request.reasoning is not None and request.reasoning.effort == "none"
    assert request.response_format is not None and request.response_format.json_schema == schema
