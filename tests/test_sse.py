"""The incremental SSE decoder: every line-ending style, split anywhere."""

from __future__ import annotations

import random

import pytest

from llmbridge.sse import SSEDecoder, encode_event

STREAM = (
    'data: {"a":1}\r\n\r\n: comment\n\nevent: ping\ndata: x\ndata: y\n\ndata: é漢\r\rid: 7\ndata:no-space\n\n'
).encode()
EXPECTED = [("message", '{"a":1}'), ("ping", "x\ny"), ("message", "é漢"), ("message", "no-space")]


def decode(chunks: list[bytes]) -> list[tuple[str, str]]:
    decoder = SSEDecoder()
    events = []
    for chunk in chunks:
        events += decoder.feed(chunk)
    events += decoder.close()
    return [(e.event, e.data) for e in events]


def test_whole():
    assert decode([STREAM]) == EXPECTED


def test_every_single_split_point():
    for i in range(len(STREAM) + 1):
        assert decode([STREAM[:i], STREAM[i:]]) == EXPECTED, i


@pytest.mark.parametrize("seed", range(20))
def test_random_splits(seed):
    rng = random.Random(seed)
    cuts = sorted(rng.sample(range(1, len(STREAM)), 8))
    chunks = [STREAM[a:b] for a, b in zip([0] + cuts, cuts + [len(STREAM)])]
    assert decode(chunks) == EXPECTED


def test_last_event_without_blank_line_is_delivered_at_close():
    assert decode([b"data: tail"]) == [("message", "tail")]


def test_encode_round_trip():
    assert decode([encode_event("a\nb", event="e")]) == [("e", "a\nb")]
