"""Provider bytes -> client bytes, fed recorded-style bytes split at random points."""

from __future__ import annotations

import json
import random

import pytest

from llmbridge.accumulate import StreamAccumulator
from llmbridge.canonical import ChatRequest, Message, TextPart
from llmbridge.errors import UpstreamUnavailable
from llmbridge.formats.openai import OpenAIFormat
from llmbridge.providers.openai_api.decoder import ChatCompletionChunkDecoder
from llmbridge.translate import Translation

UPSTREAM = (
    b"".join(
        b"data: " + json.dumps(c).encode() + b"\n\n"
        for c in [
            {"id": "u1", "model": "m", "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]},
            {"id": "u1", "model": "m", "choices": [{"index": 0, "delta": {"reasoning_content": "think "}}]},
            {"id": "u1", "model": "m", "choices": [{"index": 0, "delta": {"content": "Hé"}}]},
            {
                "id": "u1",
                "model": "m",
                "choices": [
                    {
                        "index": 0,
                        "delta": {
                            "tool_calls": [
                                {
                                    "index": 0,
                                    "id": "c1",
                                    "type": "function",
                                    "function": {"name": "f", "arguments": '{"q":'},
                                }
                            ]
                        },
                    }
                ],
            },
            {
                "id": "u1",
                "model": "m",
                "choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "function": {"arguments": '"漢"}'}}]}}],
            },
            {"id": "u1", "model": "m", "choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]},
            {"id": "u1", "model": "m", "choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 6}},
        ]
    )
    + b"data: [DONE]\n\n"
)

REQUEST = ChatRequest(
    model="m", messages=[Message(role="user", parts=[TextPart(text="q")])], stream=True, stream_usage=True
)


def translate(chunks: list[bytes]) -> tuple[bytes, Translation]:
    renderer = OpenAIFormat().stream_renderer(REQUEST, "chatcmpl-x", "m")
    translation = Translation(ChatCompletionChunkDecoder(), renderer, StreamAccumulator("chatcmpl-x", "m"))
    out = translation.start()
    for chunk in chunks:
        out += translation.feed(chunk)
    return out + translation.close(), translation


def normalize(out: bytes) -> list:
    return [
        json.loads(line[6:])["choices"] if line != "data: [DONE]" else "DONE"
        for line in out.decode().split("\n")
        if line.startswith("data: ")
    ]


@pytest.mark.parametrize("seed", range(25))
def test_random_splits_give_the_same_client_stream(seed):
    whole, _ = translate([UPSTREAM])
    rng = random.Random(seed)
    cuts = sorted(rng.sample(range(1, len(UPSTREAM)), 12))
    split, translation = translate([UPSTREAM[a:b] for a, b in zip([0] + cuts, cuts + [len(UPSTREAM)])])
    assert normalize(split) == normalize(whole)
    assert translation.raw == UPSTREAM
    result = translation.result()
    assert result.tool_calls()[0].arguments == {"q": "漢"} and result.text() == "Hé"
    assert result.usage.input_tokens == 5


def test_truncated_upstream_ends_with_error_event():
    out, translation = translate([UPSTREAM[:200]])
    assert b'"error"' in out and translation.result().error is not None


def test_fail_midway_renders_error_in_dialect():
    renderer = OpenAIFormat().stream_renderer(REQUEST, "x", "m")
    translation = Translation(ChatCompletionChunkDecoder(), renderer, StreamAccumulator("x", "m"))
    out = translation.fail(UpstreamUnavailable("connection broke"))
    assert json.loads(out.decode()[6:])["error"]["message"] == "connection broke"
