"""The Gemini API dialect: request parsing, results, SSE and JSON-array streams, errors, models."""

from __future__ import annotations

import json
from typing import Any

import pytest
from google.genai import types as genai

from llmbridge import errors
from llmbridge.canonical import (
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
from llmbridge.formats.base import RenderOptions
from llmbridge.formats.gemini import GeminiFormat
from llmbridge.sse import SSEDecoder
from llmbridge.tokens import estimate_input_tokens

FMT = GeminiFormat()
SIG = {"gemini": {"thought_signature": "c2ln"}}
FC = {"functionCall": {"name": "f", "args": {}}}


def body(**extra: Any) -> dict[str, Any]:
    return {"contents": [{"role": "user", "parts": [{"text": "hi"}]}], **extra}


def user(*parts: dict[str, Any]) -> dict[str, Any]:
    return {"role": "user", "parts": list(parts)}


def model(*parts: dict[str, Any]) -> dict[str, Any]:
    return {"role": "model", "parts": list(parts)}


def parse(raw: dict[str, Any], stream: bool = False) -> Any:
    return FMT.parse_request(raw, model="models/gemini-x", stream=stream)


def gen(**config: Any) -> dict[str, Any]:
    return body(generationConfig=config)


FG_TOOLS = [{"functionDeclarations": [{"name": "f"}, {"name": "g"}]}]
FGH_TOOLS = [{"functionDeclarations": [{"name": "f"}, {"name": "g"}, {"name": "h"}]}]


# --- request parsing -------------------------------------------------------------------------------

PARSE_CASES = [
    ("model from url", body(), lambda r: r.model == "gemini-x" and r.stream is False),
    (
        "system instruction",
        body(systemInstruction={"parts": [{"text": "a"}, {"text": "b"}]}),
        lambda r: r.system_text() == "a\n\nb",
    ),
    (
        "snake_case spelling",
        {
            "contents": [user({"text": "x"})],
            "system_instruction": {"parts": [{"text": "s"}]},
            "generation_config": {"max_output_tokens": 7},
        },
        lambda r: r.system_text() == "s" and r.max_tokens == 7,
    ),
    (
        "inline data",
        body(contents=[user({"inlineData": {"mimeType": "image/webp", "data": "QUJD"}})]),
        lambda r: r.messages[0].parts == [ImagePart(media_type="image/webp", data="QUJD")],
    ),
    (
        "file data",
        body(contents=[user({"fileData": {"mimeType": "image/png", "fileUri": "gs://b/i.png"}})]),
        lambda r: r.messages[0].parts == [ImagePart(media_type="image/png", url="gs://b/i.png")],
    ),
    (
        "thought with signature",
        body(contents=[user({"text": "q"}), model({"text": "hm", "thought": True, "thoughtSignature": "c2ln"})]),
        lambda r: r.messages[1].parts == [ReasoningPart(text="hm", provider_metadata=SIG)],
    ),
    (
        "signed text",
        body(contents=[model({"text": "ok", "thoughtSignature": "c2ln"})]),
        lambda r: r.messages[0].parts == [TextPart(text="ok", provider_metadata=SIG)],
    ),
    (
        "calls paired by id",
        body(
            contents=[
                model({"functionCall": {"name": "f", "args": {"a": 1}, "id": "c9"}, "thoughtSignature": "c2ln"}),
                user({"functionResponse": {"name": "f", "id": "c9", "response": {"ok": True}}}),
            ]
        ),
        lambda r: (
            r.messages[0].parts == [ToolCallPart(id="c9", name="f", arguments={"a": 1}, provider_metadata=SIG)]
            and r.messages[1].parts
            == [
                ToolResultPart(
                    tool_call_id="c9",
                    name="f",
                    content=[TextPart(text='{"ok": true}')],
                    provider_metadata={"gemini": {"function_response": {"ok": True}}},
                )
            ]
        ),
    ),
    (
        "calls paired by name order",
        body(
            contents=[
                model(
                    {"functionCall": {"name": "f", "args": {}}},
                    {"functionCall": {"name": "g"}},
                    {"functionCall": {"name": "f", "args": {"n": 2}}},
                ),
                user(
                    {"functionResponse": {"name": "f", "response": {}}},
                    {"functionResponse": {"name": "f", "response": {"error": "x"}}},
                    {"functionResponse": {"name": "g", "response": {}}},
                ),
            ]
        ),
        lambda r: (
            [p.id for p in r.messages[0].parts] == ["call_0", "call_1", "call_2"]
            and [(p.tool_call_id, p.is_error) for p in r.messages[1].parts]
            == [("call_0", False), ("call_2", True), ("call_1", False)]
        ),
    ),
    (
        "function declarations",
        body(
            tools=[
                {
                    "functionDeclarations": [
                        {
                            "name": "f",
                            "description": "d",
                            "parameters": {
                                "type": "OBJECT",
                                "properties": {
                                    "x": {"type": "STRING"},
                                    "l": {"type": "ARRAY", "items": {"type": "INTEGER"}},
                                },
                            },
                        },
                        {"name": "g", "parametersJsonSchema": {"type": "object", "properties": {}}},
                        {"name": "h"},
                    ]
                }
            ]
        ),
        lambda r: (
            r.tools[0].parameters
            == {
                "type": "object",
                "properties": {"x": {"type": "string"}, "l": {"type": "array", "items": {"type": "integer"}}},
            }
            and [t.name for t in r.tools] == ["f", "g", "h"]
            and r.tools[2].parameters["type"] == "object"
        ),
    ),
    (
        "tool config AUTO",
        body(toolConfig={"functionCallingConfig": {"mode": "AUTO"}}),
        lambda r: r.tool_choice == ToolChoice(mode="auto"),
    ),
    (
        "tool config NONE",
        body(toolConfig={"functionCallingConfig": {"mode": "NONE"}}),
        lambda r: r.tool_choice == ToolChoice(mode="none"),
    ),
    (
        "tool config ANY",
        body(toolConfig={"functionCallingConfig": {"mode": "ANY"}}),
        lambda r: r.tool_choice == ToolChoice(mode="required"),
    ),
    (
        "tool config ANY one name",
        body(tools=FG_TOOLS, toolConfig={"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["f"]}}),
        lambda r: r.tool_choice == ToolChoice(mode="tool", name="f") and [t.name for t in r.tools] == ["f"],
    ),
    (
        "tool config ANY two names keeps only those tools",
        body(
            tools=FGH_TOOLS, toolConfig={"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["f", "h"]}}
        ),
        lambda r: r.tool_choice == ToolChoice(mode="required") and [t.name for t in r.tools] == ["f", "h"],
    ),
    (
        "tool config AUTO with names keeps only those tools",
        body(
            tools=FGH_TOOLS, toolConfig={"functionCallingConfig": {"mode": "AUTO", "allowedFunctionNames": ["g", "h"]}}
        ),
        lambda r: r.tool_choice == ToolChoice(mode="auto") and [t.name for t in r.tools] == ["g", "h"],
    ),
    (
        "sampling",
        gen(
            temperature=0.2,
            topP=0.8,
            topK=40.0,
            maxOutputTokens=99,
            stopSequences=["X"],
            seed=7,
            presencePenalty=0.1,
            frequencyPenalty=0.3,
            candidateCount=1,
        ),
        lambda r: (
            (r.temperature, r.top_p, r.top_k, r.max_tokens, r.stop, r.seed, r.presence_penalty, r.frequency_penalty)
            == (0.2, 0.8, 40, 99, ["X"], 7, 0.1, 0.3)
        ),
    ),
    (
        "json mime",
        gen(responseMimeType="application/json"),
        lambda r: r.response_format == ResponseFormat(type="json_object"),
    ),
    (
        "response schema",
        gen(responseMimeType="application/json", responseSchema={"type": "OBJECT"}),
        lambda r: (
            r.response_format == ResponseFormat(type="json_schema", name="response", json_schema={"type": "object"})
        ),
    ),
    (
        "response json schema",
        gen(responseJsonSchema={"type": "object", "required": ["a"]}),
        lambda r: r.response_format.json_schema == {"type": "object", "required": ["a"]},
    ),
    (
        "thinking budget",
        gen(thinkingConfig={"thinkingBudget": 1024, "includeThoughts": True}),
        lambda r: r.reasoning == Reasoning(budget_tokens=1024, include_thoughts=True),
    ),
    ("thinking off", gen(thinkingConfig={"thinkingBudget": 0}), lambda r: r.reasoning == Reasoning(effort="none")),
    (
        "thinking dynamic",
        gen(thinkingConfig={"thinkingBudget": -1}),
        lambda r: r.reasoning == Reasoning(effort="medium"),
    ),
    (
        "thinking dynamic with a level",
        gen(thinkingConfig={"thinkingBudget": -1, "thinkingLevel": "HIGH"}),
        lambda r: r.reasoning == Reasoning(effort="high"),
    ),
    ("text modality accepted", gen(responseModalities=["TEXT"]), lambda r: r.messages[0].text() == "hi"),
    ("media resolution ignored", gen(mediaResolution="MEDIA_RESOLUTION_LOW"), lambda r: r.messages[0].text() == "hi"),
    ("thinking level", gen(thinkingConfig={"thinkingLevel": "LOW"}), lambda r: r.reasoning == Reasoning(effort="low")),
    (
        "safety settings ignored",
        body(safetySettings=[{"category": "HARM_CATEGORY_HARASSMENT", "threshold": "BLOCK_NONE"}]),
        lambda r: r.messages[0].text() == "hi",
    ),
]


@pytest.mark.parametrize("raw, check", [c[1:] for c in PARSE_CASES], ids=[c[0] for c in PARSE_CASES])
def test_parse_request_translates(raw: dict[str, Any], check: Any) -> None:
    assert check(parse(raw))


BAD_CASES = [
    ("contents", {}),
    ("contents.0.role", body(contents=[{"role": "system", "parts": [{"text": "x"}]}])),
    ("contents.0.parts.0.functionCall", body(contents=[user({"functionCall": {"name": "f"}})])),
    ("contents.0.parts.0.functionResponse", body(contents=[model({"functionResponse": {"name": "f"}})])),
    ("contents.0.parts.0.executableCode", body(contents=[model({"executableCode": {"code": "1"}})])),
    ("contents.0.parts.0.functionCall.name", body(contents=[model({"functionCall": {"args": {}}})])),
    ("tools.0.googleSearch", body(tools=[{"googleSearch": {}}])),
    ("tools.1.codeExecution", body(tools=[{"functionDeclarations": []}, {"codeExecution": {}}])),
    ("generationConfig.candidateCount", gen(candidateCount=2)),
    ("generationConfig.temperature", gen(temperature="warm")),
    ("generationConfig.responseMimeType", gen(responseMimeType="text/x.enum")),
    ("generationConfig.thinkingConfig.thinkingLevel", gen(thinkingConfig={"thinkingLevel": "HUGE"})),
    ("toolConfig.functionCallingConfig.mode", body(toolConfig={"functionCallingConfig": {"mode": "SOME"}})),
    ("cachedContent", body(cachedContent="cachedContents/abc")),
    (
        "toolConfig.functionCallingConfig.allowedFunctionNames",
        body(tools=FG_TOOLS, toolConfig={"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["f", "x"]}}),
    ),
    ("generationConfig.responseModalities", gen(responseModalities=["TEXT", "IMAGE"])),
    ("generationConfig.responseLogprobs", gen(responseLogprobs=True)),
    ("generationConfig.logprobs", gen(logprobs=3)),
    ("generationConfig.thinkingConfig.thinkingBudget", gen(thinkingConfig={"thinkingBudget": -5})),
    # wrong-typed, empty and unknown parts are refused, never dropped (Gemini refuses them too)
    ("contents", body(contents=[])),
    ("contents.0.parts", body(contents=[user()])),
    ("contents.0.parts", body(contents=[{"role": "user"}])),
    ("contents.0.parts.0.text", body(contents=[user({"text": 5})])),
    ("contents.0.parts.0", body(contents=[user({})])),
    ("contents.0.parts.0", body(contents=[user({"thought": True})])),
    ("contents.0.parts.0", body(contents=[user({"text": "a", "inlineData": {"data": "AAAA"}})])),
    ("contents.0.parts.0.txt", body(contents=[user({"txt": "a typo"})])),
    ("contents.0.parts.1.foo", body(contents=[user({"text": "a"}, {"text": "b", "foo": 1})])),
    ("contents.0.parts.0.thought", body(contents=[user({"text": "a", "thought": "yes"})])),
    ("contents.0.parts.0.thoughtSignature", body(contents=[user({"text": "a", "thoughtSignature": 7})])),
    ("contents.0.parts.0.videoMetadata", body(contents=[user({"text": "a", "videoMetadata": {}})])),
    ("contents.0.parts.0.inlineData.data", body(contents=[user({"inlineData": {"mimeType": "image/png"}})])),
    ("contents.0.parts.0.inlineData.data", body(contents=[user({"inlineData": {"data": 5}})])),
    ("contents.0.parts.0.inlineData.mimeType", body(contents=[user({"inlineData": {"data": "A", "mimeType": 1}})])),
    ("contents.0.parts.0.fileData.fileUri", body(contents=[user({"fileData": {"fileUri": 3}})])),
    ("contents.0.role", body(contents=[{"role": ["user"], "parts": [{"text": "a"}]}])),
    ("contents.0.extra", body(contents=[{"role": "user", "parts": [{"text": "a"}], "extra": 1}])),
    ("systemInstruction.parts.0", body(systemInstruction={"parts": [{"inlineData": {"data": "AAAA"}}]})),
    ("systemInstruction.parts.0.text", body(systemInstruction={"parts": [{"text": 5}]})),
    (
        "contents.1.parts.0.functionResponse.response",
        body(contents=[model(FC), user({"functionResponse": {"name": "f", "response": "ok"}})]),
    ),
    (
        "contents.1.parts.0.functionResponse.parts.0.inlineData",
        body(contents=[model(FC), user({"functionResponse": {"name": "f", "response": {}, "parts": [{"x": 1}]}})]),
    ),
]


@pytest.mark.parametrize("param, raw", BAD_CASES, ids=[c[0] for c in BAD_CASES])
def test_parse_request_names_the_bad_field(param: str, raw: dict[str, Any]) -> None:
    with pytest.raises(errors.InvalidRequest) as caught:
        parse(raw)
    assert caught.value.param == param


def test_documented_part_fields_are_tolerated() -> None:
    # partMetadata and mediaResolution are accepted and ignored; snake_case names and nulls read as Gemini reads them
    request = parse(
        body(
            contents=[
                user(
                    {"text": "a", "partMetadata": {"k": "v"}, "mediaResolution": {"level": "MEDIA_RESOLUTION_LOW"}},
                    {"inline_data": {"mime_type": "image/jpeg", "data": "AAAA"}, "thought_signature": None},
                )
            ]
        )
    )
    assert request.messages[0].parts == [TextPart(text="a"), ImagePart(media_type="image/jpeg", data="AAAA")]


def test_a_value_pydantic_refuses_is_a_400_not_a_500(monkeypatch: pytest.MonkeyPatch) -> None:
    # safety net: a value the typed getters let through still becomes InvalidRequest naming the field
    from llmbridge.formats import gemini_parse

    monkeypatch.setattr(gemini_parse, "_generation", lambda config: {"temperature": "warm"})
    with pytest.raises(errors.InvalidRequest) as caught:
        parse(body())
    assert caught.value.param == "temperature"


def test_stream_flag_comes_from_the_method() -> None:
    assert parse(body(), stream=True).stream is True


def test_count_tokens_accepts_both_shapes() -> None:
    plain = FMT.parse_count_tokens(body(), model="gemini-x")
    wrapped = FMT.parse_count_tokens(
        {"generateContentRequest": {"model": "models/gemini-x", **body()}}, model="gemini-x"
    )
    assert plain.messages == wrapped.messages
    assert FMT.render_count_tokens(estimate_input_tokens(plain)) == {"totalTokens": 5}


# --- results -----------------------------------------------------------------------------------------

RESULT = ChatResult(
    id="resp-1",
    model="gemini-x",
    finish_reason="tool_calls",
    parts=[
        ReasoningPart(text="plan", provider_metadata=SIG),
        TextPart(text="Calling."),
        ToolCallPart(id="call_7", name="f", arguments={"a": 1}, provider_metadata=SIG),
    ],
    usage=Usage(input_tokens=100, output_tokens=40, reasoning_tokens=10, cached_tokens=60),
)
THINKING = body(generationConfig={"thinkingConfig": {"includeThoughts": True}})


def test_render_result_is_a_valid_sdk_response() -> None:
    rendered = FMT.render_result(RESULT, parse(THINKING))
    response = genai.GenerateContentResponse.model_validate(rendered)
    parts = response.candidates[0].content.parts
    assert parts[0].thought and parts[0].thought_signature == b"sig"
    assert parts[2].function_call.name == "f" and parts[2].function_call.args == {"a": 1}
    assert parts[2].thought_signature == b"sig"
    assert response.text == "Calling."
    assert response.candidates[0].finish_reason == genai.FinishReason.STOP
    usage = response.usage_metadata
    assert (
        usage.prompt_token_count,
        usage.candidates_token_count,
        usage.thoughts_token_count,
        usage.cached_content_token_count,
        usage.total_token_count,
    ) == (100, 30, 10, 60, 140)
    assert (response.model_version, response.response_id) == ("gemini-x", "resp-1")


def test_thoughts_are_hidden_unless_asked_for() -> None:
    rendered = FMT.render_result(RESULT, parse(body()))
    assert [list(p) for p in rendered["candidates"][0]["content"]["parts"]] == [
        ["text"],
        ["functionCall", "thoughtSignature"],
    ]


@pytest.mark.parametrize(
    "reason, finish",
    [
        ("stop", "STOP"),
        ("length", "MAX_TOKENS"),
        ("content_filter", "SAFETY"),
        ("stop_sequence", "STOP"),
        ("error", "OTHER"),
    ],
)
def test_render_result_finish_reasons(reason: str, finish: str) -> None:
    result = ChatResult(id="r", model="m", finish_reason=reason)
    assert FMT.render_result(result, parse(body()))["candidates"][0]["finishReason"] == finish


def test_signatures_survive_a_round_trip() -> None:
    rendered = FMT.render_result(RESULT, parse(THINKING))
    again = parse(body(contents=[user({"text": "q"}), rendered["candidates"][0]["content"]]))
    assert again.messages[1].parts == RESULT.parts


# --- streams -----------------------------------------------------------------------------------------

EVENTS: list[StreamEvent] = [
    ReasoningDelta(text="plan", provider_metadata=SIG),
    TextDelta(text="Call"),
    TextDelta(text="ing."),
    ToolCallStart(index=0, id="call_7", name="f", provider_metadata=SIG),
    ToolCallDelta(index=0, arguments='{"a"'),
    ToolCallDelta(index=0, arguments=": 1}"),
    ToolCallStart(index=1, id="call_8", name="g"),
    ToolCallDelta(index=1, arguments="{}"),
    UsageEvent(usage=Usage(input_tokens=10, output_tokens=5)),
    Finish(reason="tool_calls"),
]
HEAD = '{"candidates":[{"content":{"role":"model","parts":['
TAIL = '"index":0}],'
META = '"modelVersion":"gemini-x","responseId":"r1"}'
CHUNKS = [
    HEAD + '{"text":"plan","thought":true,"thoughtSignature":"c2ln"}]},' + TAIL + META,
    HEAD + '{"text":"Call"}]},' + TAIL + META,
    HEAD + '{"text":"ing."}]},' + TAIL + META,
    HEAD + '{"functionCall":{"name":"f","args":{"a":1},"id":"call_7"},"thoughtSignature":"c2ln"},'
    '{"functionCall":{"name":"g","args":{},"id":"call_8"}}]},"index":0,"finishReason":"STOP"}],'
    '"usageMetadata":{"promptTokenCount":10,"candidatesTokenCount":5,"totalTokenCount":15},' + META,
]


def render_stream(events: list[StreamEvent], json_array: bool = False, request: Any = None) -> bytes:
    renderer = FMT.stream_renderer(request or parse(THINKING), "r1", "gemini-x", RenderOptions(json_array=json_array))
    return renderer.start() + b"".join(renderer.feed(e) for e in events) + renderer.close()


def test_sse_stream_golden() -> None:
    assert render_stream(EVENTS).decode() == "".join(f"data: {c}\r\n\r\n" for c in CHUNKS)


def test_json_array_stream_golden() -> None:
    out = render_stream(EVENTS, json_array=True)
    assert out.decode() == "[" + ",\r\n".join(CHUNKS) + "]"
    assert [c["responseId"] for c in json.loads(out)] == ["r1"] * 4


def test_stream_chunks_are_valid_sdk_responses() -> None:
    chunks = [
        genai.GenerateContentResponse.model_validate_json(e.data) for e in SSEDecoder().feed(render_stream(EVENTS))
    ]
    assert "".join(c.text or "" for c in chunks) == "Calling."
    assert [c.name for c in chunks[-1].function_calls] == ["f", "g"]


def test_function_call_flushes_before_following_text() -> None:
    out = render_stream(
        [
            ToolCallStart(index=0, id="c", name="f"),
            ToolCallDelta(index=0, arguments='{"x":'),
            ToolCallDelta(index=0, arguments="2}"),
            TextDelta(text="done"),
        ]
    )
    chunks = [json.loads(e.data) for e in SSEDecoder().feed(out)]
    parts = [c["candidates"][0]["content"]["parts"] for c in chunks]
    assert parts == [[{"functionCall": {"name": "f", "args": {"x": 2}, "id": "c"}}], [{"text": "done"}], []]
    assert chunks[-1]["candidates"][0]["finishReason"] == "STOP"


def test_stream_error_mid_stream() -> None:
    events = [TextDelta(text="Hel"), StreamError(kind="overloaded", message="busy", status=503), TextDelta(text="lo")]
    error = '{"error":{"code":503,"message":"busy","status":"UNAVAILABLE"}}'
    assert (
        render_stream(events).decode() == f'data: {HEAD}{{"text":"Hel"}}]}},{TAIL}{META}\r\n\r\ndata: {error}\r\n\r\n'
    )
    array = json.loads(render_stream(events, json_array=True))
    assert array[-1] == json.loads(error) and len(array) == 2


def test_renderer_error_closes_the_json_array() -> None:
    renderer = FMT.stream_renderer(parse(body()), "r1", "m", RenderOptions(json_array=True))
    out = renderer.start() + renderer.feed(TextDelta(text="a"))
    out += renderer.error(errors.UpstreamTimeout("slow")) + renderer.close()
    assert json.loads(out)[-1] == {"error": {"code": 504, "message": "slow", "status": "DEADLINE_EXCEEDED"}}


def test_keepalives_keep_the_framing_valid() -> None:
    sse = FMT.stream_renderer(parse(body()), "r", "m")
    array = FMT.stream_renderer(parse(body()), "r", "m", RenderOptions(json_array=True))
    assert SSEDecoder().feed(sse.keepalive()) == []
    assert json.loads(array.start() + array.keepalive() + array.close())[0]["candidates"][0]["finishReason"]


def test_thoughts_are_not_streamed_unless_asked_for() -> None:
    out = render_stream([ReasoningDelta(text="hidden"), TextDelta(text="shown")], request=parse(body()))
    assert b"hidden" not in out and b"shown" in out


def test_a_bare_foreign_signature_is_no_empty_thought_part() -> None:
    # Anthropic streams the thinking signature as its own delta: no text, no Gemini thoughtSignature
    events = [
        ReasoningDelta(text="plan"),
        ReasoningDelta(signature="EqQBCkYI"),
        TextDelta(text="done"),
        ReasoningDelta(provider_metadata=SIG),
    ]
    chunks = [json.loads(e.data) for e in SSEDecoder().feed(render_stream(events))]
    parts = [c["candidates"][0]["content"]["parts"] for c in chunks]
    assert parts == [
        [{"text": "plan", "thought": True}],
        [{"text": "done"}],
        [{"text": "", "thought": True, "thoughtSignature": "c2ln"}],
        [],
    ]


# --- errors and models -------------------------------------------------------------------------------

ERROR_CASES = [
    (errors.InvalidRequest("bad"), 400, "INVALID_ARGUMENT"),
    (errors.Unauthenticated("who"), 401, "UNAUTHENTICATED"),
    (errors.AccountUnusable("no"), 403, "PERMISSION_DENIED"),
    (errors.PermissionDenied("not this model"), 403, "PERMISSION_DENIED"),
    (errors.ModelNotFound("gone"), 404, "NOT_FOUND"),
    (errors.RateLimited("slow"), 429, "RESOURCE_EXHAUSTED"),
    (errors.InternalError("oops"), 500, "INTERNAL"),
    (errors.UpstreamUnavailable("down"), 502, "UNAVAILABLE"),
    (errors.CapacityExhausted("full"), 503, "UNAVAILABLE"),
    (errors.UpstreamTimeout("slow"), 504, "DEADLINE_EXCEEDED"),
]


@pytest.mark.parametrize("error, status, name", ERROR_CASES, ids=[type(c[0]).__name__ for c in ERROR_CASES])
def test_error_shapes(error: errors.BridgeError, status: int, name: str) -> None:
    code, _, payload = FMT.error_response(error)
    assert code == status
    assert json.loads(payload) == {"error": {"code": status, "message": error.message, "status": name}}


def test_render_models() -> None:
    models = [
        ModelInfo(
            id="gemini-x",
            provider="gemini-cli",
            display_name="Gemini X",
            context_window=1048576,
            max_output_tokens=65536,
        ),
        ModelInfo(id="claude-y", provider="kiro"),
    ]
    rendered = FMT.render_models(models)
    # The SDK maps the REST name supportedGenerationMethods to supported_actions itself.
    as_sdk = [
        {("supportedActions" if k == "supportedGenerationMethods" else k): v for k, v in m.items()}
        for m in rendered["models"]
    ]
    listed = [genai.Model.model_validate(m) for m in as_sdk]
    assert [m.name for m in listed] == ["models/gemini-x", "models/claude-y"]
    assert listed[0].input_token_limit == 1048576 and listed[0].output_token_limit == 65536
    assert "streamGenerateContent" in listed[1].supported_actions
    assert FMT.render_model(models[0]) == rendered["models"][0]


def test_the_genai_sdk_reads_our_stream_and_its_request_parses() -> None:
    """google-genai as the client: its request body parses, our SSE stream reads back."""
    import httpx
    from google import genai as genai_client

    seen: dict[str, Any] = {}

    def handler(request: httpx.Request) -> httpx.Response:
        seen["path"], seen["body"] = request.url.path, json.loads(request.content)
        return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=render_stream(EVENTS))

    client = genai_client.Client(
        api_key="k",
        http_options=genai.HttpOptions(
            base_url="http://bridge.test", httpx_client=httpx.Client(transport=httpx.MockTransport(handler))
        ),
    )
    config = genai.GenerateContentConfig(
        thinking_config=genai.ThinkingConfig(include_thoughts=True, thinking_budget=512),
        tools=[
            genai.Tool(
                function_declarations=[
                    genai.FunctionDeclaration(
                        name="f", parameters=genai.Schema(type="OBJECT", properties={"a": genai.Schema(type="INTEGER")})
                    )
                ]
            )
        ],
    )
    chunks = list(client.models.generate_content_stream(model="gemini-x", contents="hi", config=config))
    assert seen["path"].endswith("/models/gemini-x:streamGenerateContent")
    request = FMT.parse_request(seen["body"], model="gemini-x", stream=True)
    assert request.reasoning == Reasoning(budget_tokens=512, include_thoughts=True)
    assert request.tools[0].parameters["properties"] == {"a": {"type": "integer"}}
    assert "".join(c.text or "" for c in chunks) == "Calling."
    assert [(c.id, c.args) for c in chunks[-1].function_calls] == [("call_7", {"a": 1}), ("call_8", {})]
