"""OpenAI Responses: request parsing into the canonical model, the Response object and its event
stream (every event validated against the `openai` SDK's `responses` types), thought signatures in
reasoning items' `encrypted_content`, hosted tools left out visibly, and `previous_response_id`."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from openai.types.responses import Response, ResponseStreamEvent
from pydantic import TypeAdapter

from llmbridge.canonical import (
    ChatResult,
    Finish,
    ImagePart,
    Message,
    ReasoningDelta,
    ReasoningPart,
    StreamError,
    StreamEvent,
    TextDelta,
    TextPart,
    ToolCallDelta,
    ToolCallPart,
    ToolCallStart,
    ToolResultPart,
    Usage,
    UsageEvent,
    gemini_signature,
    with_gemini_signature,
)
from llmbridge.errors import InvalidRequest, RateLimited
from llmbridge.formats.responses import ResponsesFormat
from llmbridge.formats.responses.carrier import Sealed, seal, unseal
from llmbridge.formats.responses.render import ResponsesRenderer
from tests.bridge_kit import KEY, IncomingRequest, answer, make_bridge, sse, streamed, text_stream

EVENT = TypeAdapter(ResponseStreamEvent)
AUTH = {"authorization": f"Bearer {KEY}"}
GEMINI_SIG = "c2lnLWdlbWluaQ=="
WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "Weather for a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    "strict": True,
}
NAMESPACE = {
    "type": "namespace",
    "name": "multi_agent_v1",
    "description": "Sub-agents",
    "tools": [
        {
            "type": "function",
            "name": "spawn_agent",
            "description": "Start a sub-agent",
            "parameters": {"type": "object", "properties": {"task": {"type": "string"}}},
            "strict": False,
        }
    ],
}


def parse(fmt: ResponsesFormat | None = None, **body: Any):
    body.setdefault("model", "m")
    body.setdefault("input", "hi")
    return (fmt or ResponsesFormat()).parse_request(body)


def refused(**body: Any) -> InvalidRequest:
    with pytest.raises(InvalidRequest) as error:
        parse(**body)
    return error.value


# --- parsing ---------------------------------------------------------------------------------------


def test_string_input_and_instructions():
    request = parse(input="Hello", instructions="Be brief.", max_output_tokens=100, temperature=0.2, top_p=0.9)
    assert [p.text for p in request.system] == ["Be brief."]
    assert [(m.role, m.text()) for m in request.messages] == [("user", "Hello")]
    assert (request.max_tokens, request.temperature, request.top_p, request.stream) == (100, 0.2, 0.9, False)
    assert request.client_options["store"] is True  # OpenAI's default
    assert parse(stream=True, store=False).client_options["store"] is False


def test_message_items_of_every_role_and_content_type():
    request = parse(
        instructions="first",
        input=[
            {"type": "message", "role": "developer", "content": [{"type": "input_text", "text": "dev rules"}]},
            {"role": "system", "content": "sys rules"},
            {
                "type": "message",
                "role": "user",
                "content": [
                    {"type": "input_text", "text": "what is this"},
                    {"type": "input_image", "image_url": "data:image/jpeg;base64,AAAA", "detail": "auto"},
                    {"type": "input_image", "image_url": "https://example.com/a.png", "detail": "low"},
                ],
            },
            {"role": "assistant", "content": [{"type": "output_text", "text": "a cat", "annotations": []}]},
            {"role": "user", "content": "thanks"},
        ],
    )
    assert [p.text for p in request.system] == ["first", "dev rules", "sys rules"]
    assert [m.role for m in request.messages] == ["user", "assistant", "user"]
    first = request.messages[0].parts
    assert isinstance(first[1], ImagePart) and (first[1].media_type, first[1].data) == ("image/jpeg", "AAAA")
    assert isinstance(first[2], ImagePart) and first[2].url == "https://example.com/a.png"
    assert request.messages[1].text() == "a cat"


def test_what_codex_sends_is_accepted_and_the_harmless_rest_ignored():
    request = parse(
        input=[{"type": "message", "id": "msg_1", "role": "user", "content": [{"type": "input_text", "text": "hi"}]}],
        tools=[WEATHER, NAMESPACE, {"type": "web_search", "external_web_access": True}],
        tool_choice="auto",
        parallel_tool_calls=True,
        reasoning={"effort": "medium", "summary": "auto"},
        store=False,
        stream=True,
        include=["reasoning.encrypted_content"],
        prompt_cache_key="abc",
        client_metadata={"x": "y"},
        metadata={"k": "v"},
        user="u",
        service_tier="auto",
        truncation="auto",
        top_logprobs=0,
        stream_options={"include_obfuscation": False},
        background=False,
        text={"verbosity": "low"},
    )
    assert [t.name for t in request.tools] == ["get_weather", "multi_agent_v1__spawn_agent"]
    assert request.dropped_tools == ["web_search"]
    assert request.tool_choice is not None and request.tool_choice.mode == "auto"
    assert request.parallel_tool_calls is True
    assert request.reasoning is not None and request.reasoning.effort == "medium"
    assert request.reasoning.include_thoughts is True
    assert request.client_options["encrypted_reasoning"] and request.client_options["summary"]
    assert request.client_options["tool_names"] == {"multi_agent_v1__spawn_agent": ["multi_agent_v1", "spawn_agent"]}
    assert "Sub-agents" in request.tools[1].description


def user_part(part: dict[str, Any]) -> dict[str, Any]:
    return {"role": "user", "content": [part]}


@pytest.mark.parametrize(
    "body, param",
    [
        ({"n": 2}, "n"),
        ({"background": True}, "background"),
        ({"conversation": "conv_1"}, "conversation"),
        ({"prompt": {"id": "pmpt_1"}}, "prompt"),
        ({"include": ["message.output_text.logprobs"]}, "include"),
        ({"tools": [{"type": "custom", "name": "apply_patch"}]}, "tools[0].type"),
        ({"tools": [{"type": "function"}]}, "tools[0].name"),
        ({"tools": [WEATHER, WEATHER]}, "tools[1].name"),
        ({"tool_choice": {"type": "web_search"}, "tools": [{"type": "web_search"}]}, "tool_choice"),
        ({"tool_choice": {"type": "function", "name": "nope"}, "tools": [WEATHER]}, "tool_choice.name"),
        ({"input": [{"type": "item_reference", "id": "msg_1"}]}, "input[0]"),
        ({"input": [{"type": "web_search_call", "id": "ws_1"}]}, "input[0].type"),
        (
            {"input": [{"role": "user", "content": [{"type": "input_file", "file_id": "f"}]}]},
            "input[0].content[0].type",
        ),
        (
            {"input": [{"role": "user", "content": [{"type": "input_image", "file_id": "f"}]}]},
            "input[0].content[0].file_id",
        ),
        ({"input": [{"role": "tool", "content": "x"}]}, "input[0].role"),
        ({"input": []}, "input"),
        ({"max_output_tokens": 0}, "max_output_tokens"),
        ({"temperature": 3}, "temperature"),
        ({"reasoning": {"effort": "huge"}}, "reasoning.effort"),
        ({"text": {"format": {"type": "xml"}}}, "text.format.type"),
        ({"text": {"format": {"type": "json_schema", "name": "x"}}}, "text.format.schema"),
        ({"model": 3}, "model"),
    ],
)
def test_what_the_bridge_cannot_honour_is_a_400_naming_the_parameter(body, param):
    assert refused(**body).param == param


def test_no_model_and_no_input_are_refused():
    with pytest.raises(InvalidRequest) as error:
        ResponsesFormat().parse_request({"input": "hi"})
    assert error.value.param == "model"
    with pytest.raises(InvalidRequest) as error:
        ResponsesFormat().parse_request({"model": "m"})
    assert error.value.param == "input"


def test_tool_choice_forms():
    assert parse(tools=[WEATHER], tool_choice="required").tool_choice.mode == "required"
    assert parse(tools=[WEATHER], tool_choice="none").tool_choice.mode == "none"
    forced = parse(tools=[WEATHER], tool_choice={"type": "function", "name": "get_weather"}).tool_choice
    assert (forced.mode, forced.name) == ("tool", "get_weather")
    spawned = parse(
        tools=[NAMESPACE], tool_choice={"type": "function", "namespace": "multi_agent_v1", "name": "spawn_agent"}
    ).tool_choice
    assert spawned.name == "multi_agent_v1__spawn_agent"
    allowed = parse(
        tools=[WEATHER, NAMESPACE, {"type": "web_search"}],
        tool_choice={
            "type": "allowed_tools",
            "mode": "required",
            "tools": [{"type": "function", "name": "get_weather"}],
        },
    )
    assert [t.name for t in allowed.tools] == ["get_weather"] and allowed.tool_choice.mode == "required"
    only_hosted = parse(tools=[{"type": "file_search"}, {"type": "code_interpreter"}], tool_choice="auto")
    assert only_hosted.tools == [] and only_hosted.tool_choice is None
    assert only_hosted.dropped_tools == ["file_search", "code_interpreter"]


def test_function_calls_and_their_outputs_make_assistant_and_user_turns():
    request = parse(
        tools=[WEATHER, NAMESPACE],
        input=[
            {"role": "user", "content": "Weather in Paris? And start an agent."},
            {
                "type": "function_call",
                "id": "fc_1",
                "status": "completed",
                "call_id": "call_1",
                "name": "get_weather",
                "arguments": '{"city": "Paris"}',
            },
            {
                "type": "function_call",
                "call_id": f"call_2__thought__{GEMINI_SIG}",
                "name": "spawn_agent",
                "namespace": "multi_agent_v1",
                "arguments": "{}",
            },
            {"type": "function_call_output", "call_id": "call_1", "output": "sunny"},
            {
                "type": "function_call_output",
                "call_id": f"call_2__thought__{GEMINI_SIG}",
                "output": [{"type": "input_text", "text": "started"}],
            },
        ],
    )
    user, assistant, results = request.messages
    assert (user.role, assistant.role, results.role) == ("user", "assistant", "user")
    calls = assistant.parts
    assert all(isinstance(c, ToolCallPart) for c in calls)
    assert [(c.id, c.name, c.arguments) for c in calls] == [
        ("call_1", "get_weather", {"city": "Paris"}),
        ("call_2", "multi_agent_v1__spawn_agent", {}),
    ]
    assert gemini_signature(calls[1].provider_metadata) == GEMINI_SIG
    outputs = results.parts
    assert all(isinstance(r, ToolResultPart) for r in outputs)
    assert [(r.tool_call_id, r.name, r.text()) for r in outputs] == [
        ("call_1", "get_weather", "sunny"),
        ("call_2", "multi_agent_v1__spawn_agent", "started"),
    ]


def test_bad_function_call_arguments_are_a_400():
    error = refused(input=[{"type": "function_call", "call_id": "c", "name": "f", "arguments": "{nope"}])
    assert error.param == "input[0].arguments"
    # nested past the parser's recursion limit, or JSON's missing NaN: a 400, not a 500
    for arguments in ("[" * 100_000, '{"x": Infinity}'):
        error = refused(input=[{"type": "function_call", "call_id": "c", "name": "f", "arguments": arguments}])
        assert error.param == "input[0].arguments"


def test_an_empty_model_is_a_400():
    assert refused(model="").param == "model"


def test_reasoning_options():
    assert parse().reasoning is None
    effort_only = parse(reasoning={"effort": "high"}).reasoning
    assert (effort_only.effort, effort_only.include_thoughts) == ("high", None)
    summary = parse(reasoning={"summary": "detailed"})
    assert summary.reasoning.include_thoughts is True and summary.client_options["summary"]


def test_text_format_json_schema_becomes_structured_output():
    schema = {"type": "object", "properties": {"title": {"type": "string"}}, "required": ["title"]}
    request = parse(text={"format": {"type": "json_schema", "name": "title", "schema": schema, "strict": True}})
    fmt = request.response_format
    assert (fmt.type, fmt.name, fmt.json_schema, fmt.strict) == ("json_schema", "title", schema, True)
    assert parse(text={"format": {"type": "json_object"}}).response_format.type == "json_object"
    assert parse(text={"format": {"type": "text"}}).response_format.type == "text"


# --- the signature carrier -------------------------------------------------------------------------


def test_sealed_values_read_back_and_foreign_ones_are_nothing():
    sealed = Sealed(text="think", signature="claude-sig", gemini=GEMINI_SIG, placement="call")
    assert unseal(seal(sealed)) == sealed
    assert unseal("gAAAAABo-openai-encrypted") is None
    assert unseal("llmbridge.1.!!!") is None


def test_reasoning_items_put_signatures_back_where_they_came_from():
    claude = seal(Sealed(text="Let me think.", signature="claude-sig"))
    call = seal(Sealed(gemini=GEMINI_SIG, placement="call"))
    request = parse(
        input=[
            {"role": "user", "content": "hi"},
            {"type": "reasoning", "id": "rs_1", "summary": [], "encrypted_content": claude},
            {"role": "assistant", "content": [{"type": "output_text", "text": "ok"}]},
            {"role": "user", "content": "weather?"},
            {"type": "reasoning", "id": "rs_2", "summary": [], "encrypted_content": call},
            {"type": "function_call", "call_id": "c1", "name": "get_weather", "arguments": "{}"},
            {"type": "function_call", "call_id": "c2", "name": "get_weather", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "c1", "output": "x"},
            {"type": "function_call_output", "call_id": "c2", "output": "y"},
            {
                "type": "reasoning",
                "id": "rs_3",
                "summary": [{"type": "summary_text", "text": "from real OpenAI"}],
                "encrypted_content": "gAAAA-foreign",
            },
            {"role": "assistant", "content": "done"},
        ],
    )
    first, claude_turn, _, call_turn, _, last = request.messages
    thought = claude_turn.parts[0]
    assert isinstance(thought, ReasoningPart) and (thought.text, thought.signature) == ("Let me think.", "claude-sig")
    assert [type(p) for p in call_turn.parts] == [ToolCallPart, ToolCallPart]  # the carrier item adds no part
    assert [gemini_signature(p.provider_metadata) for p in call_turn.parts] == [GEMINI_SIG, None]
    foreign = last.parts[0]
    assert isinstance(foreign, ReasoningPart) and (foreign.text, foreign.signature) == ("from real OpenAI", None)


# --- rendering -------------------------------------------------------------------------------------


def render(events: list[StreamEvent], **body: Any) -> tuple[list[dict[str, Any]], ResponsesRenderer]:
    request = parse(**body)
    renderer = ResponsesRenderer(request, "resp_abc", "m")
    raw = renderer.start() + b"".join(renderer.feed(e) for e in events) + renderer.close()
    return sse_events(raw), renderer


def sse_events(raw: bytes) -> list[dict[str, Any]]:
    """The events of a stream, each checked against the SDK's types and its own `event:` line."""
    events = []
    for block in raw.decode().strip().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.split("\n"))
        event = json.loads(lines["data"])
        assert lines["event"] == event["type"]
        EVENT.validate_python(event)
        events.append(event)
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    return events


def types(events: list[dict[str, Any]]) -> list[str]:
    return [e["type"].removeprefix("response.") for e in events]


def check_final(events: list[dict[str, Any]]) -> Response:
    final = Response.model_validate(events[-1]["response"])
    done = [e["item"] for e in events if e["type"] == "response.output_item.done"]
    assert [item.model_dump(exclude_none=True) for item in final.output] == [
        Response.model_validate({**events[-1]["response"], "output": [d]}).output[0].model_dump(exclude_none=True)
        for d in done
    ]
    return final


def test_a_text_stream_is_openais_exact_event_sequence():
    events, _ = render(
        [
            TextDelta(text="Hel"),
            TextDelta(text="lo"),
            UsageEvent(usage=Usage(input_tokens=12, output_tokens=3, cached_tokens=4, reasoning_tokens=1)),
            Finish(reason="stop"),
        ]
    )
    assert types(events) == [
        "created",
        "in_progress",
        "output_item.added",
        "content_part.added",
        "output_text.delta",
        "output_text.delta",
        "output_text.done",
        "content_part.done",
        "output_item.done",
        "completed",
    ]
    item_id = events[2]["item"]["id"]
    assert all(e["item_id"] == item_id and e["output_index"] == 0 for e in events[3:8])
    assert all(e["content_index"] == 0 for e in events[3:8])
    assert events[0]["response"]["status"] == "in_progress" and events[0]["response"]["output"] == []
    assert events[6]["text"] == "Hello"
    final = check_final(events)
    assert (final.id, final.status, final.output_text) == ("resp_abc", "completed", "Hello")
    assert final.usage is not None
    assert (final.usage.input_tokens, final.usage.output_tokens, final.usage.total_tokens) == (12, 3, 15)
    assert final.usage.input_tokens_details.cached_tokens == 4
    assert final.usage.output_tokens_details.reasoning_tokens == 1


def test_function_calls_stream_with_argument_deltas_and_the_clients_own_names():
    events, _ = render(
        [
            TextDelta(text="Checking."),
            ToolCallStart(index=0, id="call_1", name="get_weather"),
            ToolCallDelta(index=0, arguments='{"city":'),
            ToolCallDelta(index=0, arguments='"Paris"}'),
            ToolCallStart(index=1, id="call_2", name="multi_agent_v1__spawn_agent"),
            Finish(reason="tool_calls"),
        ],
        tools=[WEATHER, NAMESPACE],
    )
    assert types(events)[8:] == [
        "output_item.added",
        "function_call_arguments.delta",
        "function_call_arguments.delta",
        "function_call_arguments.done",
        "output_item.done",
        "output_item.added",
        "function_call_arguments.done",
        "output_item.done",
        "completed",
    ]
    final = check_final(events)
    calls = [item for item in final.output if item.type == "function_call"]
    assert [(c.call_id, c.name, c.namespace, c.arguments, c.status) for c in calls] == [
        ("call_1", "get_weather", None, '{"city":"Paris"}', "completed"),
        ("call_2", "spawn_agent", "multi_agent_v1", "{}", "completed"),
    ]
    assert [e["output_index"] for e in events if e["type"] == "response.output_item.added"] == [0, 1, 2]
    echoed = final.model_dump()["tools"]
    assert [t["name"] for t in echoed] == ["get_weather", "multi_agent_v1"]
    assert echoed[1]["tools"][0]["name"] == "spawn_agent"


def test_reasoning_summary_events_and_signatures_sealed_in_encrypted_content():
    meta = with_gemini_signature({}, GEMINI_SIG)
    events, _ = render(
        [
            ReasoningDelta(text="The user wants "),
            ReasoningDelta(text="weather."),
            ToolCallStart(index=0, id="call_1", name="get_weather", provider_metadata=meta),
            ToolCallDelta(index=0, arguments='{"city":"Paris"}'),
            Finish(reason="tool_calls"),
        ],
        tools=[WEATHER],
        reasoning={"effort": "low", "summary": "auto"},
        include=["reasoning.encrypted_content"],
    )
    assert types(events)[2:9] == [
        "output_item.added",
        "reasoning_summary_part.added",
        "reasoning_summary_text.delta",
        "reasoning_summary_text.delta",
        "reasoning_summary_text.done",
        "reasoning_summary_part.done",
        "output_item.done",
    ]
    final = check_final(events)
    reasoning, call = final.output
    assert reasoning.type == "reasoning" and reasoning.summary[0].text == "The user wants weather."
    assert unseal(reasoning.encrypted_content) == Sealed(
        text="The user wants weather.", gemini=GEMINI_SIG, placement="call"
    )
    assert call.type == "function_call" and call.call_id == "call_1"  # the id stays clean


def test_without_encrypted_content_a_calls_signature_rides_in_its_call_id():
    meta = with_gemini_signature({}, GEMINI_SIG)
    events, _ = render(
        [
            ReasoningDelta(text="hidden"),
            ToolCallStart(index=0, id="call_1", name="get_weather", provider_metadata=meta),
        ],
        tools=[WEATHER],
    )
    final = check_final(events)
    assert [item.type for item in final.output] == ["function_call"]  # no summary asked: thinking hidden
    assert final.output[0].call_id == f"call_1__thought__{GEMINI_SIG}"


def test_a_signature_with_no_open_reasoning_gets_a_reasoning_item_of_its_own():
    meta = with_gemini_signature({}, GEMINI_SIG)
    events, _ = render(
        [TextDelta(text="Let me check."), ToolCallStart(index=0, id="c", name="get_weather", provider_metadata=meta)],
        tools=[WEATHER],
        include=["reasoning.encrypted_content"],
    )
    final = check_final(events)
    assert [item.type for item in final.output] == ["message", "reasoning", "function_call"]
    assert final.output[1].summary == []
    assert unseal(final.output[1].encrypted_content) == Sealed(gemini=GEMINI_SIG, placement="call")


def test_claude_thinking_is_sealed_with_its_text_and_signature():
    events, _ = render(
        [ReasoningDelta(text="Hmm."), ReasoningDelta(signature="claude-sig"), TextDelta(text="Hi")],
        include=["reasoning.encrypted_content"],
    )
    final = check_final(events)
    assert final.output[0].summary == []
    assert unseal(final.output[0].encrypted_content) == Sealed(text="Hmm.", signature="claude-sig")


@pytest.mark.parametrize("summary", [True, False])
def test_output_items_sent_back_give_the_canonical_parts_again(summary: bool):
    """What a Gemini backend said comes back as it was, signatures on the same parts."""
    thought_meta = with_gemini_signature({}, "sig-thought")
    call_meta = with_gemini_signature({}, GEMINI_SIG)
    parts = [
        ReasoningPart(text="plan", signature="sig-thought", provider_metadata=thought_meta),
        TextPart(text="Looking."),
        ToolCallPart(id="c1", name="get_weather", arguments={"city": "Paris"}, provider_metadata=call_meta),
        ToolCallPart(id="c2", name="multi_agent_v1__spawn_agent", arguments={"task": "x"}),
    ]
    body: dict[str, Any] = {"tools": [WEATHER, NAMESPACE], "include": ["reasoning.encrypted_content"]}
    if summary:
        body["reasoning"] = {"summary": "auto"}
    fmt = ResponsesFormat()
    request = parse(fmt, **body)
    result = ChatResult(id="resp_1", model="m", parts=parts, finish_reason="tool_calls")
    output = fmt.render_result(result, request)["output"]
    again = parse(fmt, tools=[WEATHER, NAMESPACE], input=[{"role": "user", "content": "hi"}, *output])
    assistant = again.messages[1]
    assert [p.model_dump(exclude={"signature"}) for p in assistant.parts] == [
        p.model_dump(exclude={"signature"}) for p in parts
    ]


def test_a_failure_mid_stream_is_an_error_event_then_response_failed():
    events, _ = render([TextDelta(text="Hal"), StreamError(kind="rate_limited", message="slow down", status=429)])
    assert types(events)[-5:] == ["output_text.done", "content_part.done", "output_item.done", "error", "failed"]
    assert events[-2]["code"] == "rate_limited" and events[-2]["message"] == "slow down"
    failed = Response.model_validate(events[-1]["response"])
    assert failed.status == "failed" and failed.error is not None
    assert (failed.error.code, failed.error.message) == ("rate_limit_exceeded", "slow down")
    assert failed.output[0].status == "incomplete"


def test_the_bridge_failing_mid_stream_ends_the_same_way():
    request = parse()
    renderer = ResponsesRenderer(request, "resp_x", "m")
    raw = renderer.start() + renderer.feed(TextDelta(text="a")) + renderer.error(RateLimited("cooling"))
    raw += renderer.close()  # nothing more after a failure
    assert types(sse_events(raw))[-2:] == ["error", "failed"]


def test_max_output_tokens_reached_is_response_incomplete():
    events, _ = render([TextDelta(text="cut"), Finish(reason="length")], max_output_tokens=5)
    assert types(events)[-1] == "incomplete"
    final = Response.model_validate(events[-1]["response"])
    assert final.status == "incomplete" and final.incomplete_details.reason == "max_output_tokens"
    assert final.max_output_tokens == 5 and final.output[0].status == "incomplete"


def test_a_whole_answer_is_the_response_the_stream_ends_with():
    parts: list[Any] = [ReasoningPart(text="think"), TextPart(text="Hello")]
    usage = Usage(input_tokens=5, output_tokens=2)
    body = {"reasoning": {"summary": "auto"}, "instructions": "be kind", "metadata": {"a": "b"}}
    fmt = ResponsesFormat()
    request = parse(fmt, **body)
    whole = fmt.render_result(ChatResult(id="resp_1", model="m", parts=parts, usage=usage), request)
    events, _ = render(
        [ReasoningDelta(text="think"), TextDelta(text="Hello"), UsageEvent(usage=usage), Finish(reason="stop")],
        **body,
    )
    streamed_final = events[-1]["response"]
    volatile = ("id", "created_at", "completed_at", "output")
    assert {k: v for k, v in whole.items() if k not in volatile} == {
        k: v for k, v in streamed_final.items() if k not in volatile
    }
    strip = [{k: v for k, v in item.items() if k != "id"} for item in whole["output"]]
    assert strip == [{k: v for k, v in item.items() if k != "id"} for item in streamed_final["output"]]
    assert Response.model_validate(whole).output_text == "Hello"
    assert whole["instructions"] == "be kind" and whole["metadata"] == {"a": "b"}


def test_errors_are_in_openais_shape():
    body = ResponsesFormat().error_body(InvalidRequest("bad", param="input"))
    assert body == {
        "error": {"message": "bad", "type": "invalid_request_error", "param": "input", "code": "invalid_request"}
    }


# --- previous_response_id --------------------------------------------------------------------------


def test_a_stored_response_continues_the_conversation_without_its_instructions():
    fmt = ResponsesFormat()
    first = parse(
        fmt,
        instructions="old instructions",
        input=[{"role": "developer", "content": "dev"}, {"role": "user", "content": "Weather?"}],
        tools=[WEATHER],
    )
    call = ToolCallPart(id="c1", name="get_weather", arguments={"city": "Rome"})
    fmt.answered(first, ChatResult(id="resp_1", model="m", parts=[call]), "resp_1")
    follow = parse(
        fmt,
        previous_response_id="resp_1",
        instructions="new instructions",
        input=[{"type": "function_call_output", "call_id": "c1", "output": "rainy"}],
        tools=[WEATHER],
    )
    assert [p.text for p in follow.system] == ["new instructions", "dev"]
    assert [m.role for m in follow.messages] == ["user", "assistant", "user"]
    result = follow.messages[2].parts[0]
    assert isinstance(result, ToolResultPart) and (result.name, result.text()) == ("get_weather", "rainy")
    # the stored conversation is not changed by the request that continued it
    assert len(fmt.store.get("resp_1").messages) == 2


def test_store_false_keeps_nothing_and_an_unknown_id_is_previous_response_not_found():
    fmt = ResponsesFormat()
    request = parse(fmt, store=False)
    fmt.answered(request, ChatResult(id="resp_2", model="m", parts=[TextPart(text="x")]), "resp_2")
    assert len(fmt.store) == 0
    with pytest.raises(InvalidRequest) as error:
        parse(fmt, previous_response_id="resp_2", input="more")
    assert (error.value.status, error.value.param, error.value.code) == (
        400,
        "previous_response_id",
        "previous_response_not_found",
    )


def test_the_store_keeps_the_most_recent_responses():
    fmt = ResponsesFormat()
    fmt.store.capacity = 2
    request = parse(fmt)
    for n in range(3):
        fmt.answered(request, ChatResult(id=f"r{n}", model="m", parts=[TextPart(text="x")]), f"resp_{n}")
    assert fmt.store.get("resp_0") is None and fmt.store.get("resp_2") is not None


# --- through the bridge (in process) ---------------------------------------------------------------


def responses_request(**body: Any) -> IncomingRequest:
    body.setdefault("model", "m")
    body.setdefault("input", "hi")
    return IncomingRequest("POST", "/v1/responses", dict(AUTH), json.dumps(body).encode())


def test_through_the_bridge_hosted_tools_are_named_in_a_header_and_recorded():
    async def run():
        bridge, _ = make_bridge(lambda r: streamed(text_stream("ok")), lambda r: streamed(text_stream("ok")))
        outcome = await bridge.handle(responses_request(tools=[{"type": "web_search"}, WEATHER], stream=True))
        sink_headers = await _headers(outcome)
        whole = await bridge.handle(responses_request(tools=[{"type": "image_generation"}, {"type": "mcp"}]))
        return sink_headers, await _headers(whole), bridge.records

    stream_headers, whole_headers, records = asyncio.run(run())
    assert stream_headers["x-llmbridge-dropped-tools"] == "web_search"
    assert whole_headers["x-llmbridge-dropped-tools"] == "image_generation, mcp"
    assert [r.request_canonical["dropped_tools"] for r in records] == [["web_search"], ["image_generation", "mcp"]]
    assert [r.client_format for r in records] == ["responses", "responses"]


async def _headers(outcome: Any) -> dict[str, str]:
    from llmbridge.answer import BufferedSink, DeferredAnswer

    if isinstance(outcome, DeferredAnswer):
        outcome = await outcome.task
    sink = BufferedSink()
    await outcome.run(sink)
    return sink.headers


def test_through_the_bridge_ids_are_the_bridges_and_previous_response_id_resolves():
    seen: list[dict[str, Any]] = []

    def upstream(request):
        seen.append(json.loads(request.content))
        # the upstream names its own response id; the Responses door keeps the bridge's
        return streamed(sse({"id": "chatcmpl-up", "model": "m", "choices": [{"index": 0, "delta": {"content": "ok"}}]}))

    async def run():
        bridge, _ = make_bridge(upstream)
        status, body = await answer(bridge, responses_request(instructions="sys", input="one"))
        first = json.loads(body)
        status2, body2 = await answer(bridge, responses_request(previous_response_id=first["id"], input="two"))
        missing = await answer(bridge, responses_request(previous_response_id="resp_gone", input="x"))
        unauthenticated = await bridge.handle(
            IncomingRequest("POST", "/v1/responses", {}, json.dumps({"model": "m", "input": "x"}).encode())
        )
        return first, (status2, json.loads(body2)), missing, unauthenticated, bridge.records

    first, (status2, second), (missing_status, missing_body), unauthenticated, records = asyncio.run(run())
    assert first["id"] == f"resp_{records[0].id}" and records[0].result["id"] == first["id"]
    assert first["output"][0]["id"].startswith(f"msg_{records[0].id}")
    assert status2 == 200 and second["previous_response_id"] == first["id"]
    assert [m["role"] for m in seen[1]["messages"]] == ["user", "assistant", "user"]  # no 'sys': not carried over
    assert missing_status == 400
    assert json.loads(missing_body)["error"]["code"] == "previous_response_not_found"
    assert unauthenticated.status == 401
    assert json.loads(unauthenticated.body)["error"]["type"] == "authentication_error"


def test_a_message_history_is_kept_whole_by_the_store():
    fmt = ResponsesFormat()
    request = parse(fmt, input=[{"role": "user", "content": "a"}])
    fmt.answered(request, ChatResult(id="r", model="m", parts=[TextPart(text="b")]), "resp_r")
    stored = fmt.store.get("resp_r")
    assert stored is not None
    assert stored.messages == [
        Message(role="user", parts=[TextPart(text="a")]),
        Message(role="assistant", parts=[TextPart(text="b")]),
    ]


# --- a Codex turn ----------------------------------------------------------------------------------

CODEX = json.loads((Path(__file__).parent / "data" / "codex_responses_request.json").read_text())


def test_a_codex_turn_parses_whole():
    """The shape Codex 0.169 sends (tests/data/codex_responses_request.json, written from what it was
    seen sending): developer items, environment context, a replayed reasoning item from another
    server, a function call and its output; function, namespace and web_search tools."""
    request = ResponsesFormat().parse_request(CODEX)
    assert [p.text[:9] for p in request.system] == ["You are C", "<skills_i"]
    assert [m.role for m in request.messages] == ["user", "assistant", "user"]
    assert [type(p).__name__ for p in request.messages[1].parts] == ["ReasoningPart", "ToolCallPart"]
    assert request.messages[1].parts[0].signature is None  # OpenAI's own encrypted reasoning means nothing here
    assert [t.name for t in request.tools] == [
        "exec_command",
        "write_stdin",
        "view_image",
        "multi_agent_v1__spawn_agent",
        "multi_agent_v1__wait_agent",
    ]
    assert request.dropped_tools == ["web_search"] and request.stream
    result = request.messages[2].parts[0]
    assert isinstance(result, ToolResultPart) and result.name == "exec_command"


def test_a_codex_turn_streams_through_the_bridge():
    """Through the bridge in process, over an OpenAI-compatible upstream that calls a namespaced tool:
    every event is one the SDK knows, and Codex gets its namespace back."""
    upstream_calls: list[dict[str, Any]] = []

    def upstream(request):
        upstream_calls.append(json.loads(request.content))
        call = {"index": 0, "id": "call_9", "type": "function", "function": {"name": "multi_agent_v1__spawn_agent"}}
        return streamed(
            sse(
                {"id": "u", "model": "m", "choices": [{"index": 0, "delta": {"reasoning_content": "Delegate."}}]},
                {"id": "u", "model": "m", "choices": [{"index": 0, "delta": {"tool_calls": [call]}}]},
                {
                    "id": "u",
                    "model": "m",
                    "choices": [
                        {
                            "index": 0,
                            "delta": {"tool_calls": [{"index": 0, "function": {"arguments": '{"message":"x"}'}}]},
                        }
                    ],
                },
                {"id": "u", "model": "m", "choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]},
            )
        )

    async def run():
        bridge, _ = make_bridge(upstream)
        return await answer(
            bridge, IncomingRequest("POST", "/v1/responses", dict(AUTH), json.dumps({**CODEX, "model": "m"}).encode())
        )

    status, body = asyncio.run(run())
    assert status == 200
    events = sse_events(body)
    final = check_final(events)
    assert [item.type for item in final.output] == ["reasoning", "function_call"]
    assert final.output[0].summary[0].text == "Delegate." and final.output[0].encrypted_content
    call = final.output[1]
    assert (call.name, call.namespace, call.arguments) == ("spawn_agent", "multi_agent_v1", '{"message":"x"}')
    sent = upstream_calls[0]
    assert [t["function"]["name"] for t in sent["tools"]][-2:] == [
        "multi_agent_v1__spawn_agent",
        "multi_agent_v1__wait_agent",
    ]
    assert sent["messages"][0]["role"] == "system" and "web_search" not in json.dumps(sent["tools"])
