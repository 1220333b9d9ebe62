from __future__ import annotations

from llmbridge.accumulate import StreamAccumulator, parse_tool_arguments
from llmbridge.canonical import (
    Finish,
    ReasoningDelta,
    StreamError,
    TextDelta,
    ToolCallDelta,
    ToolCallStart,
)


def test_joins_text_reasoning_and_interleaved_tool_fragments():
    acc = StreamAccumulator("id", "m")
    acc.feed_all(
        [
            ReasoningDelta(text="a"),
            ReasoningDelta(text="b", signature="S"),
            TextDelta(text="x"),
            TextDelta(text="y"),
            ToolCallStart(index=0, id="1", name="f"),
            ToolCallStart(index=1, id="2", name="g"),
            ToolCallDelta(index=0, arguments='{"k":'),
            ToolCallDelta(index=1, arguments="{}"),
            ToolCallDelta(index=0, arguments='"v"}'),
            Finish(reason="stop"),
        ]
    )
    result = acc.result()
    assert result.reasoning_text() == "ab" and result.parts[0].signature == "S"
    assert result.text() == "xy"
    assert [(c.name, c.arguments) for c in result.tool_calls()] == [("f", {"k": "v"}), ("g", {})]
    assert result.finish_reason == "tool_calls"


def test_error_without_finish():
    acc = StreamAccumulator("id", "m")
    acc.feed(StreamError(kind="x", message="cut"))
    assert acc.result().finish_reason == "error" and acc.result().error.message == "cut"


def test_bad_arguments_are_kept_not_lost():
    assert parse_tool_arguments('{"a": ') == {"_raw": '{"a": '}
    assert parse_tool_arguments("") == {}
