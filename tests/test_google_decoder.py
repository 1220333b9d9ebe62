"""The Gemini stream decoder: Code Assist's real sample chunks (in its envelope) and the public API's
bare chunks, split at random points."""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

import pytest

from llmbridge.accumulate import StreamAccumulator
from llmbridge.canonical import (
    Finish,
    ReasoningDelta,
    ResponseMeta,
    StreamError,
    TextDelta,
    ToolCallDelta,
    ToolCallStart,
    UsageEvent,
)
from llmbridge.providers.google.decoder import GeminiDecoder
from llmbridge.providers.google.errors import classify
from tests.fakes.gemini_api import chunk, text_reply, tool_reply

SAMPLES = Path(__file__).parents[1] / "replay" / "samples" / "gemini-cli"


def sse(*envelopes: dict, newline: bytes = b"\r\n") -> bytes:
    return b"".join(b"data: " + json.dumps(e, ensure_ascii=False).encode() + newline * 2 for e in envelopes)


def wrap(response: dict, trace: str = "trace-1") -> dict:
    return {"response": response, "traceId": trace}


def decode(data: bytes, cuts: list[int] | None = None) -> list:
    decoder = GeminiDecoder(classify)
    events, last = [], 0
    for cut in sorted(cuts or []) + [len(data)]:
        events += decoder.feed(data[last:cut])
        last = cut
    return events + decoder.close()


def stream_sample() -> bytes:
    lines = (SAMPLES / "gemini-codeassist-stream-chunks-unwrapped.ndjson").read_text().splitlines()
    return sse(*[wrap(json.loads(line)) for line in lines if line.strip()])


@pytest.mark.parametrize("seed", range(25))
def test_stream_sample_split_anywhere_gives_identical_events(seed):
    data = stream_sample()
    rng = random.Random(seed)
    cuts = rng.sample(range(1, len(data)), k=rng.randint(1, 40))
    assert decode(data, cuts) == decode(data)


def test_stream_sample_byte_by_byte():
    data = stream_sample()
    assert decode(data, list(range(1, len(data)))) == decode(data)


def test_stream_sample_content():
    events = decode(stream_sample())
    text = "".join(e.text for e in events if isinstance(e, TextDelta))
    assert text.startswith("<ask_followup_question>") and text.endswith("</ask_followup_question>")
    assert "我需要你检查一下我的代码。" in text  # a UTF-8 sequence split across chunk boundaries survives
    assert events[0] == ResponseMeta(response_id="trace-1", model=None)
    usage = [e for e in events if isinstance(e, UsageEvent)]
    assert len(usage) == 1  # the early {trafficType} chunks carry no counts
    assert usage[0].usage.input_tokens == 19131
    assert usage[0].usage.output_tokens == 127 + 93
    assert usage[0].usage.reasoning_tokens == 93
    assert events[-1] == Finish(reason="stop", raw_reason="STOP")
    assert not any(isinstance(e, StreamError) for e in events)


def test_nonstream_sample_as_one_event():
    inner = json.loads((SAMPLES / "gemini-codeassist-nonstream-unwrapped.json").read_text())
    events = decode(sse(wrap(inner, "abc"), newline=b"\n"))
    acc = StreamAccumulator("x", "y")
    acc.feed_all(events)
    result = acc.result()
    assert result.id == "abc"
    assert "349187" in result.text()
    assert result.usage.input_tokens == 106 and result.usage.output_tokens == 821 + 747
    assert result.finish_reason == "stop"


def test_thoughts_with_signature_and_model_version():
    thought = {"text": "thinking...", "thought": True, "thoughtSignature": "SIG=="}
    data = sse(
        wrap({"candidates": [{"content": {"role": "model", "parts": [thought]}}], "modelVersion": "gemini-3-pro"}),
        wrap(
            {
                "candidates": [{"content": {"role": "model", "parts": [{"text": "Answer"}]}, "finishReason": "STOP"}],
                "modelVersion": "gemini-3-pro",
            }
        ),
    )
    events = decode(data)
    assert events[0] == ResponseMeta(response_id="trace-1", model="gemini-3-pro")
    assert events[1] == ReasoningDelta(
        text="thinking...", signature="SIG==", provider_metadata={"gemini": {"thought_signature": "SIG=="}}
    )
    assert events[2] == TextDelta(text="Answer")
    assert sum(isinstance(e, ResponseMeta) for e in events) == 1


def test_function_call_gives_start_and_full_arguments_and_tool_calls_finish():
    data = sse(
        wrap(
            {
                "candidates": [
                    {
                        "content": {
                            "role": "model",
                            "parts": [
                                {
                                    "functionCall": {"name": "read_file", "args": {"path": "a.py", "n": 2}},
                                    "thoughtSignature": "S1",
                                },
                                {"functionCall": {"name": "ls", "args": {}, "id": "given-id"}},
                            ],
                        },
                        "finishReason": "STOP",
                    }
                ]
            }
        )
    )
    events = decode(data)
    starts = [e for e in events if isinstance(e, ToolCallStart)]
    deltas = [e for e in events if isinstance(e, ToolCallDelta)]
    assert [s.name for s in starts] == ["read_file", "ls"] and [s.index for s in starts] == [0, 1]
    # minted as the Gemini CLI mints it: <name>_<epoch ms>_<n>
    assert re.fullmatch(rf"{re.escape(starts[0].name)}_\d{{13}}_0", starts[0].id) and starts[1].id == "given-id"
    assert starts[0].provider_metadata == {"gemini": {"thought_signature": "S1"}}
    assert json.loads(deltas[0].arguments) == {"path": "a.py", "n": 2} and deltas[1].arguments == "{}"
    assert events[-1].reason == "tool_calls"


def test_empty_text_part_with_signature_is_kept():
    data = sse(
        wrap(
            {
                "candidates": [
                    {
                        "content": {"role": "model", "parts": [{"text": "", "thoughtSignature": "END"}]},
                        "finishReason": "STOP",
                    }
                ]
            }
        )
    )
    assert TextDelta(text="", provider_metadata={"gemini": {"thought_signature": "END"}}) in decode(data)


@pytest.mark.parametrize(
    "raw,reason",
    [
        ("STOP", "stop"),
        ("MAX_TOKENS", "length"),
        ("SAFETY", "content_filter"),
        ("RECITATION", "content_filter"),
        ("PROHIBITED_CONTENT", "content_filter"),
        ("BLOCKLIST", "content_filter"),
        ("SPII", "content_filter"),
        ("MALFORMED_FUNCTION_CALL", "error"),
        ("SOMETHING_NEW", "error"),
    ],
)
def test_finish_reasons(raw, reason):
    data = sse(wrap({"candidates": [{"content": {"role": "model", "parts": [{"text": "x"}]}, "finishReason": raw}]}))
    assert decode(data)[-1] == Finish(reason=reason, raw_reason=raw)


def test_blocked_prompt_is_content_filter():
    data = sse(wrap({"promptFeedback": {"blockReason": "SAFETY"}, "usageMetadata": {"promptTokenCount": 3}}))
    assert decode(data)[-1] == Finish(reason="content_filter", raw_reason="SAFETY")


def test_stream_without_finish_reports_cut():
    data = sse(wrap({"candidates": [{"content": {"role": "model", "parts": [{"text": "partial"}]}}]}))
    events = decode(data)
    assert isinstance(events[-1], StreamError) and "cut" in events[-1].message
    assert TextDelta(text="partial") in events


def test_error_object_mid_stream():
    data = sse(
        wrap({"candidates": [{"content": {"role": "model", "parts": [{"text": "a"}]}}]}),
        {
            "error": {
                "code": 429,
                "message": "quota",
                "status": "RESOURCE_EXHAUSTED",
                "details": [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "QUOTA_EXHAUSTED"}],
            }
        },
    )
    events = decode(data)
    errors = [e for e in events if isinstance(e, StreamError)]
    assert len(errors) == 1 and errors[0].kind == "quota_exhausted" and errors[0].status == 429


def test_final_event_without_blank_line_is_kept():
    data = sse(
        wrap({"candidates": [{"content": {"role": "model", "parts": [{"text": "ok"}]}, "finishReason": "STOP"}]})
    )[:-4]
    events = decode(data)
    assert TextDelta(text="ok") in events and events[-1].type == "finish"


def test_an_unparsable_event_is_a_protocol_error_not_a_shorter_answer():
    good = sse(
        wrap({"candidates": [{"content": {"role": "model", "parts": [{"text": "ok"}]}, "finishReason": "STOP"}]})
    )
    events = decode(b"data: {not json\r\n\r\n" + good)
    assert [e.type for e in events] == ["error"]  # nothing after the fault is decoded
    assert events[0].kind == "upstream_protocol_error" and events[0].status == 502
    assert "Gemini" in events[0].message and "not JSON" in events[0].message


# --- bare GenerateContentResponse chunks (the public Gemini API) ------------------------------------


def random_cuts(data: bytes, seed: int) -> list[int]:
    rng = random.Random(seed)
    return sorted(rng.sample(range(1, len(data)), k=min(len(data) - 1, rng.randint(1, 30))))


@pytest.mark.parametrize("seed", range(5))
def test_bare_chunks_text_thought_usage(seed):
    data = sse(*text_reply("Grüß ", "dich ✓", thought="thinking…").chunks)
    events = decode(data, random_cuts(data, seed))
    assert ResponseMeta(response_id="resp-fake-1", model="gemini-2.5-flash") in events
    acc = StreamAccumulator("x", "m")
    acc.feed_all(events)
    done = acc.result()
    assert done.text() == "Grüß dich ✓" and done.reasoning_text() == "thinking…"
    assert done.finish_reason == "stop" and done.usage is not None
    assert (done.usage.input_tokens, done.usage.output_tokens, done.usage.reasoning_tokens) == (12, 8, 2)


@pytest.mark.parametrize("seed", range(3))
def test_bare_function_call(seed):
    data = sse(*tool_reply("get", {"q": "ä"}, call_id="c9").chunks)
    acc = StreamAccumulator("x", "m")
    acc.feed_all(decode(data, random_cuts(data, seed)))
    done = acc.result()
    assert [(c.id, c.name, c.arguments) for c in done.tool_calls()] == [("c9", "get", {"q": "ä"})]
    assert done.finish_reason == "tool_calls"


def test_envelope_and_bare_chunks_alike():
    events = decode(sse(wrap(chunk({"text": "x"}, finish="STOP"), "t1")))
    assert ResponseMeta(response_id="t1", model="gemini-2.5-flash") in events


def test_bare_stream_without_finish_is_a_cut():
    events = decode(sse(chunk({"text": "x"})))
    assert isinstance(events[-1], StreamError) and events[-1].status == 502
