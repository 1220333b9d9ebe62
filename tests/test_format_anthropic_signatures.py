"""Thinking signatures at the Anthropic door: Gemini's thoughtSignature in the thinking block's
`signature` (marked with where it came from), every thinking block signed, and the way back to the
same Gemini part; Anthropic's own signatures never reach Gemini."""

from __future__ import annotations

import json
from typing import Any

import anthropic
import httpx2
import pytest

from llmbridge.accumulate import StreamAccumulator
from llmbridge.canonical import (
    ChatRequest,
    ChatResult,
    Finish,
    ReasoningDelta,
    ReasoningPart,
    ResponseMeta,
    StreamEvent,
    TextDelta,
    TextPart,
    ToolCallDelta,
    ToolCallPart,
    ToolCallStart,
)
from llmbridge.formats.anthropic import AnthropicFormat
from llmbridge.formats.anthropic_signature import UNSIGNED, mark_gemini, read_gemini
from llmbridge.providers.google.decoder import GeminiDecoder
from llmbridge.providers.google.errors import classify
from llmbridge.providers.google.request import SKIP_SIGNATURE, build_contents
from llmbridge.sse import SSEDecoder

FMT = AnthropicFormat()
GSIG = {"gemini": {"thought_signature": "R2VtaW5pU2ln"}}
CLAUDE_SIG = "EqQBCkYIBxgCKkClaudeSignature=="


def request(thinking: bool = True) -> ChatRequest:
    extra: dict[str, Any] = {"thinking": {"type": "enabled", "budget_tokens": 2048}} if thinking else {}
    return FMT.parse_request(
        {"model": "gemini-3-pro-preview", "max_tokens": 4000, "messages": [{"role": "user", "content": "hi"}], **extra}
    )


def call(
    index: int = 0,
    call_id: str = "call_1",
    name: str = "get_weather",
    meta: dict | None = None,
    args: str = '{"city":"Paris"}',
) -> list[StreamEvent]:
    return [
        ToolCallStart(index=index, id=call_id, name=name, provider_metadata=meta or {}),
        ToolCallDelta(index=index, arguments=args),
    ]


def render_stream(events: list[StreamEvent], thinking: bool = True) -> list[dict[str, Any]]:
    renderer = FMT.stream_renderer(request(thinking), "r1", "gemini-3-pro-preview")
    raw = renderer.start() + b"".join(renderer.feed(e) for e in events) + renderer.close()
    return [json.loads(e.data) for e in SSEDecoder().feed(raw)]


def sdk_message(events: list[StreamEvent], thinking: bool = True) -> anthropic.types.Message:
    """What the anthropic SDK accumulates from the rendered stream."""
    renderer = FMT.stream_renderer(request(thinking), "r1", "gemini-3-pro-preview")
    payload = renderer.start() + b"".join(renderer.feed(e) for e in events) + renderer.close()

    def handler(_: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(200, headers={"content-type": "text/event-stream"}, content=payload)

    client = anthropic.Anthropic(
        api_key="k", base_url="http://bridge.test", http_client=httpx2.Client(transport=httpx2.MockTransport(handler))
    )
    with client.messages.stream(model="m", max_tokens=100, messages=[{"role": "user", "content": "hi"}]) as s:
        return s.get_final_message()


def whole(events: list[StreamEvent], thinking: bool = True) -> list[dict[str, Any]]:
    """The non-stream message's content for the same events."""
    accumulator = StreamAccumulator("r1", "m")
    accumulator.feed_all(events)
    return FMT.render_result(accumulator.result(), request(thinking))["content"]


def blocks_of(events: list[dict[str, Any]]) -> list[tuple[str, list[str]]]:
    """(block type, [delta types...]) per block, checking start/delta/stop order on the way."""
    blocks: list[tuple[str, list[str]]] = []
    open_index = None
    for event in events:
        if event["type"] == "content_block_start":
            assert open_index is None
            open_index = event["index"]
            assert open_index == len(blocks)
            blocks.append((event["content_block"]["type"], []))
        elif event["type"] == "content_block_delta":
            assert event["index"] == open_index or blocks[event["index"]][0] == "tool_use"
            blocks[event["index"]][1].append(event["delta"]["type"])
        elif event["type"] == "content_block_stop":
            assert event["index"] == open_index
            open_index = None
    assert open_index is None
    return blocks


def signature_deltas(events: list[dict[str, Any]]) -> list[str]:
    return [
        e["delta"]["signature"]
        for e in events
        if e["type"] == "content_block_delta" and e["delta"]["type"] == "signature_delta"
    ]


# --- answers -----------------------------------------------------------------------------------------

CASES: dict[str, list[StreamEvent]] = {
    "thought then signed call": [
        ResponseMeta(response_id="r1", model="gemini-3-pro-preview"),
        ReasoningDelta(text="Plan: "),
        ReasoningDelta(text="call it."),
        *call(meta=GSIG),
        Finish(reason="tool_calls"),
    ],
    "signed call, no thoughts": [*call(meta=GSIG), Finish(reason="tool_calls")],
    "parallel calls, first signed": [
        ReasoningDelta(text="two"),
        *call(0, "call_1", meta=GSIG),
        *call(1, "call_2", args='{"city":"Rome"}'),
        Finish(reason="tool_calls"),
    ],
    "text then signed call": [
        ReasoningDelta(text="hm"),
        TextDelta(text="Checking."),
        *call(meta=GSIG),
        Finish(reason="tool_calls"),
    ],
    "signed thought part": [
        ReasoningDelta(text="deep", signature="R2VtaW5pU2ln", provider_metadata=GSIG),
        TextDelta(text="Answer."),
        Finish(reason="stop"),
    ],
    "signature-only thought part": [
        ReasoningDelta(text="deep"),
        ReasoningDelta(signature="R2VtaW5pU2ln", provider_metadata=GSIG),
        TextDelta(text="Answer."),
        Finish(reason="stop"),
    ],
    "signed first text": [
        ReasoningDelta(text="deep"),
        TextDelta(text="", provider_metadata=GSIG),
        TextDelta(text="Ans"),
        TextDelta(text="wer."),
        Finish(reason="stop"),
    ],
    "signature after the text": [
        ReasoningDelta(text="deep"),
        TextDelta(text="Answer."),
        TextDelta(text="", provider_metadata=GSIG),
        Finish(reason="stop"),
    ],
    "thought-signed, then signed call": [
        ReasoningDelta(
            text="a", signature="VGhvdWdodA==", provider_metadata={"gemini": {"thought_signature": "VGhvdWdodA=="}}
        ),
        *call(meta=GSIG),
        Finish(reason="tool_calls"),
    ],
    "anthropic thinking": [
        ReasoningDelta(text="Claude thinks"),
        ReasoningDelta(signature=CLAUDE_SIG),
        TextDelta(text="Hi."),
        Finish(reason="stop"),
    ],
    "unsigned reasoning (openai, kiro)": [ReasoningDelta(text="r"), TextDelta(text="Hi."), Finish(reason="stop")],
}

EXPECTED: dict[str, tuple[list[tuple[str, list[str]]], list[str], list[str]]] = {
    # case: (blocks with their delta types, signature deltas in order, tool_use ids)
    "thought then signed call": (
        [("thinking", ["thinking_delta", "thinking_delta", "signature_delta"]), ("tool_use", ["input_json_delta"])],
        [mark_gemini("call", "R2VtaW5pU2ln")],
        ["call_1"],
    ),
    "signed call, no thoughts": (
        [("thinking", ["signature_delta"]), ("tool_use", ["input_json_delta"])],
        [mark_gemini("call", "R2VtaW5pU2ln")],
        ["call_1"],
    ),
    "parallel calls, first signed": (
        [
            ("thinking", ["thinking_delta", "signature_delta"]),
            ("tool_use", ["input_json_delta"]),
            ("tool_use", ["input_json_delta"]),
        ],
        [mark_gemini("call", "R2VtaW5pU2ln")],
        ["call_1", "call_2"],
    ),
    "text then signed call": (  # too late for the thinking block: the id carries it, as without thinking
        [
            ("thinking", ["thinking_delta", "signature_delta"]),
            ("text", ["text_delta"]),
            ("tool_use", ["input_json_delta"]),
        ],
        [UNSIGNED],
        ["call_1__thought__R2VtaW5pU2ln"],
    ),
    "signed thought part": (
        [("thinking", ["thinking_delta", "signature_delta"]), ("text", ["text_delta"])],
        [mark_gemini("thought", "R2VtaW5pU2ln")],
        [],
    ),
    "signature-only thought part": (
        [("thinking", ["thinking_delta", "signature_delta"]), ("text", ["text_delta"])],
        [mark_gemini("thought", "R2VtaW5pU2ln")],
        [],
    ),
    "signed first text": (
        [("thinking", ["thinking_delta", "signature_delta"]), ("text", ["text_delta", "text_delta"])],
        [mark_gemini("text", "R2VtaW5pU2ln")],
        [],
    ),
    "signature after the text": (  # nowhere to put it (Gemini does not check text signatures)
        [("thinking", ["thinking_delta", "signature_delta"]), ("text", ["text_delta"])],
        [UNSIGNED],
        [],
    ),
    "thought-signed, then signed call": (
        [
            ("thinking", ["thinking_delta", "signature_delta"]),
            ("thinking", ["signature_delta"]),
            ("tool_use", ["input_json_delta"]),
        ],
        [mark_gemini("thought", "VGhvdWdodA=="), mark_gemini("call", "R2VtaW5pU2ln")],
        ["call_1"],
    ),
    "anthropic thinking": (
        [("thinking", ["thinking_delta", "signature_delta"]), ("text", ["text_delta"])],
        [CLAUDE_SIG],
        [],
    ),
    "unsigned reasoning (openai, kiro)": (
        [("thinking", ["thinking_delta", "signature_delta"]), ("text", ["text_delta"])],
        [UNSIGNED],
        [],
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_stream_signs_every_thinking_block_in_anthropic_order(case: str) -> None:
    events = render_stream(CASES[case])
    blocks, signatures, ids = EXPECTED[case]
    assert blocks_of(events) == blocks
    assert signature_deltas(events) == signatures
    starts = [e["content_block"] for e in events if e["type"] == "content_block_start"]
    assert [b["id"] for b in starts if b["type"] == "tool_use"] == ids
    assert all(b["signature"] == "" for b in starts if b["type"] == "thinking")  # as Anthropic starts them


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("thinking", [True, False])
def test_whole_message_is_what_the_sdk_accumulates_from_the_stream(case: str, thinking: bool) -> None:
    streamed = sdk_message(CASES[case], thinking).model_dump(mode="json", exclude_none=True)["content"]
    assert streamed == whole(CASES[case], thinking)
    kinds = [b["type"] for b in streamed]
    if not thinking:
        assert "thinking" not in kinds
    assert all(b["signature"] for b in streamed if b["type"] == "thinking")
    assert all(b["text"] for b in streamed if b["type"] == "text")  # no empty text blocks


def test_thinking_off_keeps_the_signature_in_the_tool_use_id() -> None:
    events = render_stream(CASES["thought then signed call"], thinking=False)
    assert blocks_of(events) == [("tool_use", ["input_json_delta"])]
    assert whole(CASES["thought then signed call"], thinking=False)[0]["id"] == "call_1__thought__R2VtaW5pU2ln"


def test_markers_read_back() -> None:
    assert read_gemini(mark_gemini("call", "a:b")) == ("call", "a:b")
    assert read_gemini(UNSIGNED) is None and read_gemini(CLAUDE_SIG) is None
    assert read_gemini("llmbridge:gemini:elsewhere:x") is None and read_gemini("llmbridge:gemini:call:") is None


# --- the way back ------------------------------------------------------------------------------------


def parse_assistant(*blocks: dict[str, Any]) -> list[Any]:
    parsed = FMT.parse_request(
        {
            "model": "m",
            "max_tokens": 10,
            "messages": [
                {"role": "user", "content": "q"},
                {"role": "assistant", "content": list(blocks)},
                {"role": "user", "content": "next"},
            ],
        }
    )
    return parsed.messages[1].parts


def test_call_signature_goes_back_on_the_first_tool_call() -> None:
    parts = parse_assistant(
        {"type": "thinking", "thinking": "plan", "signature": mark_gemini("call", "S1")},
        {"type": "text", "text": "Two calls."},
        {"type": "tool_use", "id": "call_1", "name": "f", "input": {}},
        {"type": "tool_use", "id": "call_2", "name": "g", "input": {}},
    )
    assert parts == [
        ReasoningPart(text="plan"),
        TextPart(text="Two calls."),
        ToolCallPart(id="call_1", name="f", provider_metadata={"gemini": {"thought_signature": "S1"}}),
        ToolCallPart(id="call_2", name="g"),
    ]


def test_thought_and_text_signatures_go_back_to_their_parts() -> None:
    parts = parse_assistant(
        {"type": "thinking", "thinking": "a", "signature": mark_gemini("thought", "T1")},
        {"type": "thinking", "thinking": "", "signature": mark_gemini("text", "X1")},
        {"type": "text", "text": "answer"},
        {"type": "text", "text": "more"},
    )
    assert parts == [
        ReasoningPart(text="a", provider_metadata={"gemini": {"thought_signature": "T1"}}),
        ReasoningPart(),
        TextPart(text="answer", provider_metadata={"gemini": {"thought_signature": "X1"}}),
        TextPart(text="more"),
    ]


def test_placeholder_and_claude_signatures() -> None:
    parts = parse_assistant(
        {"type": "thinking", "thinking": "r", "signature": UNSIGNED},
        {"type": "thinking", "thinking": "c", "signature": CLAUDE_SIG},
        {"type": "text", "text": "x"},
    )
    assert parts == [ReasoningPart(text="r"), ReasoningPart(text="c", signature=CLAUDE_SIG), TextPart(text="x")]


def test_a_signature_in_the_id_wins_over_the_thinking_block() -> None:
    parts = parse_assistant(
        {"type": "thinking", "thinking": "", "signature": mark_gemini("call", "OLD")},
        {"type": "tool_use", "id": "call_1__thought__NEW", "name": "f", "input": {}},
    )
    assert parts[1] == ToolCallPart(id="call_1", name="f", provider_metadata={"gemini": {"thought_signature": "NEW"}})


def test_a_placement_with_no_part_to_take_it_is_dropped() -> None:
    parts = parse_assistant(
        {"type": "thinking", "thinking": "t", "signature": mark_gemini("call", "S")},
        {"type": "text", "text": "no call"},
    )
    assert parts == [ReasoningPart(text="t"), TextPart(text="no call")]


def model_turn(result: ChatResult, *, thinking: bool = True) -> list[dict[str, Any]]:
    """Render for an Anthropic client, send it back as history, build Gemini 3 contents."""
    content = FMT.render_result(result, request(thinking))["content"]
    parsed = FMT.parse_request(
        {
            "model": "m",
            "max_tokens": 10,
            "messages": [
                {"role": "user", "content": "q"},
                {"role": "assistant", "content": content},
                {
                    "role": "user",
                    "content": [
                        {"type": "tool_result", "tool_use_id": b["id"], "content": "ok"}
                        for b in content
                        if b["type"] == "tool_use"
                    ]
                    or "next",
                },
            ],
        }
    )
    return build_contents(parsed.messages, gemini3=True)[1]["parts"]


def decoded(*parts: dict[str, Any]) -> ChatResult:
    """A Code Assist answer (one chunk per part) through the real decoder and accumulator."""
    chunks = [{"response": {"candidates": [{"content": {"role": "model", "parts": [p]}}]}} for p in parts]
    chunks[-1]["response"]["candidates"][0]["finishReason"] = "STOP"
    decoder = GeminiDecoder(classify)
    accumulator = StreamAccumulator("r", "m")
    accumulator.feed_all(decoder.feed(b"".join(b"data: " + json.dumps(c).encode() + b"\r\n\r\n" for c in chunks)))
    accumulator.feed_all(decoder.close())
    return accumulator.result()


@pytest.mark.parametrize("thinking", [True, False])
def test_gemini_round_trip_puts_the_signature_back_on_the_function_call(thinking: bool) -> None:
    result = decoded(
        {"text": "plan", "thought": True},
        {"functionCall": {"name": "f", "args": {"a": 1}, "id": "c1"}, "thoughtSignature": "S1"},
        {"functionCall": {"name": "g", "args": {}, "id": "c2"}},
    )
    parts = model_turn(result, thinking=thinking)
    calls = [p for p in parts if "functionCall" in p]
    assert calls[0] == {"functionCall": {"name": "f", "args": {"a": 1}, "id": "c1"}, "thoughtSignature": "S1"}
    assert "thoughtSignature" not in calls[1]
    assert all("thoughtSignature" not in p for p in parts if "functionCall" not in p)


def test_gemini_round_trip_of_thought_and_text_signatures() -> None:
    thought = model_turn(
        decoded(
            {"text": "plan", "thought": True},
            {"text": "", "thought": True, "thoughtSignature": "T1"},
            {"text": "answer"},
        )
    )
    assert thought == [{"text": "plan", "thought": True, "thoughtSignature": "T1"}, {"text": "answer"}]
    text = model_turn(decoded({"text": "plan", "thought": True}, {"text": "answer", "thoughtSignature": "X1"}))
    assert text == [{"text": "plan", "thought": True}, {"text": "answer", "thoughtSignature": "X1"}]


def test_claude_thinking_is_sent_to_gemini_without_its_signature() -> None:
    result = ChatResult(
        id="r",
        model="claude",
        finish_reason="tool_calls",
        parts=[ReasoningPart(text="Claude plan", signature=CLAUDE_SIG), ToolCallPart(id="toolu_1", name="f")],
    )
    parts = model_turn(result)
    assert parts == [
        {"text": "Claude plan", "thought": True},
        {"functionCall": {"name": "f", "args": {}, "id": "toolu_1"}, "thoughtSignature": SKIP_SIGNATURE},
    ]


def test_bridge_made_signatures_never_reach_anthropic() -> None:
    """A conversation moved from Gemini to Claude: Anthropic gets no thinking it could not verify (and
    the anthropic provider leaves thinking off rather than send a tool turn without it)."""
    from llmbridge.providers.anthropic_api.request import build_body

    parsed = FMT.parse_request(
        {
            "model": "claude-x",
            "max_tokens": 4000,
            "messages": [
                {"role": "user", "content": "q"},
                {
                    "role": "assistant",
                    "content": [
                        {"type": "thinking", "thinking": "plan", "signature": mark_gemini("call", "S1")},
                        {"type": "thinking", "thinking": "more", "signature": UNSIGNED},
                        {"type": "tool_use", "id": "call_1", "name": "f", "input": {}},
                    ],
                },
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "call_1", "content": "ok"}]},
            ],
            "thinking": {"type": "enabled", "budget_tokens": 2048},
        }
    )
    body = build_body(parsed, "claude-x")
    assert body["messages"][1]["content"] == [{"type": "tool_use", "id": "call_1", "name": "f", "input": {}}]
    assert "llmbridge:" not in json.dumps(body) and "S1" not in json.dumps(body)
